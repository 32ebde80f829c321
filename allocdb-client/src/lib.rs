//! `allocdb-client` is the async Rust client of an AllocDB cluster.
//!
//! A [`Client`] takes the replicas' addresses, finds the primary by itself (following
//! `not_primary` answers and moving on from silent replicas), coalesces concurrent calls into
//! shared frames, bounds how many calls are in flight, and retries every write with the same
//! operation id until the cluster gives a definite answer or the caller's deadline passes. It
//! never guesses an outcome: a write that may or may not have committed is reported as
//! [`ClientError::Indefinite`] with the operation id that learns the truth when retried.
//!
//! Exactly-once: the client registers a session with the cluster and numbers every write the
//! caller gives no operation id; the replicas keep each session's latest answers, so a resend
//! after a timeout or failover is answered, never executed twice. For retries that outlive a
//! process, make an application key with [`Client::new_operation_id`] and pass it in
//! [`CallOptions::operation_id`].
//!
//! It depends on the shared wire types of `allocdb-core` and `allocdb-vsr` only, never on the
//! server. Its sockets come from [`net`], which switches to turmoil's simulated network under
//! the `simulation` feature.
//!
//! ```no_run
//! use allocdb_client::{Client, ClientError, ClientOptions};
//! use allocdb_core::ResultCode;
//!
//! # async fn example() -> Result<(), ClientError> {
//! use allocdb_client::{Security, TlsCredentials};
//! let mut options = ClientOptions::new(vec!["127.0.0.1:3000".into()], 0);
//! // ca.crt, application.crt and application.key as `allocdb certs` writes them.
//! let credentials = TlsCredentials::from_dir("certs".as_ref(), "application")
//!     .map_err(|reason| ClientError::Invalid { reason })?;
//! options.security = Some(Security::Tls(credentials));
//! let client = Client::connect(options).await?;
//! match client.reserve(&[1, 2], 99, client.slots_for(std::time::Duration::from_secs(60))).await {
//!     Ok(grant) => println!("lease {} epoch {}", grant.lease.0, grant.epoch),
//!     Err(ClientError::Rejected { code: ResultCode::ResourceBusy, .. }) => println!("taken"),
//!     Err(error @ ClientError::Indefinite { .. }) => println!("unknown, retry: {error}"),
//!     Err(error) => return Err(error),
//! }
//! # Ok(())
//! # }
//! ```

mod client;
mod driver;
mod error;
mod ids;
pub mod net;
mod numbering;
mod options;
mod results;
mod session;
pub mod tls;

pub use client::{Client, ClientStats, slots_for};
pub use error::ClientError;
pub use options::{CallOptions, ClientOptions};
pub use results::{Committed, Read};
pub use tls::{ClientRole, Security, TlsCredentials};
