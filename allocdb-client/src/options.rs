//! How a client is configured. Every queue and wait has a limit named here.

use std::time::Duration;

use crate::tls::Security;

/// The client's configuration. Start from [`ClientOptions::new`] and override fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientOptions {
    /// The replicas' client addresses (`host:port`), in replica-index order: a `not_primary`
    /// answer names the primary by its index in this list.
    pub addresses: Vec<String>,
    /// The cluster this client talks to; frames of another cluster are refused.
    pub cluster_id: u128,
    /// How long a call may take, retries included, when the call does not say.
    pub call_timeout: Duration,
    /// How long to wait for any answer from the replica in use before trying the next one.
    pub request_timeout: Duration,
    /// How long to wait for a TCP connection to open.
    pub connect_timeout: Duration,
    /// Calls in flight at once (sent or waiting to be sent). One more waits for a slot. Also
    /// caps the session's window of numbered writes (with the cluster's
    /// `session_requests_max`).
    pub in_flight_max: u32,
    /// Requests coalesced into one frame.
    pub batch_requests_max: u32,
    /// Frames sent and not yet fully answered. Calls arriving while this many are out wait
    /// and then leave together in one frame: the busier the client, the bigger its batches.
    /// 1 (as `TigerBeetle`'s clients do) gives the largest batches, and the primary prepares
    /// a frame's writes together; measured best (see `docs/performance.md`). A frame holding
    /// a linearizable read is done only when the read is, which can delay the next frame.
    pub frames_in_flight_max: u32,
    /// The first pause before resending after `overloaded`, or after every replica failed;
    /// doubles per consecutive failure up to [`ClientOptions::backoff_max`].
    pub backoff_min: Duration,
    /// The longest such pause.
    pub backoff_max: Duration,
    /// Fixes the client's identity (client id and application-key nonces) so a simulation
    /// replays exactly; `None` draws it from the OS. Two live clients must never share one.
    pub identity_seed: Option<u64>,
    /// TLS credentials, or explicitly plaintext. `None` (the default) is refused by
    /// [`crate::Client::connect`]: plaintext is never chosen silently.
    pub security: Option<Security>,
}

impl ClientOptions {
    /// Defaults for `addresses` of cluster `cluster_id`.
    pub fn new(addresses: Vec<String>, cluster_id: u128) -> ClientOptions {
        ClientOptions {
            addresses,
            cluster_id,
            call_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_millis(500),
            connect_timeout: Duration::from_millis(500),
            in_flight_max: 1024,
            batch_requests_max: 1024,
            frames_in_flight_max: 1,
            backoff_min: Duration::from_millis(2),
            backoff_max: Duration::from_millis(200),
            identity_seed: None,
            security: None,
        }
    }

    /// Why these options cannot work, or `None`.
    pub fn problem(&self) -> Option<String> {
        if self.security.is_none() {
            return Some(
                "security: set TLS credentials (Security::Tls, from the files `allocdb certs` \
                 makes) or ask for plaintext explicitly (Security::Insecure)"
                    .to_string(),
            );
        }
        if self.addresses.is_empty() {
            return Some("addresses: at least one replica address is needed".to_string());
        }
        if self.addresses.len() > usize::from(allocdb_vsr::REPLICAS_MAX) {
            return Some(format!(
                "addresses: {} given, a cluster has at most {}",
                self.addresses.len(),
                allocdb_vsr::REPLICAS_MAX
            ));
        }
        if self.in_flight_max == 0 || self.batch_requests_max == 0 || self.frames_in_flight_max == 0
        {
            return Some(
                "in_flight_max, batch_requests_max and frames_in_flight_max must be at least 1"
                    .to_string(),
            );
        }
        if self.request_timeout.is_zero() || self.connect_timeout.is_zero() {
            return Some("request_timeout and connect_timeout must be positive".to_string());
        }
        if self.backoff_min.is_zero() || self.backoff_min > self.backoff_max {
            return Some("backoff_min must be positive and at most backoff_max".to_string());
        }
        None
    }
}

/// Per-call overrides.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallOptions {
    /// The operation id to use, passed through unchanged: an application key from
    /// [`crate::Client::new_operation_id`], or the id of an earlier call whose outcome was
    /// indefinite, to learn it (the cluster answers a retry with the stored outcome while it
    /// keeps it; see [`crate::ClientError::Indefinite`]). `None`: the client numbers the write
    /// on its session.
    pub operation_id: Option<allocdb_core::OperationId>,
    /// This call's deadline; `None` uses [`ClientOptions::call_timeout`].
    pub timeout: Option<std::time::Duration>,
}
