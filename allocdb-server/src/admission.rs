//! Who may hold a connection to a replica, and for how long.
//!
//! Every accepted connection gets a [`Ticket`] from [`Admission`] and holds it until it closes.
//! A connection starts *unidentified* (TLS handshake and first frame still to come) and then
//! becomes a *session* (client or status) or a *peer* link. Each class has its own capacity,
//! so no class can starve another:
//! - **Peers** have reserved slots ([`PEER_LINKS_PER_REPLICA`] per other replica): clients
//!   can never take them, and an established peer link does not count against its address.
//! - **Unidentified** connections are bounded by `unidentified_max`; when a new connection
//!   arrives and the class is full, the *oldest* unidentified connection is closed. A flood of
//!   silent connections therefore only shortens how long each of them may stay silent; it
//!   never stops a new connection (a real client, or a reconnecting peer) from being accepted
//!   and identifying itself.
//! - **Sessions** are bounded by `client_sessions_max`; a hello beyond it is refused at once
//!   (`overloaded`), and idle sessions are closed after `idle_timeout` (in `connection`).
//! - Connections from one IP address (unidentified and sessions; not peers) are bounded by
//!   `per_address_max`: beyond it a new connection is refused at once.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio::time::Duration;

use crate::frame_io::FramePace;
use crate::metrics::Metrics;

/// Inbound peer links reserved per other replica: a reconnecting peer's new link may overlap
/// its old one until the old one's idle timeout closes it.
pub const PEER_LINKS_PER_REPLICA: usize = 2;

/// The bounds on connections a replica accepts (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Client and status sessions open at once.
    pub client_sessions_max: usize,
    /// Connections still in their TLS handshake or before their first frame; beyond it the
    /// oldest one is closed.
    pub unidentified_max: usize,
    /// Connections from one IP address (peer links excepted).
    pub per_address_max: usize,
    /// How long a connection may take for its TLS handshake and its first frame, together.
    pub handshake_timeout: Duration,
    /// How long a client session may go without a complete frame in or a reply out.
    pub idle_timeout: Duration,
    /// How fast a frame must arrive once it has started (clients and peers).
    pub frame_pace: FramePace,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            client_sessions_max: 4096,
            unidentified_max: 1024,
            per_address_max: 64,
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            frame_pace: FramePace::default(),
        }
    }
}

impl ConnectionLimits {
    /// Checks that every bound admits at least one connection.
    ///
    /// # Errors
    /// A zero bound or timeout, named.
    pub fn check(&self) -> Result<(), String> {
        let zero = [
            ("client_sessions_max", self.client_sessions_max == 0),
            ("unidentified_max", self.unidentified_max == 0),
            ("per_address_max", self.per_address_max == 0),
            ("handshake_timeout", self.handshake_timeout.is_zero()),
            ("idle_timeout", self.idle_timeout.is_zero()),
            ("frame_rate_min", self.frame_pace.bytes_per_second_min == 0),
        ];
        match zero.iter().find(|(_, is_zero)| *is_zero) {
            Some((name, _)) => Err(format!("connection limit {name} must be above zero")),
            None => Ok(()),
        }
    }
}

/// Why a connection was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Its address already holds `per_address_max` connections.
    Address {
        /// The address.
        address: IpAddr,
        /// The bound.
        limit: usize,
    },
    /// `client_sessions_max` sessions are open.
    Sessions {
        /// The bound.
        limit: usize,
    },
    /// Every reserved peer slot is taken.
    Peers {
        /// The bound.
        limit: usize,
    },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Address { address, limit } => {
                write!(f, "too many connections from {address} (limit {limit})")
            }
            Refusal::Sessions { limit } => {
                write!(f, "too many client sessions (limit {limit}); retry later")
            }
            Refusal::Peers { limit } => write!(f, "too many peer links (limit {limit})"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Unidentified,
    Session,
    Peer,
}

#[derive(Default)]
struct State {
    per_address: HashMap<IpAddr, usize>,
    /// Unidentified connections by ticket id (oldest first), each with its eviction signal.
    unidentified: BTreeMap<u64, Arc<Notify>>,
    sessions: usize,
    peers: usize,
    next_id: u64,
}

/// The shared bookkeeping of who holds a connection.
pub struct Admission {
    limits: ConnectionLimits,
    peers_max: usize,
    metrics: Arc<Metrics>,
    state: Mutex<State>,
}

impl Admission {
    /// Admission for a replica of a cluster of `replica_count`.
    pub fn new(limits: ConnectionLimits, replica_count: u8, metrics: Arc<Metrics>) -> Admission {
        assert!(replica_count >= 1);
        assert!(limits.check().is_ok(), "checked by the caller");
        Admission {
            limits,
            peers_max: PEER_LINKS_PER_REPLICA * usize::from(replica_count - 1),
            metrics,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Nothing panics while holding the lock, so a poisoned one still holds valid counts.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Admits a new connection from `address` as unidentified, closing the oldest
    /// unidentified connection if that class is full.
    ///
    /// # Errors
    /// [`Refusal::Address`]: the address holds its maximum of connections.
    pub fn admit(self: &Arc<Self>, address: IpAddr) -> Result<Ticket, Refusal> {
        let limit = self.limits.per_address_max;
        let evicted = Arc::new(Notify::new());
        let mut state = self.lock();
        let held = state.per_address.entry(address).or_insert(0);
        if *held >= limit {
            drop(state);
            self.metrics.connections_refused_address.add(1);
            return Err(Refusal::Address { address, limit });
        }
        *held += 1;
        let id = state.next_id;
        state.next_id += 1;
        state.unidentified.insert(id, Arc::clone(&evicted));
        let mut evictions = 0;
        while state.unidentified.len() > self.limits.unidentified_max {
            let (oldest, signal) = state
                .unidentified
                .pop_first()
                .expect("over a bound above 0");
            assert_ne!(oldest, id, "the newest connection is never the oldest");
            signal.notify_one();
            evictions += 1;
        }
        assert!(state.unidentified.len() <= self.limits.unidentified_max);
        drop(state);
        self.metrics.connections_evicted.add(evictions);
        Ok(Ticket {
            admission: Arc::clone(self),
            id,
            address,
            class: Class::Unidentified,
            evicted,
        })
    }

    /// Connections held now: (unidentified, sessions, peers).
    pub fn held(&self) -> (usize, usize, usize) {
        let state = self.lock();
        (state.unidentified.len(), state.sessions, state.peers)
    }
}

/// One connection's place; released when dropped.
pub struct Ticket {
    admission: Arc<Admission>,
    id: u64,
    address: IpAddr,
    class: Class,
    evicted: Arc<Notify>,
}

impl Ticket {
    /// Resolves when this (still unidentified) connection was closed to make room for a newer
    /// one. Cancel-safe.
    pub async fn evicted(&self) {
        assert_eq!(self.class, Class::Unidentified);
        self.evicted.notified().await;
    }

    /// The connection identified itself as a client (or status) session.
    ///
    /// # Errors
    /// [`Refusal::Sessions`]: every session slot is taken.
    pub fn into_session(&mut self) -> Result<(), Refusal> {
        assert_eq!(self.class, Class::Unidentified);
        let limit = self.admission.limits.client_sessions_max;
        let mut state = self.admission.lock();
        if state.sessions >= limit {
            drop(state);
            self.admission.metrics.connections_refused_sessions.add(1);
            return Err(Refusal::Sessions { limit });
        }
        state.unidentified.remove(&self.id);
        state.sessions += 1;
        self.class = Class::Session;
        Ok(())
    }

    /// The connection identified itself as a peer link: it moves to the reserved peer slots
    /// and stops counting against its address.
    ///
    /// # Errors
    /// [`Refusal::Peers`]: every peer slot is taken.
    pub fn into_peer(&mut self) -> Result<(), Refusal> {
        assert_eq!(self.class, Class::Unidentified);
        let limit = self.admission.peers_max;
        let mut state = self.admission.lock();
        if state.peers >= limit {
            drop(state);
            self.admission.metrics.connections_refused_peers.add(1);
            return Err(Refusal::Peers { limit });
        }
        state.unidentified.remove(&self.id);
        release_address(&mut state, self.address);
        state.peers += 1;
        self.class = Class::Peer;
        Ok(())
    }
}

fn release_address(state: &mut State, address: IpAddr) {
    let held = state
        .per_address
        .get_mut(&address)
        .expect("an admitted address is counted");
    assert!(*held > 0);
    *held -= 1;
    if *held == 0 {
        state.per_address.remove(&address);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut state = self.admission.lock();
        match self.class {
            Class::Unidentified => {
                // Absent if it was evicted.
                state.unidentified.remove(&self.id);
                release_address(&mut state, self.address);
            }
            Class::Session => {
                assert!(state.sessions > 0);
                state.sessions -= 1;
                release_address(&mut state, self.address);
            }
            Class::Peer => {
                assert!(state.peers > 0);
                state.peers -= 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Admission, ConnectionLimits, Refusal};
    use crate::metrics::Metrics;
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::Arc;

    fn admission(sessions: usize, unidentified: usize, per_address: usize) -> Arc<Admission> {
        let limits = ConnectionLimits {
            client_sessions_max: sessions,
            unidentified_max: unidentified,
            per_address_max: per_address,
            ..ConnectionLimits::default()
        };
        Arc::new(Admission::new(limits, 3, Arc::new(Metrics::default())))
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    #[test]
    fn an_address_over_its_bound_is_refused_until_one_closes() {
        let admission = admission(10, 10, 2);
        let first = admission.admit(ip(1)).unwrap();
        let _second = admission.admit(ip(1)).unwrap();
        assert!(matches!(
            admission.admit(ip(1)),
            Err(Refusal::Address { limit: 2, .. })
        ));
        let _other = admission.admit(ip(2)).unwrap();
        drop(first);
        assert!(admission.admit(ip(1)).is_ok());
    }

    #[tokio::test]
    async fn a_full_unidentified_class_closes_its_oldest() {
        let admission = admission(10, 2, 10);
        let oldest = admission.admit(ip(1)).unwrap();
        let middle = admission.admit(ip(1)).unwrap();
        let newest = admission.admit(ip(1)).unwrap();
        assert_eq!(admission.held(), (2, 0, 0));
        // The signal is kept for a waiter that starts after the eviction.
        tokio::time::timeout(std::time::Duration::from_secs(1), oldest.evicted())
            .await
            .expect("the oldest is evicted");
        let not_yet =
            tokio::time::timeout(std::time::Duration::from_millis(10), middle.evicted()).await;
        assert!(not_yet.is_err(), "the others stay");
        drop((oldest, middle, newest));
        assert_eq!(admission.held(), (0, 0, 0));
    }

    #[test]
    fn sessions_and_peers_have_their_own_capacity() {
        let admission = admission(1, 10, 10);
        let mut session = admission.admit(ip(1)).unwrap();
        session.into_session().unwrap();
        let mut refused = admission.admit(ip(1)).unwrap();
        assert_eq!(refused.into_session(), Err(Refusal::Sessions { limit: 1 }));
        // Two other replicas, two links each: four peer slots whatever the sessions hold.
        let mut peers = Vec::new();
        for _ in 0..4 {
            let mut peer = admission.admit(ip(1)).unwrap();
            peer.into_peer().unwrap();
            peers.push(peer);
        }
        let mut fifth = admission.admit(ip(1)).unwrap();
        assert_eq!(fifth.into_peer(), Err(Refusal::Peers { limit: 4 }));
        assert_eq!(admission.held(), (2, 1, 4));
        drop((session, refused, fifth, peers));
        assert_eq!(admission.held(), (0, 0, 0));
    }

    #[test]
    fn peers_do_not_count_against_their_address() {
        let admission = admission(10, 10, 1);
        let mut peer = admission.admit(ip(1)).unwrap();
        peer.into_peer().unwrap();
        let _client = admission.admit(ip(1)).unwrap();
        drop(peer);
    }
}
