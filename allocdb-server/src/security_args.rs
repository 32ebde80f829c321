//! `--certs <dir>` and `--insecure`: how every command that talks to a replica (or is one)
//! chooses between TLS and plaintext. Neither flag is an error that says how to make
//! certificates: plaintext is never a default.

use std::path::PathBuf;

use allocdb_client::{ClientRole, Security, TlsCredentials};
use clap::Args;

use crate::tls::{ReplicaTls, ServerSecurity};

/// The flags every networked command takes.
#[derive(Args, Debug, Clone, Default)]
pub struct SecurityArgs {
    /// The directory `allocdb certs` wrote (ca.crt and this process's certificate and key):
    /// every connection is TLS 1.3 with mutual authentication.
    #[arg(long, conflicts_with = "insecure")]
    pub certs: Option<PathBuf>,
    /// Run plaintext: no encryption, no authentication, every connection may do anything.
    /// Only for tests and networks nobody else can reach.
    #[arg(long)]
    pub insecure: bool,
}

/// What the flags chose.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `--insecure`.
    Insecure,
    /// `--certs <dir>`.
    Certs(PathBuf),
}

impl SecurityArgs {
    /// The mode, or the refusal to print when neither flag was given.
    ///
    /// # Errors
    /// Neither `--certs` nor `--insecure`.
    pub fn mode(&self) -> Result<Mode, String> {
        match (&self.certs, self.insecure) {
            (Some(dir), false) => Ok(Mode::Certs(dir.clone())),
            (None, true) => Ok(Mode::Insecure),
            (Some(_), true) => Err("--certs and --insecure exclude each other".to_string()),
            (None, false) => Err(missing_message()),
        }
    }

    /// The client credentials for `role`.
    ///
    /// # Errors
    /// No mode chosen, or the role's files cannot be read.
    pub fn client_security(&self, role: ClientRole) -> Result<Security, String> {
        match self.mode()? {
            Mode::Insecure => Ok(Security::Insecure),
            Mode::Certs(dir) => Ok(Security::Tls(TlsCredentials::from_dir(&dir, role.name())?)),
        }
    }

    /// A replica's security: its own certificate from `--certs`.
    ///
    /// # Errors
    /// No mode chosen, or the replica's files are missing or not its own.
    pub fn server_security(
        &self,
        cluster_id: u128,
        replica_index: u8,
        replica_count: u8,
    ) -> Result<ServerSecurity, String> {
        match self.mode()? {
            Mode::Insecure => Ok(ServerSecurity::Insecure),
            Mode::Certs(dir) => Ok(ServerSecurity::Tls(std::sync::Arc::new(
                ReplicaTls::load(&dir, cluster_id, replica_index, replica_count)
                    .map_err(|error| error.to_string())?,
            ))),
        }
    }
}

/// The refusal when a command got neither `--certs` nor `--insecure`.
pub fn missing_message() -> String {
    "no --certs and no --insecure: AllocDB connections use TLS with certificates by default. \
     Make a cluster's certificates with `allocdb certs --cluster <id> --replica-count <n> <dir>` \
     and pass `--certs <dir>`, or pass `--insecure` to run plaintext (no encryption, no \
     authentication)"
        .to_string()
}

/// Parses `--role`.
///
/// # Errors
/// Not `operator` or `application`.
pub fn parse_role(text: &str) -> Result<ClientRole, String> {
    ClientRole::from_name(text)
        .ok_or_else(|| format!("unknown role {text:?}: expected operator or application"))
}

#[cfg(test)]
mod tests {
    use super::{Mode, SecurityArgs};

    #[test]
    fn neither_flag_is_refused_with_the_way_to_make_certificates() {
        let neither = SecurityArgs::default().mode().unwrap_err();
        assert!(neither.contains("allocdb certs --cluster"), "{neither}");
        let insecure = SecurityArgs {
            certs: None,
            insecure: true,
        };
        assert_eq!(insecure.mode(), Ok(Mode::Insecure));
        let certs = SecurityArgs {
            certs: Some("c".into()),
            insecure: false,
        };
        assert_eq!(certs.mode(), Ok(Mode::Certs("c".into())));
    }
}
