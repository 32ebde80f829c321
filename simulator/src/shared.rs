//! State shared by the controller, the simulated replicas and the simulated clients of one
//! seed. Everything runs on one thread (turmoil steps hosts in turn), so a `RefCell` suffices;
//! no borrow is ever held across an `.await`.

use std::cell::RefCell;
use std::rc::Rc;

use allocdb_core::Op;
use tokio::sync::watch;

use crate::record::Record;

/// Where the run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Clients run the random workload while faults come and go.
    Workload,
    /// Faults are gone: clients resolve what is pending, then probe the cluster.
    Heal,
}

/// What a replica looked like when it was shut down at the end.
#[derive(Clone, Copy, Debug)]
pub struct FinalReplica {
    /// Its applied op.
    pub applied: Op,
    /// Its state digest at that op.
    pub digest: u128,
    /// Its view.
    pub view: u64,
}

/// One replica host's bookkeeping.
#[derive(Debug, Default)]
pub struct ReplicaSlot {
    /// Asks the running server to stop (replaced at every start).
    pub shutdown: Option<watch::Sender<bool>>,
    /// Set when the replica halted on its own (storage error): the controller restarts it.
    pub halted: Option<String>,
    /// Set when the replica could not open its data at a start.
    pub open_failure: Option<String>,
    /// Set when it stopped at the end.
    pub finished: Option<FinalReplica>,
    /// How many times it started.
    pub starts: u32,
    /// The running server's published state (cleared when it crashes).
    pub observer: allocdb_server::server::StateObserver,
}

impl ReplicaSlot {
    /// The running replica's applied op and view, if it is running.
    pub fn live_state(&self) -> Option<(Op, u64)> {
        let slot = self.observer.lock().ok()?;
        let state = *slot.as_ref()?.borrow();
        Some((state.applied, state.view))
    }

    /// Forgets the state of a replica that crashed.
    pub fn clear_state(&self) {
        if let Ok(mut slot) = self.observer.lock() {
            *slot = None;
        }
    }
}

/// Shared state of one seed.
#[derive(Debug)]
pub struct Shared {
    /// The run's phase.
    pub phase: Phase,
    /// Every client call, in the order answered.
    pub records: Vec<Record>,
    /// Leases granted to anyone (targets for revoke and reclaim), the latest few.
    pub known_leases: Vec<u128>,
    /// Per replica.
    pub replicas: Vec<ReplicaSlot>,
    /// Liveness failures the clients saw.
    pub liveness: Vec<String>,
    /// Clients that finished their healing work.
    pub clients_done: u8,
    /// The highest view any client saw (the controller's guess of the primary).
    pub view_max: u64,
}

/// The handle everyone holds.
pub type SharedRef = Rc<RefCell<Shared>>;

impl Shared {
    /// Fresh state for `replica_count` replicas.
    pub fn new(replica_count: u8) -> SharedRef {
        let replicas = (0..replica_count).map(|_| ReplicaSlot::default()).collect();
        Rc::new(RefCell::new(Shared {
            phase: Phase::Workload,
            records: Vec::new(),
            known_leases: Vec::new(),
            replicas,
            liveness: Vec::new(),
            clients_done: 0,
            view_max: 0,
        }))
    }
}

/// Simulated microseconds since the start (0 outside a simulated host).
pub fn now_us() -> u64 {
    turmoil::sim_elapsed().map_or(0, |elapsed| {
        u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX)
    })
}
