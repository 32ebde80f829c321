//! The `allocdb` binary: one command line for operating and using an AllocDB cluster.

use std::process::ExitCode;

use allocdb_server::commands::{self, FormatArgs, StartArgs, StatusArgs};
use clap::{Parser, Subcommand};

/// AllocDB: a replicated, deterministic database for allocating scarce resources.
#[derive(Parser, Debug)]
#[command(name = "allocdb", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a cluster's CA and the certificates of its replicas and client roles.
    Certs(allocdb_server::certs::CertsArgs),
    /// Create a replica's data directory (once per replica, before the first start).
    Format(FormatArgs),
    /// Run a replica until SIGTERM/SIGINT.
    Start(StartArgs),
    /// Print one JSON line per replica: role, view, op, commit, applied.
    Status(StatusArgs),
    /// Probe a replica's HTTP /health: exit 0 on 200, 1 on another status, 2 on no answer.
    Health(allocdb_server::health::HealthArgs),
    /// Run one command against a cluster; print one JSON line.
    Client(allocdb_server::cli_client::ClientArgs),
    /// Start a local three-replica cluster, race 200 clients, kill the primary, audit.
    Demo(allocdb_server::demo::DemoArgs),
    /// Measure throughput and latency of a workload.
    Benchmark(allocdb_server::benchmark::BenchmarkArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match &cli.command {
        Command::Certs(args) => allocdb_server::certs::run(args),
        Command::Format(args) => commands::format(args),
        Command::Start(args) => commands::start(args),
        Command::Status(args) => commands::status(args),
        Command::Health(args) => allocdb_server::health::run(args),
        Command::Client(args) => allocdb_server::cli_client::run(args),
        Command::Demo(args) => allocdb_server::demo::run(args),
        Command::Benchmark(args) => allocdb_server::benchmark::run(args),
    }
}
