//! A replica's TLS: the acceptor every connection goes through, the connector its peer links
//! dial with, and who a connection's certificate says it is.
//!
//! Every connection to a replica is TLS 1.3 with a client certificate the cluster's CA signed
//! (mutual TLS), unless the process runs `--insecure`. The certificate decides what the
//! connection may do ([`Principal`]): only replica *i*'s certificate may open a peer link as
//! replica *i*; only `operator` and `application` certificates may open client sessions, and
//! only `operator` may ask for status (see [`crate::authz`] for the commands). The names a
//! certificate must carry are in [`allocdb_client::tls`].
//!
//! Under the `simulation` feature the simulator runs plaintext ([`ServerSecurity::Insecure`]):
//! turmoil's streams would carry TLS, but certificates add nothing the simulated faults test.

use std::path::Path;
use std::sync::Arc;

use allocdb_client::tls::{self, ClientRole, Stream, TlsCredentials, Transport};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};

use crate::net;

/// What a connection proved to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Principal {
    /// A plaintext connection to a replica running `--insecure`: it may do anything.
    Insecure,
    /// Replica `i` of this cluster.
    Replica(u8),
    /// A client with this role.
    Client(ClientRole),
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Principal::Insecure => f.write_str("a plaintext connection"),
            Principal::Replica(index) => write!(f, "replica {index}'s certificate"),
            Principal::Client(role) => write!(f, "a client certificate of role {role}"),
        }
    }
}

/// How a replica process talks: plaintext (asked for explicitly) or TLS.
#[derive(Clone, Debug)]
pub enum ServerSecurity {
    /// Plaintext, no authentication (`--insecure`, the simulator).
    Insecure,
    /// Mutual TLS with the cluster's certificates.
    Tls(Arc<ReplicaTls>),
}

impl ServerSecurity {
    /// How a log line names the mode.
    pub fn describe(&self) -> &'static str {
        match self {
            ServerSecurity::Insecure => "plaintext (--insecure)",
            ServerSecurity::Tls(_) => "TLS 1.3 with client certificates",
        }
    }

    /// The transport peer links dial with.
    pub fn transport(&self) -> Transport {
        match self {
            ServerSecurity::Insecure => Transport::Plain,
            ServerSecurity::Tls(tls) => tls.connector.clone(),
        }
    }

    /// Completes the server side of an accepted connection: over TLS, the handshake, and who
    /// the client certificate names.
    ///
    /// # Errors
    /// The handshake failed, or the certificate (signed by the CA) names nothing of this
    /// cluster.
    pub async fn accept(&self, stream: net::TcpStream) -> Result<(Stream, Principal), String> {
        match self {
            ServerSecurity::Insecure => Ok((Box::new(stream), Principal::Insecure)),
            ServerSecurity::Tls(tls) => tls.accept(stream).await,
        }
    }
}

/// Why a replica's certificates could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaTlsError {
    /// A file is missing or unreadable, or holds no usable certificate or key (the client
    /// crate's loader, shared with every tool, says which).
    #[error("{0}")]
    Files(String),
    /// The certificate is valid but another replica's or another cluster's.
    #[error(
        "{}/{file}.crt is not replica {replica_index}'s certificate of cluster {cluster_id} \
         (it must name {expected_name}); make this cluster's certificates with \
         `allocdb certs --cluster {cluster_id} --replica-count {replica_count} {}`",
        .dir.display(),
        .dir.display()
    )]
    NotThisReplica {
        /// The certificate directory.
        dir: std::path::PathBuf,
        /// The file's name without its extension (`replica-<index>`).
        file: String,
        /// The replica being started.
        replica_index: u8,
        /// Its cluster.
        cluster_id: u128,
        /// Replicas in the cluster.
        replica_count: u8,
        /// The name the certificate must carry.
        expected_name: String,
    },
    /// rustls refused to build the client-certificate verifier (e.g. an empty CA file).
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// rustls refused the TLS 1.3-only configuration.
    #[error("{0}")]
    Protocol(rustls::Error),
    /// rustls refused the replica's certificate chain and key (e.g. a key of another
    /// certificate).
    #[error("{}/{file}: {source}", .dir.display())]
    CertificateAndKey {
        /// The certificate directory.
        dir: std::path::PathBuf,
        /// The file's name without its extension (`replica-<index>`).
        file: String,
        /// What rustls refused.
        source: rustls::Error,
    },
}

/// A replica's certificates, ready to accept and dial.
pub struct ReplicaTls {
    acceptor: tokio_rustls::TlsAcceptor,
    connector: Transport,
    cluster_id: u128,
    replica_count: u8,
}

impl std::fmt::Debug for ReplicaTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReplicaTls {{ cluster_id: {} }}", self.cluster_id)
    }
}

impl ReplicaTls {
    /// Loads `ca.crt`, `replica-<index>.crt` and `replica-<index>.key` from `dir` and checks
    /// that the certificate is this replica's of this cluster.
    ///
    /// # Errors
    /// Missing or unusable files, or a certificate for another replica or cluster.
    pub fn load(
        dir: &Path,
        cluster_id: u128,
        replica_index: u8,
        replica_count: u8,
    ) -> Result<ReplicaTls, ReplicaTlsError> {
        let file = format!("replica-{replica_index}");
        let credentials = TlsCredentials::from_dir(dir, &file).map_err(ReplicaTlsError::Files)?;
        let (chain, key) = credentials
            .chain_and_key()
            .map_err(ReplicaTlsError::Files)?;
        let own = principal_of(&chain[0], cluster_id, replica_count);
        if own != Some(Principal::Replica(replica_index)) {
            return Err(ReplicaTlsError::NotThisReplica {
                dir: dir.to_path_buf(),
                file,
                replica_index,
                cluster_id,
                replica_count,
                expected_name: tls::replica_name(cluster_id, replica_index),
            });
        }
        let roots = Arc::new(credentials.roots().map_err(ReplicaTlsError::Files)?);
        let verifier =
            WebPkiClientVerifier::builder_with_provider(roots, tls::provider()).build()?;
        let config = ServerConfig::builder_with_provider(tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(ReplicaTlsError::Protocol)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|source| ReplicaTlsError::CertificateAndKey {
                dir: dir.to_path_buf(),
                file: file.clone(),
                source,
            })?;
        let client_config = credentials
            .client_config()
            .map_err(ReplicaTlsError::Files)?;
        let connector = Transport::Tls(tokio_rustls::TlsConnector::from(client_config));
        Ok(ReplicaTls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            connector,
            cluster_id,
            replica_count,
        })
    }

    async fn accept(&self, stream: net::TcpStream) -> Result<(Stream, Principal), String> {
        let stream = self.acceptor.accept(stream).await.map_err(|e| {
            if allocdb_client::tls::is_plaintext_peer(&e) {
                "TLS handshake: the other side spoke plaintext, not TLS (every client and \
                 replica of this cluster needs its certificates)"
                    .to_string()
            } else {
                format!("TLS handshake: {e}")
            }
        })?;
        let (_, connection) = stream.get_ref();
        // The verifier required a certificate the CA signed; what it names is checked here.
        let leaf = connection
            .peer_certificates()
            .and_then(<[CertificateDer<'_>]>::first)
            .ok_or("TLS handshake: no client certificate")?;
        let principal = principal_of(leaf, self.cluster_id, self.replica_count).ok_or(
            "the client certificate names no replica or client role of this cluster".to_string(),
        )?;
        Ok((Box::new(stream), principal))
    }
}

/// What `cert` (already verified against the CA, or our own) names in cluster `cluster_id`.
pub fn principal_of(
    cert: &CertificateDer<'_>,
    cluster_id: u128,
    replica_count: u8,
) -> Option<Principal> {
    let parsed = ParsedCertificate::try_from(cert).ok()?;
    let names = |name: String| {
        ServerName::try_from(name)
            .is_ok_and(|name| rustls::client::verify_server_name(&parsed, &name).is_ok())
    };
    // A certificate naming two things is refused: the CA never issues one.
    let mut found = Vec::new();
    for index in 0..replica_count {
        if names(tls::replica_name(cluster_id, index)) {
            found.push(Principal::Replica(index));
        }
    }
    for role in ClientRole::ALL {
        if names(tls::client_name(cluster_id, role)) {
            found.push(Principal::Client(role));
        }
    }
    match found.as_slice() {
        [one] => Some(*one),
        _ => None,
    }
}
