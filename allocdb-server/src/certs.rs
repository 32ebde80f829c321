//! `allocdb certs`: a cluster's certificate authority and the certificates it signs.
//!
//! Layout of the directory (every `.key` file is written with mode 0600, the directory 0700):
//!
//! ```text
//! cluster-id                       the cluster these certificates are for
//! ca.crt  ca.key                   the cluster CA (keep ca.key offline in production)
//! replica-<i>.crt  replica-<i>.key one per replica, names replica-<i>.cluster-<id>.allocdb
//! operator.crt  operator.key       client role operator
//! application.crt  application.key client role application
//! ```
//!
//! A replica needs `ca.crt` and its own pair; a client needs `ca.crt` and its role's pair.
//! Run again on the same directory to re-issue every leaf certificate under the existing CA
//! (rotation); a missing CA is created. Keys are ECDSA P-256.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use allocdb_client::tls::{self, CA_CERT_FILE, ClientRole};
use clap::Args;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};

use crate::commands::EXIT_USAGE;

/// The CA's private key file.
pub const CA_KEY_FILE: &str = "ca.key";
/// The file naming the cluster the directory's certificates are for.
pub const CLUSTER_ID_FILE: &str = "cluster-id";
/// Days a CA certificate is valid by default.
pub const CA_DAYS_DEFAULT: u32 = 3650;
/// Days a replica or client certificate is valid by default.
pub const LEAF_DAYS_DEFAULT: u32 = 365;

/// `allocdb certs`: creates (or re-issues) a cluster's certificates.
#[derive(Args, Debug)]
pub struct CertsArgs {
    /// The cluster id (the one given to `allocdb format`).
    #[arg(long)]
    pub cluster: u128,
    /// The number of replicas: a certificate is made for each index.
    #[arg(long)]
    pub replica_count: u8,
    /// Validity of replica and client certificates, in days.
    #[arg(long, default_value_t = LEAF_DAYS_DEFAULT)]
    pub days: u32,
    /// Validity of a newly created CA certificate, in days.
    #[arg(long, default_value_t = CA_DAYS_DEFAULT)]
    pub ca_days: u32,
    /// The directory to write (created if missing).
    pub dir: PathBuf,
}

/// Runs `allocdb certs`.
pub fn run(args: &CertsArgs) -> ExitCode {
    if !matches!(args.replica_count, 1 | 3 | 5) {
        eprintln!("error: --replica-count must be 1, 3 or 5");
        return ExitCode::from(EXIT_USAGE);
    }
    if args.cluster == 0 || args.days == 0 || args.ca_days == 0 {
        eprintln!("error: --cluster, --days and --ca-days must be positive");
        return ExitCode::from(EXIT_USAGE);
    }
    match generate(
        &args.dir,
        args.cluster,
        args.replica_count,
        args.days,
        args.ca_days,
    ) {
        Ok(reused_ca) => {
            crate::outln!(
                "{} the CA and issued certificates for {} replicas and the operator and \
                 application roles of cluster {} in {}",
                if reused_ca { "reused" } else { "created" },
                args.replica_count,
                args.cluster,
                args.dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// Writes the CA (unless `dir` has one for this cluster) and every replica and role
/// certificate; returns whether the CA was reused.
///
/// # Errors
/// A file cannot be written, or `dir` holds another cluster's CA.
pub fn generate(
    dir: &Path,
    cluster_id: u128,
    replica_count: u8,
    leaf_days: u32,
    ca_days: u32,
) -> Result<bool, String> {
    create_private_dir(dir)?;
    let (ca, ca_key, reused) = ca(dir, cluster_id, ca_days)?;
    for index in 0..replica_count {
        let names = vec![
            SanType::DnsName(ia5(&tls::replica_name(cluster_id, index))?),
            SanType::DnsName(ia5(&tls::replica_name_any_cluster(index))?),
            SanType::URI(ia5(&format!(
                "allocdb://cluster/{cluster_id}/replica/{index}"
            ))?),
        ];
        let common_name = format!("allocdb replica {index} of cluster {cluster_id}");
        let usages = [
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let params = leaf_params(&common_name, names, &usages, leaf_days);
        write_leaf(dir, &format!("replica-{index}"), params, &ca, &ca_key)?;
    }
    for role in ClientRole::ALL {
        let names = vec![
            SanType::DnsName(ia5(&tls::client_name(cluster_id, role))?),
            SanType::URI(ia5(&format!(
                "allocdb://cluster/{cluster_id}/client/{role}"
            ))?),
        ];
        let common_name = format!("allocdb {role} client of cluster {cluster_id}");
        let params = leaf_params(
            &common_name,
            names,
            &[ExtendedKeyUsagePurpose::ClientAuth],
            leaf_days,
        );
        write_leaf(dir, role.name(), params, &ca, &ca_key)?;
    }
    Ok(reused)
}

fn ia5(text: &str) -> Result<rcgen::Ia5String, String> {
    rcgen::Ia5String::try_from(text).map_err(|e| format!("{text}: {e}"))
}

/// The CA's parameters: fixed by the cluster id, so an existing CA key re-creates an issuer
/// whose name and key identifier match the CA certificate already installed.
fn ca_params(cluster_id: u128, days: u32) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "AllocDB");
    name.push(
        DnType::CommonName,
        format!("AllocDB cluster {cluster_id} CA"),
    );
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    set_validity(&mut params, days);
    params
}

fn set_validity(params: &mut CertificateParams, days: u32) {
    let now = time::OffsetDateTime::now_utc();
    // An hour of slack for clocks slightly behind the machine that issued the certificate.
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(i64::from(days));
}

/// Loads the CA in `dir`, or creates it.
fn ca(dir: &Path, cluster_id: u128, days: u32) -> Result<(Certificate, KeyPair, bool), String> {
    let key_path = dir.join(CA_KEY_FILE);
    let id_path = dir.join(CLUSTER_ID_FILE);
    if key_path.exists() {
        let recorded = std::fs::read_to_string(&id_path)
            .map_err(|e| format!("cannot read {}: {e}", id_path.display()))?;
        if recorded.trim() != cluster_id.to_string() {
            return Err(format!(
                "{} holds the CA of cluster {}, not of cluster {cluster_id}",
                dir.display(),
                recorded.trim()
            ));
        }
        let pem = std::fs::read_to_string(&key_path)
            .map_err(|e| format!("cannot read {}: {e}", key_path.display()))?;
        let key = KeyPair::from_pem(&pem).map_err(|e| format!("{}: {e}", key_path.display()))?;
        // Only the issuer's name and key matter for signing: ca.crt stays as installed.
        let ca = ca_params(cluster_id, days)
            .self_signed(&key)
            .map_err(|e| e.to_string())?;
        return Ok((ca, key, true));
    }
    let key = KeyPair::generate().map_err(|e| e.to_string())?;
    let ca = ca_params(cluster_id, days)
        .self_signed(&key)
        .map_err(|e| e.to_string())?;
    write_file(&dir.join(CA_CERT_FILE), ca.pem().as_bytes(), false)?;
    write_file(&key_path, key.serialize_pem().as_bytes(), true)?;
    write_file(&id_path, format!("{cluster_id}\n").as_bytes(), false)?;
    Ok((ca, key, false))
}

fn leaf_params(
    common_name: &str,
    names: Vec<SanType>,
    usages: &[ExtendedKeyUsagePurpose],
    days: u32,
) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "AllocDB");
    name.push(DnType::CommonName, common_name);
    params.distinguished_name = name;
    params.subject_alt_names = names;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = usages.to_vec();
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, days);
    params
}

fn write_leaf(
    dir: &Path,
    name: &str,
    params: CertificateParams,
    ca: &Certificate,
    ca_key: &KeyPair,
) -> Result<(), String> {
    let key = KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = params
        .signed_by(&key, ca, ca_key)
        .map_err(|e| format!("{name}: {e}"))?;
    write_file(
        &dir.join(format!("{name}.key")),
        key.serialize_pem().as_bytes(),
        true,
    )?;
    write_file(
        &dir.join(format!("{name}.crt")),
        cert.pem().as_bytes(),
        false,
    )
}

fn create_private_dir(dir: &Path) -> Result<(), String> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

/// Writes `bytes` to `path` (replacing it); a private file gets mode 0600 from creation on,
/// so the key is never readable by others, not even briefly.
fn write_file(path: &Path, bytes: &[u8], private: bool) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    // Replaced, not truncated in place: an old file with wider permissions is not reused.
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(fail(error)),
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(path).map_err(fail)?;
    file.write_all(bytes).map_err(fail)?;
    file.sync_all().map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::generate;
    use crate::tls::{Principal, ReplicaTls, ReplicaTlsError, principal_of};
    use allocdb_client::{ClientRole, TlsCredentials};

    #[test]
    fn generated_certificates_name_their_holders_and_keys_are_private() {
        let dir = std::env::temp_dir().join(format!("allocdb-certs-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(!generate(&dir, 42, 3, 1, 1).unwrap());
        for index in 0..3 {
            assert!(ReplicaTls::load(&dir, 42, index, 3).is_ok());
            let wrong = ReplicaTls::load(&dir, 43, index, 3).unwrap_err();
            assert!(
                matches!(wrong, ReplicaTlsError::NotThisReplica { replica_index, cluster_id: 43, .. } if replica_index == index),
                "{wrong}"
            );
            assert!(wrong.to_string().contains("not replica"), "{wrong}");
        }
        for role in ClientRole::ALL {
            let credentials = TlsCredentials::from_dir(&dir, role.name()).unwrap();
            let (chain, _) = credentials.chain_and_key().unwrap();
            assert_eq!(
                principal_of(&chain[0], 42, 3),
                Some(Principal::Client(role))
            );
            assert_eq!(principal_of(&chain[0], 7, 3), None);
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            for file in ["ca.key", "replica-0.key", "operator.key", "application.key"] {
                let mode = std::fs::metadata(dir.join(file))
                    .unwrap()
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o777, 0o600, "{file}");
            }
        }
        // Re-issuing keeps the CA: the old CA certificate still verifies the new leaves.
        let ca_before = std::fs::read(dir.join("ca.crt")).unwrap();
        assert!(generate(&dir, 42, 3, 1, 1).unwrap());
        assert_eq!(std::fs::read(dir.join("ca.crt")).unwrap(), ca_before);
        assert!(ReplicaTls::load(&dir, 42, 1, 3).is_ok());
        assert!(
            generate(&dir, 9, 3, 1, 1)
                .unwrap_err()
                .contains("cluster 42")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
