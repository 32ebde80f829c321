//! The Rust client's example programs (`allocdb-client/examples/`) run against a real local
//! TLS cluster, configured from the environment exactly as a user would configure them for
//! `deploy/local/cluster.sh start`: each must exit 0.
//!
//! The examples are built with `cargo build --workspace --examples` (the same profile as this
//! test), which finds them fresh after `cargo test --workspace` and builds them otherwise.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use allocdb_server::local_cluster::{LocalCluster, LocalSecurity};

mod support;

/// The examples, and what each must print.
const EXAMPLES: [(&str, &[&str]); 4] = [
    ("quickstart", &["released at op"]),
    ("seat_booking", &["seat map:"]),
    ("gpu_pool", &["refused by the GPU", "the lease is gone"]),
    // The relay loses the first attempt's answers: a real `Indefinite`, then the retry.
    (
        "exactly_once",
        &["first attempt: outcome unknown", "exactly once"],
    ),
];
/// Building the examples may compile the client crate and its dependencies.
const BUILD_TIME_MAX: Duration = Duration::from_secs(20 * 60);
/// One example runs for about 10 s at most (the GPU pool waits out a lease's TTL).
const RUN_TIME_MAX: Duration = Duration::from_secs(90);

/// `<target>/<profile>`: this test runs from `<target>/<profile>/deps/`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    exe.parent()
        .and_then(Path::parent)
        .expect("a test binary lives in <target>/<profile>/deps")
        .to_path_buf()
}

fn build_examples() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut build = Command::new(cargo);
    build.args(["build", "--workspace", "--examples"]);
    // Cargo gives this test the variables of the package under test (`CARGO_MANIFEST_DIR`,
    // `CARGO_PKG_NAME`, ...). Passed on, they would make build scripts that watch them (ring's
    // does) look changed, rebuilding ring, rustls and everything above them twice per run.
    for (name, _) in std::env::vars_os() {
        let name_text = name.to_string_lossy();
        let set_for_the_test = [
            "CARGO_MANIFEST_",
            "CARGO_PKG_",
            "CARGO_BIN_",
            "CARGO_CRATE_",
        ]
        .iter()
        .any(|prefix| name_text.starts_with(prefix))
            || ["CARGO_PRIMARY_PACKAGE", "CARGO_TARGET_TMPDIR", "OUT_DIR"].contains(&&*name_text);
        if set_for_the_test {
            build.env_remove(&name);
        }
    }
    if !cfg!(debug_assertions) {
        build.arg("--release");
    }
    let (code, _, stderr) = support::run_bounded(&mut build, BUILD_TIME_MAX, support::kill);
    assert_eq!(code, Some(0), "building the examples failed:\n{stderr}");
}

#[test]
fn every_client_example_runs_against_a_local_tls_cluster() {
    build_examples();
    let binary = Path::new(env!("CARGO_BIN_EXE_allocdb"));
    let cluster = LocalCluster::start(binary, 3, 0xE8A4, LocalSecurity::Tls).expect("cluster");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime
        .block_on(cluster.wait_for_primary(Duration::from_secs(30)))
        .expect("a primary");
    let examples_dir = profile_dir().join("examples");
    for (name, expected) in EXAMPLES {
        let started = Instant::now();
        let (code, stdout, stderr) = support::run_bounded(
            Command::new(examples_dir.join(name))
                .env("ALLOCDB_ADDRESSES", cluster.addresses.join(","))
                .env("ALLOCDB_CLUSTER", cluster.cluster_id.to_string())
                .env("ALLOCDB_CERTS", cluster.certs_dir())
                .env_remove("ALLOCDB_INSECURE"),
            RUN_TIME_MAX,
            support::kill,
        );
        let report = format!(
            "example {name}: exit {code:?} after {:.1?}\n--- stdout\n{stdout}--- stderr\n{stderr}",
            started.elapsed()
        );
        assert_eq!(code, Some(0), "{report}");
        for line in expected {
            assert!(stdout.contains(line), "no {line:?} line: {report}");
        }
        eprintln!("{report}");
    }
}
