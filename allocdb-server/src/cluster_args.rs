//! The flags of every command that talks to a cluster as a client (`client`, `status`):
//! `--addresses`, `--cluster`, `--certs` / `--insecure`, each falling back to the environment
//! variable the client library reads ([`allocdb_client::ENV_ADDRESSES`], `ENV_CLUSTER`,
//! `ENV_CERTS`, `ENV_INSECURE`). A flag overrides its variable; one parser
//! ([`ClientOptions::from_lookup`]) reads both, so the CLI and a program using the library
//! accept exactly the same values.

use allocdb_client::{
    ClientOptions, ClientRole, ENV_ADDRESSES, ENV_CERTS, ENV_CLUSTER, ENV_INSECURE,
};
use clap::Args;

use crate::security_args::SecurityArgs;

/// Where to find the cluster and how to talk to it.
#[derive(Args, Debug, Clone, Default)]
pub struct ClusterArgs {
    /// The replicas' addresses (host:port), comma-separated, in replica-index order (index 0
    /// first); omitted, `ALLOCDB_ADDRESSES`.
    #[arg(long, value_delimiter = ',')]
    pub addresses: Vec<String>,
    /// The cluster id; omitted, `ALLOCDB_CLUSTER`, else 0 (accept any cluster).
    #[arg(long)]
    pub cluster: Option<u128>,
    /// TLS with a client certificate (`--certs`, else `ALLOCDB_CERTS`), or plaintext
    /// (`--insecure`, else `ALLOCDB_INSECURE=1`).
    #[command(flatten)]
    pub security: SecurityArgs,
}

/// An environment variable, with an empty value read as unset.
fn env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .filter(|value| !value.trim().is_empty())
}

impl ClusterArgs {
    /// The value the flags give for variable `name`, else the environment's.
    fn lookup(&self, name: &str, environment: &impl Fn(&str) -> Option<String>) -> Option<String> {
        let flag_chose_security = self.security.certs.is_some() || self.security.insecure;
        match name {
            ENV_ADDRESSES if !self.addresses.is_empty() => Some(self.addresses.join(",")),
            ENV_CLUSTER if self.cluster.is_some() => self.cluster.map(|id| id.to_string()),
            ENV_CERTS if flag_chose_security => self
                .security
                .certs
                .as_ref()
                .map(|dir| dir.to_string_lossy().into_owned()),
            ENV_INSECURE if flag_chose_security => self.security.insecure.then(|| "1".to_string()),
            _ => environment(name),
        }
    }

    /// The client options these flags and the environment give; `role` picks the certificate
    /// (required with TLS when `None`).
    ///
    /// # Errors
    /// A message naming the flag and the variable that is missing or malformed.
    pub fn client_options(&self, role: Option<ClientRole>) -> Result<ClientOptions, String> {
        self.options_over(role, &env)
    }

    fn options_over(
        &self,
        role: Option<ClientRole>,
        environment: &impl Fn(&str) -> Option<String>,
    ) -> Result<ClientOptions, String> {
        let var = |name: &str| self.lookup(name, environment);
        if var(ENV_ADDRESSES).is_none() {
            return Err(format!(
                "no --addresses and no {ENV_ADDRESSES}: give the replicas' addresses, \
                 comma-separated, in replica-index order"
            ));
        }
        let insecure = var(ENV_INSECURE).is_some_and(|value| value.trim() == "1");
        // A malformed ALLOCDB_INSECURE is left to the library's parser, which names it.
        if var(ENV_CERTS).is_none() && var(ENV_INSECURE).is_none() {
            return Err(format!(
                "{} (or set {ENV_CERTS} to the directory, or {ENV_INSECURE}=1)",
                crate::security_args::missing_message()
            ));
        }
        let role = match role {
            Some(role) => role,
            None if var(ENV_CERTS).is_some() && !insecure => {
                return Err(
                    "TLS (--certs or ALLOCDB_CERTS) needs --role operator or --role application"
                        .to_string(),
                );
            }
            // Plaintext: no certificate is read, so the role does not matter.
            None => ClientRole::Operator,
        };
        ClientOptions::from_lookup(var, role).map_err(|error| match error {
            allocdb_client::ClientError::Invalid { reason } => reason,
            other => other.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::ClusterArgs;
    use crate::security_args::SecurityArgs;
    use allocdb_client::{ClientRole, Security};

    fn environment(
        vars: &'static [(&'static str, &'static str)],
    ) -> impl Fn(&str) -> Option<String> {
        move |name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_string())
        }
    }

    #[test]
    fn flags_override_the_environment() {
        let vars = environment(&[
            ("ALLOCDB_ADDRESSES", "e:1,e:2,e:3"),
            ("ALLOCDB_CLUSTER", "7"),
            ("ALLOCDB_CERTS", "/nonexistent-allocdb-certs"),
        ]);
        let none = ClusterArgs::default();
        // The environment alone: TLS from a directory that does not exist, named in the error.
        let error = none
            .options_over(Some(ClientRole::Operator), &vars)
            .unwrap_err();
        assert!(error.contains("nonexistent-allocdb-certs"), "{error}");
        assert!(
            none.options_over(None, &vars)
                .unwrap_err()
                .contains("--role"),
            "TLS needs a role"
        );
        let flags = ClusterArgs {
            addresses: vec!["f:1".to_string()],
            cluster: Some(8),
            security: SecurityArgs {
                certs: None,
                insecure: true,
            },
        };
        let options = flags.options_over(None, &vars).expect("flags win");
        assert_eq!(options.addresses, ["f:1"]);
        assert_eq!(options.cluster_id, 8);
        assert_eq!(options.security, Some(Security::Insecure));
        // Only --insecure given: addresses and cluster still come from the environment.
        let insecure_only = ClusterArgs {
            security: flags.security.clone(),
            ..ClusterArgs::default()
        };
        let options = insecure_only.options_over(None, &vars).expect("valid");
        assert_eq!(options.addresses, ["e:1", "e:2", "e:3"]);
        assert_eq!(options.cluster_id, 7);
        // Nothing anywhere: the flag and the variable are both named.
        let nothing = environment(&[]);
        let error = none.options_over(None, &nothing).unwrap_err();
        assert!(
            error.contains("--addresses") && error.contains("ALLOCDB_ADDRESSES"),
            "{error}"
        );
        let error = ClusterArgs {
            addresses: vec!["a:1".to_string()],
            ..ClusterArgs::default()
        }
        .options_over(None, &nothing)
        .unwrap_err();
        assert!(
            error.contains("--insecure") && error.contains("ALLOCDB_INSECURE"),
            "{error}"
        );
        let bad_cluster = environment(&[("ALLOCDB_CLUSTER", "x")]);
        let error = flags
            .clone()
            .options_over(None, &bad_cluster)
            .map(|options| options.cluster_id);
        assert_eq!(error, Ok(8), "the flag hides a bad variable");
    }
}
