//! One seed, end to end: formats the replicas' simulated disks, starts the real server on
//! each turmoil host and the real client on each turmoil client, drives the fault schedule,
//! heals, stops everything, and hands the observations to the checkers.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use allocdb_core::Config as CoreConfig;
use allocdb_server::{ClusterSettings, RuntimeOptions};
use allocdb_vsr::Replica;
use allocdb_vsr::frame::Role;
use allocdb_wal::{SimConfig, SimStorage, SplitMix64};
use tokio::sync::watch;

use crate::disk;
use crate::history::History;
use crate::record::mix;
use crate::scenario::{CLOCK_DRIFT_PPM_MAX, Fault, FaultKind, Knobs, Scenario};
use crate::shared::{FinalReplica, Phase, Shared, SharedRef};
use crate::workload::{self, CLUSTER_ID};

/// How a failure of a simulated host (a panic, e.g. a replica's own safety assertion) starts.
pub const HOST_FAILED: &str = "a simulated host failed";
/// Slot length of the simulated cluster.
pub const SLOT_MS: u64 = 10;
/// The port every replica listens on.
const PORT: u16 = 3000;
/// Disks are sampled this often.
const SAMPLE_MS: u64 = 500;
/// Normal per-message latency bound.
const LATENCY_MAX_MS: u64 = 8;
/// After the clients finish healing, replicas get this long to converge before they stop.
const SETTLE_MS: u64 = 3_000;
/// Replicas get this long to stop after being asked to.
const STOP_MS: u64 = 3_000;

/// The core limits of every simulated cluster: small, but with a dedupe window longer than any
/// seed so every retry is answered from the stored outcome.
pub fn core_config() -> CoreConfig {
    CoreConfig {
        resources_max: 4_096,
        pools_max: 16,
        leases_max: 16_384,
        lease_members_max: 65_536,
        bundle_size_max: 8,
        operations_max: 1 << 17,
        // One session for the (up to two) clients that number their writes in sessions: when
        // both run they evict each other, and a short window: eviction, re-registration and
        // stale numbers all happen under faults.
        clients_max: 1,
        session_requests_max: 8,
        ttl_slots_max: 1_000_000,
        dedupe_window_slots: 10_000_000,
        lease_history_slots: 10_000_000,
        expirations_per_batch_max: 64,
        batch_requests_max: 1_024,
    }
}

/// What one seed produced, before checking.
pub struct Observation {
    /// The scenario.
    pub scenario: Scenario,
    /// The committed history from every disk sample.
    pub history: History,
    /// Every client call.
    pub records: Vec<crate::record::Record>,
    /// Each replica's state when it stopped, if it did.
    pub finals: Vec<Option<FinalReplica>>,
    /// Liveness failures and host failures seen while running.
    pub failures: Vec<String>,
    /// Crashes (scheduled and halts).
    pub crashes: u64,
    /// Partitions (symmetric, one-way, primary isolations).
    pub partitions: u64,
    /// Faults applied, per kind.
    pub faults: FaultCounts,
    /// When ops were first seen applied by any replica: `(op, simulated µs)`, both increasing;
    /// an op was committed by the time of the first entry at or above it.
    pub applied_seen: Vec<(u64, u64)>,
    /// Digest of every event, for determinism.
    pub trace_digest: u64,
}

/// How many faults of each kind a seed applied (the run summary adds them up).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Crashes: scheduled power losses (alone, of the primary, before a rotten log or a
    /// reformat, in a phase beyond f) and halts on injected disk errors.
    pub crashes: u64,
    /// Partitions (symmetric, one-way, isolating the primary, cutting off a majority).
    pub partitions: u64,
    /// Disk faults: periods of I/O errors and bit flips, and rotten log segments.
    pub disk_faults: u64,
    /// Disks lost and formatted again.
    pub reformats: u64,
    /// Second processes refused on a live data directory.
    pub second_processes: u64,
    /// Disk losses (reformats, rotten logs) not applied because another replica had not
    /// caught up since its own loss: more than f lost disks at once cannot keep acknowledged
    /// writes, by any protocol.
    pub disk_losses_skipped: u64,
    /// Process pauses.
    pub pauses: u64,
    /// Phases with more than f replicas crashed or cut off at once.
    pub beyond_f: u64,
    /// Replicas whose clock ran fast or slow.
    pub drifting_clocks: u64,
}

impl FaultCounts {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &FaultCounts) {
        self.crashes += other.crashes;
        self.partitions += other.partitions;
        self.disk_faults += other.disk_faults;
        self.reformats += other.reformats;
        self.disk_losses_skipped += other.disk_losses_skipped;
        self.second_processes += other.second_processes;
        self.pauses += other.pauses;
        self.beyond_f += other.beyond_f;
        self.drifting_clocks += other.drifting_clocks;
    }
}

fn name(replica: u8) -> String {
    format!("r{replica}")
}

fn client_name(client: u8) -> String {
    format!("c{client}")
}

/// Runs one replica process until it is stopped, crashes or halts. `others` names every other
/// node.
async fn run_replica(
    index: u8,
    storage: SimStorage,
    settings: ClusterSettings,
    options: RuntimeOptions,
    others: Vec<String>,
    shared: SharedRef,
) -> turmoil::Result {
    let (stop_tx, stop_rx) = watch::channel(false);
    {
        let mut shared = shared.borrow_mut();
        let slot = &mut shared.replicas[usize::from(index)];
        slot.shutdown = Some(stop_tx);
        slot.starts += 1;
    }
    let replica = match Replica::open(storage, settings.replica_config()) {
        Ok(replica) => replica,
        Err(error) => {
            let text = format!("replica {index} could not open its data: {error}");
            shared.borrow_mut().replicas[usize::from(index)].open_failure = Some(text);
            return Ok(());
        }
    };
    match allocdb_server::run(replica, &settings, options, stop_rx).await {
        Ok(replica) => {
            let state = FinalReplica {
                applied: replica.commit_min(),
                digest: replica.allocator().state_digest(),
                view: replica.view(),
            };
            shared.borrow_mut().replicas[usize::from(index)].finished = Some(state);
        }
        Err(error) => {
            // The server's tasks were just told to stop; tokio wakes them in an order drawn
            // from its unseeded RNG, so the host drops off the network before they run (the
            // controller then treats the halt as a crash and restores the links).
            for other in &others {
                turmoil::partition(name(index), other.as_str());
            }
            shared.borrow_mut().replicas[usize::from(index)].halted = Some(error.to_string());
        }
    }
    Ok(())
}

/// A fault in force: when it ends, the fault, and the directed links it cut.
type Active = (u64, Fault, Vec<(String, String)>);

/// The controller's view of the world while the simulation runs.
struct Controller<'a> {
    sim: turmoil::Sim<'a>,
    scenario: Scenario,
    storages: Vec<SimStorage>,
    shared: SharedRef,
    history: History,
    now_ms: u64,
    down_until: Vec<Option<u64>>,
    /// Faults to revert: when, the fault, and the directed links it cut.
    undo: Vec<Active>,
    /// How many active faults cut each directed link (cut while above zero).
    cuts: BTreeMap<(String, String), u32>,
    /// How many active pauses hold each replica (its links are held while above zero).
    paused: Vec<u32>,
    rng: SplitMix64,
    failures: Vec<String>,
    counts: FaultCounts,
    applied_seen: Vec<(u64, u64)>,
    /// Replicas whose disk lost data (reformat, rot) and that have not been seen current
    /// (primary or backup, applied as far as any replica) since.
    lacking: Vec<bool>,
    trace: u64,
}

/// Runs `seed`'s scenario and returns what was observed.
pub fn simulate(seed: u64, knobs: &Knobs) -> Observation {
    let scenario = Scenario::draw(seed, knobs);
    let n = scenario.replica_count;
    let shared = Shared::new(n);
    let addresses: Vec<String> = (0..n).map(|i| format!("{}:{PORT}", name(i))).collect();
    let mut storages = Vec::new();
    for index in 0..n {
        let mut config = SimConfig::new(seed ^ (u64::from(index) << 48) ^ 0xD15C);
        config.lie_about_sync = scenario.lying_disks;
        let storage = SimStorage::new(config);
        let settings = settings(index, n, scenario.checkpoint_interval_ops);
        Replica::format(storage.clone(), settings.replica_config())
            .expect("a fresh simulated disk formats");
        storages.push(storage);
    }
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .epoch(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        .tick_duration(Duration::from_millis(1))
        .simulation_duration(Duration::from_secs(3_600))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(LATENCY_MAX_MS))
        .repair_rate(0.2)
        .tcp_capacity(4_096)
        .build();
    let checkpoint_interval_ops = scenario.checkpoint_interval_ops;
    for index in 0..n {
        let storage = storages[usize::from(index)].clone();
        let shared = shared.clone();
        let others: Vec<String> = (0..n)
            .filter(|r| *r != index)
            .map(name)
            .chain((0..scenario.client_count).map(client_name))
            .collect();
        let mut options = RuntimeOptions::new(addresses.clone());
        options.listen = Some(format!("0.0.0.0:{PORT}"));
        // Plaintext on turmoil's simulated network, explicitly (the seam is `ServerSecurity`).
        options.security = Some(allocdb_server::tls::ServerSecurity::Insecure);
        options.clock_rate_ppm = scenario.clock_rates_ppm[usize::from(index)];
        // A sync thread would run outside turmoil's schedule; a task keeps the run replayable.
        options.disk_jobs = allocdb_server::disk_jobs::DiskJobMode::Task {
            checkpoint_delay: Duration::from_millis(scenario.checkpoint_delay_ms),
        };
        options.state_observer = Some(
            shared.borrow().replicas[usize::from(index)]
                .observer
                .clone(),
        );
        sim.host(name(index), move || {
            run_replica(
                index,
                storage.clone(),
                settings(index, n, checkpoint_interval_ops),
                options.clone(),
                others.clone(),
                shared.clone(),
            )
        });
    }
    for client in 0..scenario.client_count {
        let future =
            workload::run_client(client, scenario.clone(), addresses.clone(), shared.clone());
        sim.client(client_name(client), future);
    }
    let controller_rates = scenario.clock_rates_ppm.clone();
    let mut controller = Controller {
        sim,
        rng: SplitMix64::new(seed ^ 0xC0_4721),
        scenario,
        storages,
        shared,
        history: History::default(),
        now_ms: 0,
        down_until: vec![None; usize::from(n)],
        undo: Vec::new(),
        cuts: BTreeMap::new(),
        failures: Vec::new(),
        paused: vec![0; usize::from(n)],
        lacking: vec![false; usize::from(n)],
        counts: FaultCounts {
            drifting_clocks: scenario_drifting(&controller_rates),
            ..FaultCounts::default()
        },
        applied_seen: Vec::new(),
        trace: seed,
    };
    controller.run();
    controller.finish()
}

/// Replicas whose clock runs fast or slow.
fn scenario_drifting(rates: &[i32]) -> u64 {
    rates.iter().filter(|rate| **rate != 0).count() as u64
}

/// The settings of replica `index` of a simulated `count`-replica cluster.
pub fn settings(index: u8, count: u8, checkpoint_interval_ops: u64) -> ClusterSettings {
    let mut settings = ClusterSettings::new(CLUSTER_ID, index, count, SLOT_MS, core_config());
    settings.replica.clock_drift_ppm_max = CLOCK_DRIFT_PPM_MAX;
    settings.replica.checkpoint_interval_ops = checkpoint_interval_ops;
    settings.tick_ms = 10;
    settings.replica.batch_requests_max = 256;
    settings.replica.request_queue_max = 1_024;
    settings.replica.read_queue_max = 256;
    settings
}

impl Controller<'_> {
    fn run(&mut self) {
        let mut faults = self.scenario.faults.clone().into_iter().peekable();
        let fault_ms = self.scenario.fault_ms;
        while self.now_ms < fault_ms {
            while faults.peek().is_some_and(|f| f.at_ms <= self.now_ms) {
                let fault = faults.next().expect("peeked");
                self.apply(fault);
            }
            self.undo_due();
            if !self.tick() {
                return;
            }
        }
        self.heal();
        let heal_end = fault_ms + self.scenario.heal_ms;
        while self.shared.borrow().clients_done < self.scenario.client_count {
            if self.now_ms >= heal_end {
                let done = self.shared.borrow().clients_done;
                self.failures.push(format!(
                    "liveness: only {done} of {} clients finished their pending work within {} ms of healing",
                    self.scenario.client_count, self.scenario.heal_ms
                ));
                break;
            }
            if !self.tick() {
                return;
            }
        }
        // Replicas catch up (a replica that lost its log repairs it from its peers); they
        // stop once they all applied the same op, or when healing time is up.
        let settle_end = (self.now_ms + SETTLE_MS).max(heal_end);
        let mut converged_since: Option<u64> = None;
        while self.now_ms < settle_end {
            if self.converged() {
                let since = *converged_since.get_or_insert(self.now_ms);
                // Hold a little so the last commit heartbeat cannot be in flight.
                if self.now_ms >= since + 200 {
                    break;
                }
            } else {
                converged_since = None;
            }
            if !self.tick() {
                return;
            }
        }
        self.stop_replicas();
    }

    /// Whether every replica runs and reports the same applied op.
    fn converged(&self) -> bool {
        let shared = self.shared.borrow();
        let applied: Vec<Option<u64>> = shared
            .replicas
            .iter()
            .map(|slot| slot.live_state().map(|(applied, _)| applied))
            .collect();
        applied.iter().all(Option::is_some) && applied.windows(2).all(|w| w[0] == w[1])
    }

    /// One millisecond of simulated time, plus restarts and samples. False when a host failed.
    fn tick(&mut self) -> bool {
        self.restart_due();
        if self.now_ms % SAMPLE_MS == 0 {
            self.sample_all();
        }
        if let Err(error) = self.sim.step() {
            self.failures
                .push(format!("{HOST_FAILED} (panic or error): {error}"));
            return false;
        }
        self.now_ms += 1;
        self.note_applied();
        true
    }

    /// Records when each op was first seen applied (so committed), for the expiry checker.
    fn note_applied(&mut self) {
        let applied = self
            .shared
            .borrow()
            .replicas
            .iter()
            .filter_map(|slot| slot.live_state().map(|(applied, _)| applied))
            .max()
            .unwrap_or(0);
        if applied > self.applied_seen.last().map_or(0, |(op, _)| *op) {
            self.applied_seen.push((applied, self.now_ms * 1_000));
        }
    }

    fn sample_all(&mut self) {
        for index in 0..self.scenario.replica_count {
            let live = self.shared.borrow().replicas[usize::from(index)].live_state();
            let applied = live.map_or(0, |(applied, _)| applied);
            if let Some((_, view)) = live {
                self.history.view_max = self.history.view_max.max(view);
            }
            let storage = &self.storages[usize::from(index)];
            let interval = self.scenario.checkpoint_interval_ops;
            let wal = settings(index, self.scenario.replica_count, interval)
                .replica_config()
                .wal;
            let history = &self.history;
            // A disk with injected read errors may fail to copy; the next sample retries.
            if let Ok(sample) = disk::sample(storage, wal, applied, &|op| !history.knows(op)) {
                self.history.observe(index, self.now_ms, sample);
            }
        }
    }

    fn note(&mut self, what: &str, value: u64) {
        let mut hash = self.now_ms;
        for byte in what.bytes() {
            hash = mix(hash, u64::from(byte));
        }
        self.trace = mix(self.trace, mix(hash, value));
    }

    fn primary_guess(&self) -> u8 {
        let view = self.shared.borrow().view_max;
        u8::try_from(view % u64::from(self.scenario.replica_count)).expect("below the count")
    }

    /// Every node (replicas and clients) other than replica `replica`.
    fn others(&self, replica: u8) -> Vec<String> {
        let replicas = (0..self.scenario.replica_count)
            .filter(|r| *r != replica)
            .map(name);
        let clients = (0..self.scenario.client_count).map(client_name);
        replicas.chain(clients).collect()
    }

    /// Whether `node` is a paused replica (its links are held, not cut or repaired).
    fn is_paused(&self, node: &str) -> bool {
        node.strip_prefix('r')
            .and_then(|index| index.parse::<usize>().ok())
            .is_some_and(|index| self.paused[index] > 0)
    }

    /// Cuts the directed link `from -> to` (reference-counted across overlapping faults).
    /// A paused replica's links stay held; the cut takes effect when it resumes.
    fn cut(&mut self, from: &str, to: &str) {
        let count = self
            .cuts
            .entry((from.to_string(), to.to_string()))
            .or_insert(0);
        *count += 1;
        if *count == 1 && !self.is_paused(from) && !self.is_paused(to) {
            self.sim.partition_oneway(from, to);
        }
    }

    /// Undoes one [`Controller::cut`].
    fn uncut(&mut self, from: &str, to: &str) {
        let key = (from.to_string(), to.to_string());
        let count = self.cuts.get_mut(&key).expect("only cut links are uncut");
        assert!(*count > 0);
        *count -= 1;
        if *count == 0 {
            self.cuts.remove(&key);
            if !self.is_paused(from) && !self.is_paused(to) {
                self.sim.repair_oneway(from, to);
            }
        }
    }

    /// Cuts both directions between `a` and every node of `others`; returns the cut links.
    fn isolate(&mut self, a: &str, others: &[String]) -> Vec<(String, String)> {
        let mut cut = Vec::new();
        for other in others {
            self.cut(a, other);
            self.cut(other, a);
            cut.push((a.to_string(), other.clone()));
            cut.push((other.clone(), a.to_string()));
        }
        cut
    }

    fn apply(&mut self, fault: Fault) {
        let n = self.scenario.replica_count;
        let mut cut: Vec<(String, String)> = Vec::new();
        self.note(fault.kind.name(), fault.for_ms);
        match &fault.kind {
            FaultKind::Partition { side } => {
                let far: Vec<String> = (0..n).filter(|b| !side.contains(b)).map(name).collect();
                for a in side {
                    cut.extend(self.isolate(&name(*a), &far));
                }
            }
            FaultKind::OneWay { from, to } => {
                self.cut(&name(*from), &name(*to));
                cut.push((name(*from), name(*to)));
            }
            FaultKind::IsolatePrimary => {
                let primary = self.primary_guess();
                let others = self.others(primary);
                cut = self.isolate(&name(primary), &others);
            }
            FaultKind::LinkLoss {
                a,
                b,
                fail_per_mille,
            } => {
                let rate = f64::from(*fail_per_mille) / 1_000.0;
                self.sim.set_link_fail_rate(name(*a), name(*b), rate);
            }
            FaultKind::LatencySpike {
                replica,
                latency_ms,
            } => {
                for other in (0..n).filter(|r| r != replica) {
                    let latency = Duration::from_millis(*latency_ms);
                    self.sim
                        .set_link_max_message_latency(name(*replica), name(other), latency);
                }
            }
            FaultKind::Crash { replica } => self.crash(*replica, fault.for_ms),
            FaultKind::CrashPrimary => {
                let primary = self.primary_guess();
                self.crash(primary, fault.for_ms);
            }
            FaultKind::DiskErrors { replica } => {
                self.storages[usize::from(*replica)].set_faults(300, 300, 100);
            }
            FaultKind::CorruptLog { replica } => {
                if !self.may_lose_disk(*replica) {
                    self.counts.disk_losses_skipped += 1;
                    return;
                }
                self.lacking[usize::from(*replica)] = true;
                self.crash(*replica, fault.for_ms);
                let pick = self.rng.next_u64();
                if let Some((file, bit)) =
                    disk::rot_newest_segment(&self.storages[usize::from(*replica)], pick)
                {
                    self.note(&file, bit);
                }
            }
            FaultKind::Pause { replica } => {
                self.apply_pause(&fault, *replica);
                return;
            }
            FaultKind::BeyondF { replicas, crash } => {
                cut = self.apply_beyond_f(replicas, *crash, fault.for_ms);
            }
            FaultKind::SecondProcess { replica } => {
                self.second_process(*replica);
                return;
            }
            FaultKind::Reformat { replica } => {
                if !self.may_lose_disk(*replica) {
                    self.counts.disk_losses_skipped += 1;
                    return;
                }
                self.reformat(*replica, fault.for_ms);
            }
        }
        if fault.kind.is_partition() {
            self.counts.partitions += 1;
        }
        if matches!(
            fault.kind,
            FaultKind::DiskErrors { .. } | FaultKind::CorruptLog { .. }
        ) {
            self.counts.disk_faults += 1;
        }
        self.undo.push((fault.at_ms + fault.for_ms, fault, cut));
    }

    /// Pauses `replica` (or the primary) unless it is down; the resume is scheduled.
    fn apply_pause(&mut self, fault: &Fault, replica: Option<u8>) {
        let replica = replica.unwrap_or_else(|| self.primary_guess());
        if self.down_until[usize::from(replica)].is_some() {
            return; // A machine that is off cannot be paused.
        }
        self.pause(replica);
        let resolved = Fault {
            kind: FaultKind::Pause {
                replica: Some(replica),
            },
            ..fault.clone()
        };
        self.undo
            .push((fault.at_ms + fault.for_ms, resolved, Vec::new()));
    }

    /// Crashes or cuts off every one of `replicas` (more than f) at once; returns the cuts.
    fn apply_beyond_f(
        &mut self,
        replicas: &[u8],
        crash: bool,
        for_ms: u64,
    ) -> Vec<(String, String)> {
        let mut cut = Vec::new();
        for replica in replicas {
            if crash {
                self.crash(*replica, for_ms);
            } else {
                let others = self.others(*replica);
                cut.extend(self.isolate(&name(*replica), &others));
            }
        }
        self.counts.beyond_f += 1;
        self.counts.partitions += u64::from(!crash);
        cut
    }

    /// A second process opens the data directory of `replica` while it runs: the log's
    /// exclusive lock must refuse it before it reads or writes anything.
    fn second_process(&mut self, replica: u8) {
        let running = {
            let shared = self.shared.borrow();
            let slot = &shared.replicas[usize::from(replica)];
            self.down_until[usize::from(replica)].is_none()
                && slot.halted.is_none()
                && slot.live_state().is_some()
        };
        if !running {
            return;
        }
        let interval = self.scenario.checkpoint_interval_ops;
        let settings = settings(replica, self.scenario.replica_count, interval);
        let storage = self.storages[usize::from(replica)].clone();
        match Replica::open(storage, settings.replica_config()) {
            Err(allocdb_vsr::ReplicaError::Wal(allocdb_wal::WalError::Storage(error)))
                if error.kind == allocdb_wal::StorageErrorKind::Locked => {}
            Err(error) => self.failures.push(format!(
                "second process: opening live replica {replica}'s directory failed with {error}, not with the lock"
            )),
            Ok(_) => self.failures.push(format!(
                "second process: a second replica {replica} opened its live data directory"
            )),
        }
        self.counts.second_processes += 1;
        self.note("second_process", u64::from(replica));
    }

    /// Whether `replica` may lose its disk now: every other replica is running, current
    /// (primary or backup, applied as far as any replica) and not itself lacking data, so at
    /// most one disk at a time lacks acknowledged data (f ≥ 1).
    fn may_lose_disk(&mut self, replica: u8) -> bool {
        let states: Vec<Option<(Role, u64)>> = {
            let shared = self.shared.borrow();
            shared
                .replicas
                .iter()
                .map(|slot| {
                    let observer = slot.observer.lock().ok()?;
                    let state = *observer.as_ref()?.borrow();
                    Some((state.role, state.applied))
                })
                .collect()
        };
        let applied_max = states.iter().flatten().map(|s| s.1).max().unwrap_or(0);
        for (index, state) in states.iter().enumerate() {
            let current = state.is_some_and(|(role, applied)| {
                matches!(role, Role::Primary | Role::Backup) && applied >= applied_max
            });
            if current && self.down_until[index].is_none() {
                self.lacking[index] = false;
            }
        }
        self.scenario.replica_count > 1
            && (0..self.scenario.replica_count)
                .filter(|other| *other != replica)
                .all(|other| {
                    let index = usize::from(other);
                    !self.lacking[index]
                        && self.down_until[index].is_none()
                        && states[index]
                            .is_some_and(|(role, _)| matches!(role, Role::Primary | Role::Backup))
                })
    }

    /// The replica loses power and its disk; the new disk is formatted as `allocdb format`
    /// formats an empty data directory, and the replica restarts `down_ms` later.
    fn reformat(&mut self, replica: u8, down_ms: u64) {
        self.crash(replica, down_ms);
        let interval = self.scenario.checkpoint_interval_ops;
        let settings = settings(replica, self.scenario.replica_count, interval);
        disk::reformat(&self.storages[usize::from(replica)], &settings)
            .expect("a simulated disk without faults formats");
        self.counts.reformats += 1;
        self.lacking[usize::from(replica)] = true;
        self.note("reformat", u64::from(replica));
    }

    /// SIGSTOP: every link of `replica` holds its messages (both ways) until it resumes.
    fn pause(&mut self, replica: u8) {
        let index = usize::from(replica);
        self.paused[index] += 1;
        if self.paused[index] == 1 {
            for other in self.others(replica) {
                self.sim.hold(name(replica), other);
            }
            self.counts.pauses += 1;
            self.note("pause", u64::from(replica));
        }
    }

    /// SIGCONT: held messages are delivered, and links cut meanwhile are cut again.
    fn resume(&mut self, replica: u8, all: bool) {
        let index = usize::from(replica);
        if self.paused[index] == 0 {
            return; // It crashed while paused, which ended the pause.
        }
        self.paused[index] = if all { 0 } else { self.paused[index] - 1 };
        if self.paused[index] > 0 {
            return;
        }
        for other in self.others(replica) {
            self.sim.release(name(replica), other.as_str());
            for (from, to) in [
                (name(replica), other.clone()),
                (other.clone(), name(replica)),
            ] {
                if self.cuts.contains_key(&(from.clone(), to.clone()))
                    && !self.is_paused(&from)
                    && !self.is_paused(&to)
                {
                    self.sim.partition_oneway(from, to);
                }
            }
        }
        self.note("resume", u64::from(replica));
    }

    fn undo_due(&mut self) {
        let now = self.now_ms;
        let (due, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.undo)
            .into_iter()
            .partition(|(end, _, _)| *end <= now);
        self.undo = keep;
        for (_, fault, cut) in due {
            self.revert(&fault, &cut);
        }
    }

    fn revert(&mut self, fault: &Fault, cut: &[(String, String)]) {
        let n = self.scenario.replica_count;
        for (from, to) in cut {
            self.uncut(from, to);
        }
        match &fault.kind {
            FaultKind::LinkLoss { a, b, .. } => {
                self.sim.set_link_fail_rate(name(*a), name(*b), 0.0);
                // A random failure may have overwritten explicit cuts: repair, then re-cut.
                self.sim.repair(name(*a), name(*b));
                if self.is_paused(&name(*a)) || self.is_paused(&name(*b)) {
                    // Still paused: hold again; the resume re-applies the cuts.
                    self.sim.hold(name(*a), name(*b));
                    return;
                }
                for (from, to) in [(name(*a), name(*b)), (name(*b), name(*a))] {
                    if self.cuts.contains_key(&(from.clone(), to.clone())) {
                        self.sim.partition_oneway(from, to);
                    }
                }
            }
            FaultKind::LatencySpike { replica, .. } => {
                for other in (0..n).filter(|r| r != replica) {
                    let latency = Duration::from_millis(LATENCY_MAX_MS);
                    self.sim
                        .set_link_max_message_latency(name(*replica), name(other), latency);
                }
            }
            FaultKind::DiskErrors { replica } => {
                self.storages[usize::from(*replica)].set_faults(0, 0, 0);
            }
            FaultKind::Pause { replica } => {
                self.resume(replica.expect("resolved when applied"), false);
            }
            // Cuts are undone above; crashed replicas restart on their own schedule.
            FaultKind::Partition { .. }
            | FaultKind::OneWay { .. }
            | FaultKind::IsolatePrimary
            | FaultKind::Crash { .. }
            | FaultKind::CrashPrimary
            | FaultKind::CorruptLog { .. }
            | FaultKind::BeyondF { .. }
            | FaultKind::Reformat { .. }
            | FaultKind::SecondProcess { .. } => {}
        }
    }

    /// Power loss: the process dies and the disk keeps only what was synced.
    /// A dead machine sends nothing: its links are cut while its process is torn down, so the
    /// order in which the runtime drops its sockets (which follows tokio's global task ids,
    /// not the seed) never reaches the network.
    fn crash(&mut self, replica: u8, down_ms: u64) {
        // Power loss ends a pause: the held messages are delivered to and from a machine about
        // to lose them, as a kernel's buffers would be when it dies.
        self.resume(replica, true);
        let others = self.others(replica);
        let cut = self.isolate(&name(replica), &others);
        self.sim.crash(name(replica));
        for (from, to) in &cut {
            self.uncut(from, to);
        }
        self.shared.borrow().replicas[usize::from(replica)].clear_state();
        self.storages[usize::from(replica)].crash();
        let until = self.now_ms + down_ms;
        let slot = &mut self.down_until[usize::from(replica)];
        *slot = Some(slot.map_or(until, |t| t.max(until)));
        self.counts.crashes += 1;
        self.note("crash", u64::from(replica));
    }

    fn restart_due(&mut self) {
        for replica in 0..self.scenario.replica_count {
            let index = usize::from(replica);
            let (halted, open_failure) = {
                let mut shared = self.shared.borrow_mut();
                let slot = &mut shared.replicas[index];
                (slot.halted.take(), slot.open_failure.take())
            };
            if let Some(reason) = open_failure {
                let text = format!("liveness: {reason}");
                if self.shared.borrow().phase == Phase::Heal && !self.failures.contains(&text) {
                    self.failures.push(text);
                }
                self.crash(replica, 300);
            } else if let Some(reason) = halted {
                self.note(&reason, u64::from(replica));
                let down_ms = 100 + self.rng.below(400);
                self.crash(replica, down_ms);
            }
            if self.down_until[index].is_some_and(|t| t <= self.now_ms) {
                self.down_until[index] = None;
                self.sim.bounce(name(replica));
                self.note("restart", u64::from(replica));
            }
        }
    }

    /// Removes every fault and restarts every replica that is down.
    fn heal(&mut self) {
        for (_, fault, cut) in std::mem::take(&mut self.undo) {
            self.revert(&fault, &cut);
        }
        assert!(self.cuts.is_empty(), "every cut belongs to a fault");
        let n = self.scenario.replica_count;
        for a in 0..n {
            for other in self.others(a) {
                self.sim.repair(name(a), other);
            }
            self.storages[usize::from(a)].set_faults(0, 0, 0);
            if self.down_until[usize::from(a)].is_some() {
                self.down_until[usize::from(a)] = Some(self.now_ms);
            }
        }
        self.shared.borrow_mut().phase = Phase::Heal;
        self.note("heal", 0);
    }

    fn stop_replicas(&mut self) {
        for slot in &self.shared.borrow().replicas {
            if let Some(stop) = &slot.shutdown {
                let _ = stop.send(true);
            }
        }
        let stop_end = self.now_ms + STOP_MS;
        while self.now_ms < stop_end {
            let all = self
                .shared
                .borrow()
                .replicas
                .iter()
                .all(|slot| slot.finished.is_some());
            if all || !self.tick() {
                break;
            }
        }
    }

    fn finish(mut self) -> Observation {
        self.sample_all();
        let shared = self.shared.borrow();
        let finals: Vec<Option<FinalReplica>> =
            shared.replicas.iter().map(|slot| slot.finished).collect();
        let mut failures = std::mem::take(&mut self.failures);
        failures.extend(shared.liveness.iter().cloned());
        let mut trace = self.trace;
        for record in &shared.records {
            trace = mix(trace, record.digest());
        }
        for (op, committed) in &self.history.ops {
            trace = mix(
                trace,
                mix(*op, u64::try_from(committed.checksum >> 64).unwrap_or(0)),
            );
        }
        Observation {
            scenario: self.scenario.clone(),
            records: shared.records.clone(),
            finals,
            failures,
            crashes: self.counts.crashes,
            partitions: self.counts.partitions,
            faults: self.counts,
            applied_seen: std::mem::take(&mut self.applied_seen),
            trace_digest: trace,
            history: std::mem::take(&mut self.history),
        }
    }
}
