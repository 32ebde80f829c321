//! TLS 1.3 for every connection to a replica, and the names certificates carry.
//!
//! A cluster has its own certificate authority (`allocdb certs` makes it). Every certificate
//! it signs names what its holder may be, as DNS names in the subject alternative names, so
//! that rustls's ordinary name check does the authentication:
//!
//! - replica *i* of cluster *c*: `replica-<i>.cluster-<c>.allocdb` (and `replica-<i>.allocdb`,
//!   which a client that does not know the cluster id checks);
//! - a client of role *r* (`operator` or `application`): `<r>.cluster-<c>.allocdb`.
//!
//! A client checks that the replica it dialled at position *i* of its address list presents
//! replica *i*'s certificate (one of another replica, signed by the CA, fails the handshake
//! just the same, and [`MisplacedReplica`] says whose it is, so a misordered list is reported
//! as such); a replica checks the certificate of every connection against
//! what the connection then claims to be (see the server's `tls` module). Only TLS 1.3 is
//! offered, with the `ring` provider.
//!
//! Plaintext is never a default: [`crate::ClientOptions::security`] must say
//! [`Security::Insecure`] explicitly.

use std::path::Path;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, OtherError, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::net;

/// The CA certificate file in a certificate directory (may hold several certificates while
/// a CA is rotated: every one is trusted).
pub const CA_CERT_FILE: &str = "ca.crt";

/// The client roles a certificate can carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientRole {
    /// Lease work: reserve, reserve-any, activate, renew, release, and reads.
    Application,
    /// Everything an application may do, plus creating resources (and pools), revoke,
    /// reclaim and status.
    Operator,
}

impl ClientRole {
    /// Both roles.
    pub const ALL: [ClientRole; 2] = [ClientRole::Application, ClientRole::Operator];

    /// The role's name, as on the command line and in file names.
    pub fn name(self) -> &'static str {
        match self {
            ClientRole::Application => "application",
            ClientRole::Operator => "operator",
        }
    }

    /// The role named `name`.
    pub fn from_name(name: &str) -> Option<ClientRole> {
        ClientRole::ALL.into_iter().find(|role| role.name() == name)
    }
}

impl std::fmt::Display for ClientRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The DNS name that proves "replica `replica` of cluster `cluster_id`".
pub fn replica_name(cluster_id: u128, replica: u8) -> String {
    format!("replica-{replica}.cluster-{cluster_id}.allocdb")
}

/// The cluster and replica a [`replica_name`] names; `None` for any other name.
pub fn parse_replica_name(name: &str) -> Option<(u128, u8)> {
    let inner = name.strip_prefix("replica-")?.strip_suffix(".allocdb")?;
    let (replica, cluster_id) = inner.split_once(".cluster-")?;
    let digits = |text: &str| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    if !digits(replica) || !digits(cluster_id) {
        return None;
    }
    let parsed = (cluster_id.parse().ok()?, replica.parse().ok()?);
    // Only the canonical spelling (no leading zeros): the inverse of `replica_name` exactly.
    (replica_name(parsed.0, parsed.1) == name).then_some(parsed)
}

/// The DNS name of replica `replica` of whichever cluster the CA serves (checked by a client
/// that does not know the cluster id; the CA is per cluster).
pub fn replica_name_any_cluster(replica: u8) -> String {
    format!("replica-{replica}.allocdb")
}

/// The DNS name that proves "a client of `role` in cluster `cluster_id`".
pub fn client_name(cluster_id: u128, role: ClientRole) -> String {
    format!("{}.cluster-{cluster_id}.allocdb", role.name())
}

/// How a client reaches replicas. There is no default: plaintext must be asked for.
#[derive(Clone, PartialEq, Eq)]
pub enum Security {
    /// Plaintext TCP: no authentication, no encryption. Only for tests and isolated networks
    /// (the simulator uses it); the cluster must run with `--insecure` too.
    Insecure,
    /// TLS 1.3 with a client certificate.
    Tls(TlsCredentials),
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Security::Insecure => f.write_str("Insecure"),
            Security::Tls(_) => f.write_str("Tls(..)"),
        }
    }
}

/// A CA to trust and a certificate with its private key, all PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsCredentials {
    /// The cluster CA's certificate(s).
    pub ca_pem: Vec<u8>,
    /// This end's certificate (chain).
    pub cert_pem: Vec<u8>,
    /// This end's private key.
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for TlsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a private key.
        f.write_str("TlsCredentials { .. }")
    }
}

impl TlsCredentials {
    /// Reads `ca.crt`, `<name>.crt` and `<name>.key` from `dir` (the layout `allocdb certs`
    /// writes; `name` is a role or `replica-<i>`).
    ///
    /// # Errors
    /// A file is missing or unreadable (the message names it).
    pub fn from_dir(dir: &Path, name: &str) -> Result<TlsCredentials, String> {
        let read = |file: &str| {
            let path = dir.join(file);
            std::fs::read(&path).map_err(|error| {
                format!(
                    "cannot read {}: {error} (make certificates with `allocdb certs --cluster <id> --replica-count <n> {}`)",
                    path.display(),
                    dir.display()
                )
            })
        };
        Ok(TlsCredentials {
            ca_pem: read(CA_CERT_FILE)?,
            cert_pem: read(&format!("{name}.crt"))?,
            key_pem: read(&format!("{name}.key"))?,
        })
    }

    /// The CA certificates as a root store.
    ///
    /// # Errors
    /// The PEM holds no certificate or one rustls refuses.
    pub fn roots(&self) -> Result<RootCertStore, String> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&self.ca_pem) {
            let cert = cert.map_err(|e| format!("CA certificate: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("CA certificate: {e}"))?;
        }
        if roots.is_empty() {
            return Err("the CA file holds no certificate".to_string());
        }
        Ok(roots)
    }

    /// The certificate chain and key.
    ///
    /// # Errors
    /// The PEM does not hold a certificate and a private key.
    pub fn chain_and_key(
        &self,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
        let chain = CertificateDer::pem_slice_iter(&self.cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("certificate: {e}"))?;
        if chain.is_empty() {
            return Err("the certificate file holds no certificate".to_string());
        }
        let key = PrivateKeyDer::from_pem_slice(&self.key_pem)
            .map_err(|e| format!("private key: {e}"))?;
        Ok((chain, key))
    }

    /// A TLS 1.3 client configuration presenting these credentials.
    ///
    /// # Errors
    /// Unusable certificates or key.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, String> {
        let (chain, key) = self.chain_and_key()?;
        let verifier = ReplicaVerifier::new(self.roots()?)?;
        let config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("certificate and key: {e}"))?;
        Ok(Arc::new(config))
    }
}

/// A certificate the cluster's CA signed for another replica than the one dialled: the
/// handshake fails as it always did, but this says which replica answered, so a misordered
/// address list is reported as such rather than as an outage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MisplacedReplica {
    /// The cluster the certificate names.
    pub cluster_id: u128,
    /// The replica it names.
    pub replica: u8,
}

impl std::fmt::Display for MisplacedReplica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TLS handshake: the certificate presented is replica {}'s of cluster {}",
            self.replica, self.cluster_id
        )
    }
}

impl std::error::Error for MisplacedReplica {}

impl MisplacedReplica {
    /// The misplaced replica behind a failed [`Transport::connect`], if that is why it failed.
    pub fn of(error: &std::io::Error) -> Option<MisplacedReplica> {
        let inner = error.get_ref()?;
        if let Some(misplaced) = inner.downcast_ref::<MisplacedReplica>() {
            return Some(*misplaced);
        }
        match inner.downcast_ref::<rustls::Error>()? {
            rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(other))) => {
                other.downcast_ref::<MisplacedReplica>().copied()
            }
            _ => None,
        }
    }
}

/// True when a TLS handshake failed because the other side's first bytes were no TLS record
/// at all: it speaks plaintext (an AllocDB replica or client run with `--insecure`). Used on
/// both ends, so each can say which setting differs instead of "corrupt message".
pub fn is_plaintext_peer(error: &std::io::Error) -> bool {
    if error
        .get_ref()
        .is_some_and(|inner| inner.downcast_ref::<PlaintextReplica>().is_some())
    {
        return true;
    }
    error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|error| {
            matches!(
                error,
                rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType)
            )
        })
}

/// A [`Transport::connect`] over TLS reached something that is not speaking TLS: most likely
/// a replica run with `--insecure` ([`is_plaintext_peer`] recognises it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlaintextReplica;

impl std::fmt::Display for PlaintextReplica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "TLS handshake: the other side is not speaking TLS: a replica run with --insecure \
             (then every client and replica of the cluster must be), or not an AllocDB replica",
        )
    }
}

impl std::error::Error for PlaintextReplica {}

/// rustls's own server-certificate check, unchanged in what it accepts; when the only fault
/// is the name, the error says which replica the certificate names instead.
#[derive(Debug)]
struct ReplicaVerifier {
    webpki: Arc<WebPkiServerVerifier>,
}

impl ReplicaVerifier {
    fn new(roots: RootCertStore) -> Result<ReplicaVerifier, String> {
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| format!("CA certificate: {e}"))?;
        Ok(ReplicaVerifier { webpki })
    }
}

impl ServerCertVerifier for ReplicaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let result = self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        // The webpki verifier checks the chain (to our CA, unexpired) before the name, so a
        // name error means the certificate is genuine but names someone else. Either way the
        // result stays an error: only its description changes.
        let Err(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        )) = &result
        else {
            return result;
        };
        let Ok(certificate) = webpki::EndEntityCert::try_from(end_entity) else {
            return result;
        };
        let named = certificate.valid_dns_names().find_map(parse_replica_name);
        match named {
            Some((cluster_id, replica)) => Err(rustls::Error::InvalidCertificate(
                CertificateError::Other(OtherError(Arc::new(MisplacedReplica {
                    cluster_id,
                    replica,
                }))),
            )),
            None => result,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// The cryptography provider every TLS configuration uses.
// rustls deprecates `ring`'s provider because it lacks post-quantum key exchange; the
// alternative (aws-lc-rs) needs cmake and nasm to build, which this project's build hosts do
// not have. TLS 1.3 with X25519 and the ring provider is the deliberate choice until then.
#[allow(deprecated)]
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A byte stream to a replica: plaintext or TLS.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// An open connection, plaintext or TLS (one type, so the code above it is written once).
pub type Stream = Box<dyn Io>;

/// How connections are opened: the seam between plaintext and TLS.
#[derive(Clone)]
pub enum Transport {
    /// Plaintext TCP.
    Plain,
    /// TLS 1.3 with this configuration.
    Tls(tokio_rustls::TlsConnector),
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::Plain => "Plain",
            Transport::Tls(_) => "Tls",
        })
    }
}

impl Transport {
    /// The transport for `security`.
    ///
    /// # Errors
    /// Unusable credentials.
    pub fn new(security: &Security) -> Result<Transport, String> {
        match security {
            Security::Insecure => Ok(Transport::Plain),
            Security::Tls(credentials) => Ok(Transport::Tls(tokio_rustls::TlsConnector::from(
                credentials.client_config()?,
            ))),
        }
    }

    /// Whether connections are encrypted.
    pub fn is_tls(&self) -> bool {
        matches!(self, Transport::Tls(_))
    }

    /// Connects to `address` and, over TLS, completes the handshake checking that the server
    /// holds a certificate for `server_name` (see [`replica_name`]).
    ///
    /// # Errors
    /// The connection or the handshake failed (a certificate the CA did not sign, or one for
    /// another name; [`MisplacedReplica::of`] tells when it names another replica, and
    /// [`is_plaintext_peer`] when the other side is not speaking TLS at all).
    pub async fn connect(&self, address: &str, server_name: &str) -> std::io::Result<Stream> {
        let stream = net::connect(address).await?;
        match self {
            Transport::Plain => Ok(Box::new(stream)),
            Transport::Tls(connector) => {
                let name = ServerName::try_from(server_name.to_string()).map_err(|e| {
                    std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string())
                })?;
                let stream = connector.connect(name, stream).await.map_err(|error| {
                    // Kept as a value so the session can report a misordered address list.
                    match MisplacedReplica::of(&error) {
                        Some(misplaced) => std::io::Error::new(error.kind(), misplaced),
                        None if is_plaintext_peer(&error) => {
                            std::io::Error::new(error.kind(), PlaintextReplica)
                        }
                        None => {
                            std::io::Error::new(error.kind(), format!("TLS handshake: {error}"))
                        }
                    }
                })?;
                Ok(Box::new(stream))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{
        ClientRole, client_name, parse_replica_name, replica_name, replica_name_any_cluster,
    };
    use rustls::pki_types::ServerName;

    #[test]
    fn names_are_valid_dns_names_even_for_the_largest_cluster_id() {
        for name in [
            replica_name(u128::MAX, 4),
            replica_name_any_cluster(0),
            client_name(u128::MAX, ClientRole::Operator),
            client_name(1, ClientRole::Application),
        ] {
            assert!(ServerName::try_from(name.clone()).is_ok(), "{name}");
        }
        assert_eq!(replica_name(7, 2), "replica-2.cluster-7.allocdb");
        assert_eq!(
            ClientRole::from_name("operator"),
            Some(ClientRole::Operator)
        );
        assert_eq!(ClientRole::from_name("root"), None);
    }

    #[test]
    fn a_replica_name_reads_back_and_nothing_else_does() {
        for (cluster_id, replica) in [(7, 2), (1, 0), (u128::MAX, 4)] {
            let name = replica_name(cluster_id, replica);
            assert_eq!(
                parse_replica_name(&name),
                Some((cluster_id, replica)),
                "{name}"
            );
        }
        for name in [
            "replica-2.allocdb",
            "operator.cluster-7.allocdb",
            "replica-02.cluster-7.allocdb",
            "replica-+2.cluster-7.allocdb",
            "replica-2.cluster-.allocdb",
            "replica-256.cluster-7.allocdb",
            "replica-2.cluster-7.allocdb.evil",
            "",
        ] {
            assert_eq!(parse_replica_name(name), None, "{name}");
        }
    }
}
