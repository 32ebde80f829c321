//! The `allocdb` binary: one command line for operating and using an AllocDB cluster.

use std::io::IsTerminal;
use std::process::ExitCode;

use allocdb_server::commands::{self, EXIT_USAGE, FormatArgs, StartArgs, StatusArgs};
use clap::error::ErrorKind;
use clap::{CommandFactory, Parser, Subcommand};

/// AllocDB: a replicated, deterministic database for allocating scarce resources.
#[derive(Parser, Debug)]
#[command(name = "allocdb", version, about)]
struct Cli {
    /// Print a usage error as a JSON line on stdout even when stdout is a terminal (it always
    /// is when stdout is not one; `client` and `status` print JSON for every outcome).
    #[arg(long, global = true)]
    json: bool,
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
    /// Print a shell completion script: `source <(allocdb completions bash)`.
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(&error),
    };
    init_logging();
    match &cli.command {
        Command::Certs(args) => allocdb_server::certs::run(args),
        Command::Format(args) => commands::format(args),
        Command::Start(args) => commands::start(args),
        Command::Status(args) => commands::status(args),
        Command::Health(args) => allocdb_server::health::run(args),
        Command::Client(args) => allocdb_server::cli_client::run(args),
        Command::Demo(args) => allocdb_server::demo::run(args),
        Command::Benchmark(args) => allocdb_server::benchmark::run(args),
        Command::Completions { shell } => {
            // Into memory first: `generate` panics on a failed write, and a reader that
            // stops early (`allocdb completions bash | head`) is not a failure.
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "allocdb", &mut script);
            allocdb_server::stdout::write_bytes(&script);
            ExitCode::SUCCESS
        }
    }
}

/// Reports a command line clap refused: its text on stderr and, for a program reading stdout
/// (not a terminal, or `--json`), `{"result":"usage","error":"..."}` there; exit 2. Help and
/// version requests print as clap prints them.
fn usage_error(error: &clap::Error) -> ExitCode {
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) {
        let _ = error.print();
        return ExitCode::SUCCESS;
    }
    let _ = error.print();
    // Parsing failed, so `--json` is looked for among the raw arguments.
    let json_flag = std::env::args_os().any(|arg| arg == "--json");
    if json_flag || !std::io::stdout().is_terminal() {
        let text = error.render().to_string();
        let message = text
            .lines()
            .find(|line| !line.trim().is_empty())
            .unwrap_or_default()
            .trim_start_matches("error: ")
            .to_string();
        let line = serde_json::json!({"result": "usage", "error": message, "usage": text.trim()});
        allocdb_server::outln!("{line}");
    }
    ExitCode::from(EXIT_USAGE)
}

/// Logs to stderr, coloured only for a person: stderr is a terminal and `NO_COLOR` is unset
/// or empty (<https://no-color.org>).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && !no_color)
        .init();
}
