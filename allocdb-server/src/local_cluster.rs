//! A cluster of `allocdb` child processes on loopback, in a temporary directory: what
//! `allocdb demo`, `allocdb benchmark` and the integration tests run against.
//!
//! Each replica is a real process of the same binary (`format`, then `start`), so crashes are
//! real (`SIGKILL`) and restarts recover from disk. Dropping a [`LocalCluster`] kills every
//! child and removes the directory, on success and on error alike.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use allocdb_client::tls::Transport;
use allocdb_client::{ClientRole, Security, TlsCredentials};
use allocdb_vsr::frame::{Role, StatusReply};
use tokio::time::Instant;

/// A running local cluster.
#[derive(Debug)]
pub struct LocalCluster {
    exe: PathBuf,
    dir: PathBuf,
    /// The cluster id it was formatted with.
    pub cluster_id: u128,
    /// The replicas' addresses, in replica order.
    pub addresses: Vec<String>,
    children: Vec<Option<Child>>,
    security: LocalSecurity,
}

/// Whether a local cluster runs TLS (certificates made in its directory) or plaintext.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocalSecurity {
    /// `allocdb certs` into `<dir>/certs`; every replica runs `--certs`.
    Tls,
    /// Every replica runs `--insecure`.
    Insecure,
}

impl LocalSecurity {
    /// How a tool prints the mode.
    pub fn describe(self) -> &'static str {
        match self {
            LocalSecurity::Tls => "TLS 1.3 with certificates made for this run",
            LocalSecurity::Insecure => "plaintext (--insecure)",
        }
    }
}

impl LocalCluster {
    /// Formats and starts `replica_count` replicas of binary `exe` on free loopback ports.
    ///
    /// # Errors
    /// What failed: the directory, a port, `format`, or spawning `start`.
    pub fn start(
        exe: &Path,
        replica_count: u8,
        cluster_id: u128,
        security: LocalSecurity,
    ) -> Result<LocalCluster, String> {
        LocalCluster::start_with(exe, replica_count, cluster_id, &[], security)
    }

    /// As [`LocalCluster::start`], passing `format_flags` (e.g. table sizes) to `allocdb format`.
    ///
    /// # Errors
    /// As [`LocalCluster::start`].
    pub fn start_with(
        exe: &Path,
        replica_count: u8,
        cluster_id: u128,
        format_flags: &[&str],
        security: LocalSecurity,
    ) -> Result<LocalCluster, String> {
        assert!(matches!(replica_count, 1 | 3 | 5), "1, 3 or 5 replicas");
        let dir = unique_temp_dir()?;
        let mut cluster = LocalCluster {
            exe: exe.to_path_buf(),
            dir,
            cluster_id,
            addresses: free_addresses(replica_count)?,
            children: (0..replica_count).map(|_| None).collect(),
            security,
        };
        if security == LocalSecurity::Tls {
            crate::certs::generate(
                &cluster.certs_dir(),
                cluster_id,
                replica_count,
                crate::certs::LEAF_DAYS_DEFAULT,
                crate::certs::CA_DAYS_DEFAULT,
            )?;
        }
        for replica in 0..replica_count {
            cluster.format(replica, format_flags)?;
        }
        for replica in 0..replica_count {
            cluster.spawn(usize::from(replica))?;
        }
        Ok(cluster)
    }

    /// The temporary directory holding every replica's data and log file.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the certificates are (made only under [`LocalSecurity::Tls`]).
    pub fn certs_dir(&self) -> PathBuf {
        self.dir.join("certs")
    }

    /// The cluster's security mode.
    pub fn security(&self) -> LocalSecurity {
        self.security
    }

    /// `--certs <dir>` or `--insecure`, for any `allocdb` command run against this cluster.
    pub fn security_flags(&self) -> Vec<String> {
        match self.security {
            LocalSecurity::Tls => vec![
                "--certs".to_string(),
                self.certs_dir().display().to_string(),
            ],
            LocalSecurity::Insecure => vec!["--insecure".to_string()],
        }
    }

    /// A client's credentials for `role`.
    ///
    /// # Errors
    /// The certificate files cannot be read.
    pub fn client_security(&self, role: ClientRole) -> Result<Security, String> {
        match self.security {
            LocalSecurity::Tls => Ok(Security::Tls(TlsCredentials::from_dir(
                &self.certs_dir(),
                role.name(),
            )?)),
            LocalSecurity::Insecure => Ok(Security::Insecure),
        }
    }

    /// The number of replicas.
    pub fn replica_count(&self) -> usize {
        self.addresses.len()
    }

    fn data_dir(&self, replica: usize) -> PathBuf {
        self.dir.join(format!("replica-{replica}"))
    }

    fn format(&self, replica: u8, flags: &[&str]) -> Result<(), String> {
        let output = Command::new(&self.exe)
            .arg("format")
            .args(["--cluster", &self.cluster_id.to_string()])
            .args(["--replica", &replica.to_string()])
            .args(["--replica-count", &self.addresses.len().to_string()])
            .args(self.security_flags())
            .args(flags)
            .arg(self.data_dir(usize::from(replica)))
            .stdin(Stdio::null())
            .output()
            .map_err(|error| format!("running {} format: {error}", self.exe.display()))?;
        if !output.status.success() {
            return Err(format!(
                "format of replica {replica} failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(())
    }

    fn spawn(&mut self, replica: usize) -> Result<(), String> {
        assert!(
            self.children[replica].is_none(),
            "replica {replica} is running"
        );
        let log_path = self.dir.join(format!("replica-{replica}.log"));
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|error| format!("opening {}: {error}", log_path.display()))?;
        let log_err = log
            .try_clone()
            .map_err(|error| format!("opening {}: {error}", log_path.display()))?;
        let child = Command::new(&self.exe)
            .arg("start")
            .args(["--addresses", &self.addresses.join(",")])
            .args(["--replica", &replica.to_string()])
            .args(self.security_flags())
            .arg(self.data_dir(replica))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|error| format!("starting replica {replica}: {error}"))?;
        self.children[replica] = Some(child);
        Ok(())
    }

    /// Kills replica `replica` with `SIGKILL` (no chance to flush anything) and reaps it.
    pub fn kill(&mut self, replica: usize) {
        if let Some(mut child) = self.children[replica].take() {
            // Already exited is fine: the point is that it is not running.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a killed replica again on its data directory.
    ///
    /// # Errors
    /// Spawning failed.
    pub fn restart(&mut self, replica: usize) -> Result<(), String> {
        self.spawn(replica)
    }

    /// Each replica's process id, in replica order (`None`: killed and not restarted).
    pub fn pids(&self) -> Vec<Option<u32>> {
        self.children
            .iter()
            .map(|child| child.as_ref().map(Child::id))
            .collect()
    }

    /// Whether replica `replica`'s process is alive.
    pub fn is_running(&mut self, replica: usize) -> bool {
        match self.children[replica].as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The tail of replica `replica`'s log, for error messages.
    pub fn log_tail(&self, replica: usize) -> String {
        let path = self.dir.join(format!("replica-{replica}.log"));
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Asks replica `replica` for its status.
    ///
    /// # Errors
    /// It did not answer within `timeout`, or answered something else.
    pub async fn status(&self, replica: usize, timeout: Duration) -> Result<StatusReply, String> {
        let transport = self
            .client_security(ClientRole::Operator)
            .and_then(|security| Transport::new(&security))?;
        let index = u8::try_from(replica).expect("at most REPLICAS_MAX");
        crate::status::probe_over(
            &transport,
            &self.addresses[replica],
            index,
            self.cluster_id,
            timeout,
        )
        .await
    }

    /// Waits until some replica reports itself primary; its index.
    ///
    /// # Errors
    /// No primary within `timeout`.
    pub async fn wait_for_primary(&self, timeout: Duration) -> Result<usize, String> {
        let deadline = Instant::now() + timeout;
        loop {
            for replica in 0..self.replica_count() {
                if let Ok(status) = self.status(replica, Duration::from_millis(200)).await {
                    if status.role == Role::Primary {
                        return Ok(replica);
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(format!("no primary within {timeout:?}"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for replica in 0..self.children.len() {
            self.kill(replica);
        }
        if std::env::var_os("ALLOCDB_KEEP_CLUSTER_DIR").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Runs `work`, or stops at Ctrl-C: dropping `work` drops any [`LocalCluster`] it owns, which
/// kills the children and removes their directory.
///
/// # Errors
/// `work`'s error, or "interrupted".
pub async fn until_interrupted<T>(
    work: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    tokio::select! {
        result = work => result,
        _ = tokio::signal::ctrl_c() => Err("interrupted; the local cluster was stopped and removed".to_string()),
    }
}

/// Asks the replica at `address` for its status (any cluster).
///
/// # Errors
/// A message naming what failed.
pub async fn fetch_status(address: &str, timeout: Duration) -> Result<StatusReply, String> {
    crate::status::probe(address, 0, timeout).await
}

fn unique_temp_dir() -> Result<PathBuf, String> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    let dir = std::env::temp_dir().join(format!("allocdb-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir)
        .map_err(|error| format!("creating {}: {error}", dir.display()))?;
    Ok(dir)
}

/// Free loopback addresses: bind port 0, note the port, let it go. Another process could take
/// one in between; on a test machine that is rare enough, and `start` then fails loudly.
fn free_addresses(count: u8) -> Result<Vec<String>, String> {
    let listeners: Vec<std::net::TcpListener> = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()
        .map_err(|error| format!("finding a free port: {error}"))?;
    listeners
        .iter()
        .map(|listener| {
            listener
                .local_addr()
                .map(|address| address.to_string())
                .map_err(|error| format!("finding a free port: {error}"))
        })
        .collect()
}
