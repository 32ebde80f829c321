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
    ) -> Result<ReplicaTls, String> {
        let file = format!("replica-{replica_index}");
        let credentials = TlsCredentials::from_dir(dir, &file)?;
        let (chain, key) = credentials.chain_and_key()?;
        let own = principal_of(&chain[0], cluster_id, replica_count);
        if own != Some(Principal::Replica(replica_index)) {
            return Err(format!(
                "{}/{file}.crt is not replica {replica_index}'s certificate of cluster {cluster_id} \
                 (it must name {}); make this cluster's certificates with \
                 `allocdb certs --cluster {cluster_id} --replica-count {replica_count} {}`",
                dir.display(),
                tls::replica_name(cluster_id, replica_index),
                dir.display()
            ));
        }
        let roots = Arc::new(credentials.roots()?);
        let verifier = WebPkiClientVerifier::builder_with_provider(roots, tls::provider())
            .build()
            .map_err(|e| format!("client certificate verifier: {e}"))?;
        let config = ServerConfig::builder_with_provider(tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|e| format!("{}/{file}: {e}", dir.display()))?;
        let connector = Transport::Tls(tokio_rustls::TlsConnector::from(
            credentials.client_config()?,
        ));
        Ok(ReplicaTls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            connector,
            cluster_id,
            replica_count,
        })
    }

    async fn accept(&self, stream: net::TcpStream) -> Result<(Stream, Principal), String> {
        let stream = self
            .acceptor
            .accept(stream)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
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
