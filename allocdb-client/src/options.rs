//! How a client is configured. Every queue and wait has a limit named here.

use std::time::Duration;

use allocdb_core::OperationId;

use crate::error::ClientError;
use crate::tls::{ClientRole, Security, TlsCredentials};

/// The environment variable [`ClientOptions::from_env`] reads the replicas' addresses from:
/// `host:port` entries separated by commas, in replica-index order.
pub const ENV_ADDRESSES: &str = "ALLOCDB_ADDRESSES";
/// The environment variable [`ClientOptions::from_env`] reads the cluster id from (unset: 0,
/// any cluster).
pub const ENV_CLUSTER: &str = "ALLOCDB_CLUSTER";
/// The environment variable naming the certificate directory (`ca.crt` and the role's
/// `<role>.crt`/`<role>.key`, as `allocdb certs` writes them).
pub const ENV_CERTS: &str = "ALLOCDB_CERTS";
/// The environment variable that asks for plaintext when set to `1` (as
/// `deploy/local/cluster.sh` does for its replicas); `0` or unset: TLS.
pub const ENV_INSECURE: &str = "ALLOCDB_INSECURE";

/// The default of [`ClientOptions::frames_in_flight_max`] (and of `allocdb benchmark
/// --frames-in-flight`).
pub const FRAMES_IN_FLIGHT_DEFAULT: u32 = 4;

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
    /// 1 gives the largest batches, but a call made while the frame is out waits a whole
    /// round; since the replicas sync their logs off their own tasks they pipeline frames,
    /// and 4 measured best with three replicas (see `docs/performance.md`). A frame holding a
    /// linearizable read is done only when the read is, which can delay the next frame.
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
            frames_in_flight_max: FRAMES_IN_FLIGHT_DEFAULT,
            backoff_min: Duration::from_millis(2),
            backoff_max: Duration::from_millis(200),
            identity_seed: None,
            security: None,
        }
    }

    /// Options from the environment, as `allocdb` and `deploy/local/cluster.sh` name them:
    /// [`ENV_ADDRESSES`] (required), [`ENV_CLUSTER`] (default 0, any cluster), and either
    /// [`ENV_CERTS`] (TLS with `role`'s certificate from that directory) or [`ENV_INSECURE`]`=1`
    /// (plaintext). Everything else keeps the defaults of [`ClientOptions::new`].
    ///
    /// ```
    /// use allocdb_client::{ClientOptions, ClientRole};
    ///
    /// // For example against `deploy/local/cluster.sh start`:
    /// //   export ALLOCDB_ADDRESSES=$(deploy/local/cluster.sh addresses) ALLOCDB_CLUSTER=1
    /// //   export ALLOCDB_CERTS=allocdb-cluster/certs
    /// match ClientOptions::from_env(ClientRole::Application) {
    ///     Ok(options) => println!("{} replicas of cluster {}", options.addresses.len(), options.cluster_id),
    ///     Err(error) => println!("not configured: {error}"),
    /// }
    /// ```
    ///
    /// # Errors
    /// [`ClientError::Invalid`] naming the variable that is missing or malformed, or the
    /// certificate file that cannot be read.
    pub fn from_env(role: ClientRole) -> Result<ClientOptions, ClientError> {
        ClientOptions::from_vars(|name| std::env::var(name).ok(), role)
    }

    /// [`ClientOptions::from_env`] over any source of variables: `var(name)` returns the
    /// value of [`ENV_ADDRESSES`], [`ENV_CLUSTER`], [`ENV_CERTS`] or [`ENV_INSECURE`], or
    /// `None` when unset. A command line passes its flags first and the environment second,
    /// so that flags override the environment with one parser for both.
    ///
    /// ```
    /// use allocdb_client::{ClientOptions, ClientRole, ENV_ADDRESSES, ENV_INSECURE};
    ///
    /// let options = ClientOptions::from_lookup(
    ///     |name| match name {
    ///         ENV_ADDRESSES => Some("127.0.0.1:3000".to_string()),
    ///         ENV_INSECURE => Some("1".to_string()),
    ///         _ => None,
    ///     },
    ///     ClientRole::Application,
    /// )
    /// .expect("valid");
    /// assert_eq!(options.addresses, ["127.0.0.1:3000"]);
    /// ```
    ///
    /// # Errors
    /// As [`ClientOptions::from_env`].
    pub fn from_lookup(
        var: impl Fn(&str) -> Option<String>,
        role: ClientRole,
    ) -> Result<ClientOptions, ClientError> {
        ClientOptions::from_vars(var, role)
    }

    /// [`ClientOptions::from_env`] over any source of variables (tests).
    fn from_vars(
        var: impl Fn(&str) -> Option<String>,
        role: ClientRole,
    ) -> Result<ClientOptions, ClientError> {
        let invalid = |reason: String| ClientError::Invalid { reason };
        let list = var(ENV_ADDRESSES).ok_or_else(|| {
            invalid(format!(
                "{ENV_ADDRESSES} is not set: give the replicas' addresses, comma-separated, in \
                 replica order (`deploy/local/cluster.sh addresses` prints them)"
            ))
        })?;
        let addresses: Vec<String> = list.split(',').map(|a| a.trim().to_string()).collect();
        if addresses.iter().any(String::is_empty) {
            return Err(invalid(format!(
                "{ENV_ADDRESSES}={list:?} has an empty entry"
            )));
        }
        let cluster_id = match var(ENV_CLUSTER) {
            None => 0,
            Some(text) => text.trim().parse::<u128>().map_err(|_| {
                invalid(format!(
                    "{ENV_CLUSTER}={text:?} is not a cluster id (0..2^128)"
                ))
            })?,
        };
        let insecure = match var(ENV_INSECURE).as_deref().map(str::trim) {
            None | Some("" | "0") => false,
            Some("1") => true,
            Some(other) => return Err(invalid(format!("{ENV_INSECURE}={other:?}: use 0 or 1"))),
        };
        let security = match (var(ENV_CERTS), insecure) {
            (Some(_), true) => {
                return Err(invalid(format!(
                    "both {ENV_CERTS} and {ENV_INSECURE}=1 are set: choose TLS or plaintext"
                )));
            }
            (Some(dir), false) => {
                Security::Tls(TlsCredentials::from_dir(dir.as_ref(), role.name()).map_err(invalid)?)
            }
            (None, true) => Security::Insecure,
            (None, false) => {
                return Err(invalid(format!(
                    "set {ENV_CERTS} to a certificate directory (`allocdb certs` makes one; \
                     deploy/local/cluster.sh puts it in allocdb-cluster/certs) or \
                     {ENV_INSECURE}=1 for a plaintext cluster"
                )));
            }
        };
        let mut options = ClientOptions::new(addresses, cluster_id);
        options.security = Some(security);
        Ok(options)
    }

    /// Why these options cannot work, or `None`.
    ///
    /// ```
    /// use allocdb_client::{ClientOptions, Security};
    ///
    /// let mut options = ClientOptions::new(vec!["127.0.0.1:3000".into()], 1);
    /// assert!(options.problem().is_some(), "no security chosen yet");
    /// options.security = Some(Security::Insecure);
    /// assert_eq!(options.problem(), None);
    /// ```
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
        if self.addresses.len() > usize::from(allocdb_protocol::REPLICAS_MAX) {
            return Some(format!(
                "addresses: {} given, a cluster has at most {}",
                self.addresses.len(),
                allocdb_protocol::REPLICAS_MAX
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

/// Per-call overrides, for the `_with` variant of every call ([`crate::Client::reserve_with`],
/// [`crate::Client::get_lease_with`], ...) and for [`crate::Client::write`] and
/// [`crate::Client::read`]. The default overrides nothing.
///
/// ```
/// use std::time::Duration;
/// use allocdb_client::CallOptions;
///
/// let key = 0x2a_0000_0000_0000_0007; // in a program: client.new_operation_id().await?
/// let options = CallOptions::new()
///     .with_operation_id(key)
///     .with_timeout(Duration::from_secs(2));
/// assert_eq!(options.operation_id, Some(key));
/// assert_eq!(options.timeout, Some(Duration::from_secs(2)));
/// assert_eq!(CallOptions::new(), CallOptions::default());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallOptions {
    /// The operation id to use, passed through unchanged: an application key from
    /// [`crate::Client::new_operation_id`], or the id of an earlier call whose outcome was
    /// indefinite, to learn it (the cluster answers a retry with the stored outcome while it
    /// keeps it; see [`crate::ClientError::Indefinite`]). `None`: the client numbers the write
    /// on its session.
    ///
    /// Reads take none: a read given one is refused with [`ClientError::Invalid`].
    pub operation_id: Option<OperationId>,
    /// This call's deadline, retries included; `None` uses [`ClientOptions::call_timeout`].
    pub timeout: Option<Duration>,
}

impl CallOptions {
    /// No overrides (the same as `CallOptions::default()`).
    pub fn new() -> CallOptions {
        CallOptions::default()
    }

    /// These options with operation id `operation_id` (see [`CallOptions::operation_id`]).
    #[must_use]
    pub fn with_operation_id(mut self, operation_id: OperationId) -> CallOptions {
        self.operation_id = Some(operation_id);
        self
    }

    /// These options with deadline `timeout` for the call, retries included.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> CallOptions {
        self.timeout = Some(timeout);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::{ClientOptions, ENV_ADDRESSES, ENV_CERTS, ENV_CLUSTER, ENV_INSECURE};
    use crate::error::ClientError;
    use crate::tls::{ClientRole, Security};

    fn from(vars: &[(&str, &str)]) -> Result<ClientOptions, String> {
        let lookup = |name: &str| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_string())
        };
        ClientOptions::from_vars(lookup, ClientRole::Application).map_err(|error| match error {
            ClientError::Invalid { reason } => reason,
            other => panic!("only Invalid is expected: {other:?}"),
        })
    }

    #[test]
    fn options_from_the_environment() {
        let three = "127.0.0.1:3000, 127.0.0.1:3001,127.0.0.1:3002";
        let options = from(&[(ENV_ADDRESSES, three), (ENV_INSECURE, "1")]).expect("valid");
        assert_eq!(options.addresses.len(), 3);
        assert_eq!(options.addresses[1], "127.0.0.1:3001");
        assert_eq!(options.cluster_id, 0);
        assert_eq!(options.security, Some(Security::Insecure));
        assert_eq!(options.problem(), None);
        let options = from(&[
            (ENV_ADDRESSES, "a:1"),
            (ENV_CLUSTER, "7"),
            (ENV_INSECURE, "1"),
        ]);
        assert_eq!(options.expect("valid").cluster_id, 7);

        // (variables, a word the refusal must contain)
        let refusals: [(&[(&str, &str)], &str); 6] = [
            (&[(ENV_INSECURE, "1")], ENV_ADDRESSES),
            (
                &[(ENV_ADDRESSES, "a:1,,b:2"), (ENV_INSECURE, "1")],
                "empty entry",
            ),
            (
                &[
                    (ENV_ADDRESSES, "a:1"),
                    (ENV_CLUSTER, "x"),
                    (ENV_INSECURE, "1"),
                ],
                ENV_CLUSTER,
            ),
            (&[(ENV_ADDRESSES, "a:1"), (ENV_INSECURE, "yes")], "0 or 1"),
            (&[(ENV_ADDRESSES, "a:1")], ENV_CERTS),
            (
                &[
                    (ENV_ADDRESSES, "a:1"),
                    (ENV_CERTS, "/c"),
                    (ENV_INSECURE, "1"),
                ],
                "choose",
            ),
        ];
        for (vars, word) in refusals {
            let reason = from(vars).expect_err("refused");
            assert!(reason.contains(word), "{vars:?}: {reason}");
        }
        // A certificate directory that does not exist names the file it could not read.
        let reason = from(&[(ENV_ADDRESSES, "a:1"), (ENV_CERTS, "/nonexistent-allocdb")]);
        assert!(reason.expect_err("refused").contains("nonexistent-allocdb"));
    }
}
