//! The documentation checked against the build (issue 14): every `--flag` the docs give an
//! `allocdb` command exists in that command's `--help`; every result-code, error-code, frame
//! kind and role table in the docs matches the code's tables; the defaults the docs quote for
//! `allocdb format` limits and `allocdb start` connection limits are the binary's; every
//! metric the docs name is exported by a running replica, and every exported metric is
//! documented. A claim the docs make that the build contradicts fails here, in CI, with the
//! file and the words to fix.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use allocdb_core::ResultCode;
use allocdb_vsr::frame::{ErrorCode, FrameKind, Role};
use support::{Cluster, PATIENCE, binary, free_port};

/// The `allocdb` subcommands.
const COMMANDS: [&str; 9] = [
    "certs",
    "format",
    "start",
    "status",
    "health",
    "client",
    "demo",
    "benchmark",
    "completions",
];

/// The `allocdb client` commands.
const CLIENT_COMMANDS: [&str; 12] = [
    "create-resource",
    "reserve",
    "reserve-any",
    "activate",
    "renew",
    "release",
    "revoke",
    "reclaim",
    "get-resource",
    "get-lease",
    "pool",
    "operation-id",
];

/// Flags the binary accepts without listing them in `--help` (hidden, deprecated), by
/// command. Each is shown to be accepted by `hidden_flags_are_accepted`.
const HIDDEN_FLAGS: [(&str, &str); 1] = [("status", "--timeout-ms")];

/// Flags of other programs that the docs show (cargo, docker, kubectl, useradd, systemctl,
/// the simulator, the fuzz smoke loop, perf, the Python examples): a `--flag` in the docs that is
/// in no `allocdb` help must be one of these.
const OTHER_PROGRAMS_FLAGS: [&str; 39] = [
    // cargo
    "--release",
    "--bench",
    "--workspace",
    "--example",
    "--examples",
    "--open",
    "--test",
    "--features",
    "--manifest-path",
    "--no-default-features",
    "--nocapture",
    "--check",
    // docker, docker-compose, kubectl, useradd
    "--rm",
    "--all",
    "--from-file",
    "--dry-run",
    "--no-create-home",
    "--system",
    "--shell",
    "--wait",
    // the simulator (`cargo run -p simulator -- --help`)
    "--seed",
    "--seeds",
    "--fault-ms",
    "--heal-ms",
    "--lying-disks",
    "--no-beyond-f",
    "--no-clock-drift",
    "--no-pauses",
    "--no-reformat",
    "--jobs",
    "--verbose",
    // the simulator's former opt-in, named in testing.md's history of reformats
    "--reformat",
    // the fuzz smoke loop
    "--runs",
    "--seconds",
    // systemctl, perf, the Python examples (`examples/python/*.py`)
    "--now",
    "--call-graph",
    "--uvloop",
    "--demo",
    "--tls",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate sits in the workspace")
        .to_path_buf()
}

/// README.md and every `docs/*.md`, by path relative to the repository, with their text.
fn docs() -> Vec<(String, String)> {
    let root = repo();
    let mut paths = vec![root.join("README.md")];
    let mut pages: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("read docs/")
        .map(|entry| entry.expect("a docs/ entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    pages.sort();
    paths.extend(pages);
    assert!(paths.len() >= 11, "README.md and the ten docs/ pages");
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("read a doc");
            let name = path
                .strip_prefix(&root)
                .expect("inside the repository")
                .display()
                .to_string();
            (name, text)
        })
        .collect()
}

fn doc(name: &str) -> String {
    std::fs::read_to_string(repo().join(name)).expect("read a doc")
}

/// The code of a document: each fenced block's lines (backslash continuations joined) and
/// each inline code span (paragraphs joined first, since a span may wrap). In order.
fn code_spans(text: &str) -> Vec<(bool, String)> {
    let mut spans = Vec::new();
    let mut fenced = false;
    let mut paragraph = String::new();
    let mut continued = String::new();
    let flush = |paragraph: &mut String, spans: &mut Vec<(bool, String)>| {
        for (index, piece) in paragraph.split('`').enumerate() {
            if index % 2 == 1 {
                spans.push((false, piece.to_string()));
            }
        }
        paragraph.clear();
    };
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            flush(&mut paragraph, &mut spans);
            fenced = !fenced;
            continue;
        }
        if fenced {
            continued.push_str(line.trim_end_matches('\\'));
            continued.push(' ');
            if !line.ends_with('\\') {
                spans.push((true, std::mem::take(&mut continued)));
            }
        } else if line.trim().is_empty() {
            flush(&mut paragraph, &mut spans);
        } else {
            paragraph.push_str(line);
            paragraph.push(' ');
        }
    }
    flush(&mut paragraph, &mut spans);
    spans
}

/// The long flags `allocdb <args> --help` lists (its option lines only).
fn help_flags(args: &[&str]) -> BTreeSet<String> {
    let output = Command::new(binary())
        .args(args)
        .arg("--help")
        .output()
        .expect("run allocdb --help");
    assert!(output.status.success(), "allocdb {args:?} --help failed");
    let help = String::from_utf8(output.stdout).expect("help is UTF-8");
    help.lines()
        .filter(|line| line.trim_start().starts_with('-'))
        .filter_map(|line| flag_in(line.trim_start().trim_start_matches("-h, ")))
        .collect()
}

/// The `--flag` a token starts with (after brackets), without `=value` or punctuation.
fn flag_in(token: &str) -> Option<String> {
    let token = token.trim_start_matches(['[', '(', '"']);
    let rest = token.strip_prefix("--")?;
    let name: String = rest
        .chars()
        .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
        .collect();
    let name = name.trim_end_matches('-');
    (!name.is_empty() && name.starts_with(|c: char| c.is_ascii_lowercase()))
        .then(|| format!("--{name}"))
}

/// Each command's flags: `"format"`, ..., `"client"` (options before the command) and
/// `"client reserve"`, ... (a client command's own).
fn all_help_flags() -> BTreeMap<String, BTreeSet<String>> {
    let mut flags = BTreeMap::new();
    flags.insert(String::new(), help_flags(&[]));
    for command in COMMANDS {
        flags.insert(command.to_string(), help_flags(&[command]));
    }
    for command in CLIENT_COMMANDS {
        flags.insert(
            format!("client {command}"),
            help_flags(&["client", command]),
        );
    }
    for (command, flag) in HIDDEN_FLAGS {
        flags
            .get_mut(command)
            .expect("a known command")
            .insert(flag.to_string());
    }
    flags
}

/// One `allocdb` invocation found in a doc: which help applies to each flag it passes.
fn invocations(code: &str, fenced: bool) -> Vec<(String, String)> {
    let mut tokens: Vec<&str> = code.split_whitespace().collect();
    // An inline span that starts with a command's name is that command's synopsis
    // (`format --if-empty`, `renew <lease> --holder <id> ...`).
    match tokens.first() {
        Some(first) if !fenced && COMMANDS.contains(first) => tokens.insert(0, "allocdb"),
        Some(first) if !fenced && CLIENT_COMMANDS.contains(first) => {
            tokens.splice(0..0, ["allocdb", "client"]);
        }
        _ => {}
    }
    let mut found = Vec::new();
    let mut position = 0;
    while position < tokens.len() {
        let token = tokens[position].trim_start_matches(['(', '<', '$']);
        position += 1;
        // `cargo run --release -p allocdb-server -- <command>` runs the binary too.
        let through_cargo = token == "allocdb-server" && tokens.get(position) == Some(&"--");
        if through_cargo {
            position += 1;
        }
        let is_binary = token == "allocdb" || token.ends_with("/allocdb") || through_cargo;
        let Some(command) = tokens.get(position).filter(|_| is_binary) else {
            continue;
        };
        if !COMMANDS.contains(command) {
            continue;
        }
        position += 1;
        let mut scope = (*command).to_string();
        while position < tokens.len() {
            let token = tokens[position];
            let ends = [";", "&&", "||", "#"].contains(&token)
                || (fenced && token == "|")
                || token == "allocdb"
                || token.ends_with("/allocdb");
            if ends {
                break;
            }
            position += 1;
            if *command == "client" && scope == "client" && CLIENT_COMMANDS.contains(&token) {
                scope = format!("client {token}");
            } else if let Some(flag) = flag_in(token) {
                found.push((scope.clone(), flag));
            }
            if token.ends_with(';') {
                break;
            }
        }
    }
    found
}

#[test]
fn every_flag_the_docs_give_a_command_is_in_its_help() {
    let helps = all_help_flags();
    let every: BTreeSet<&String> = helps.values().flatten().collect();
    let mut wrong = Vec::new();
    let mut checked = 0_u32;
    for (name, text) in docs() {
        for (fenced, code) in code_spans(&text) {
            for (scope, flag) in invocations(&code, fenced) {
                checked += 1;
                if !helps[&scope].contains(&flag) && !helps[""].contains(&flag) {
                    wrong.push(format!(
                        "{name}: `allocdb {scope}` has no {flag} (in `{code}`)"
                    ));
                }
            }
        }
        // A flag shown without its command must still be some program's.
        for line in text.lines() {
            for token in line.split(|c: char| c.is_whitespace() || c == '`') {
                let Some(flag) = flag_in(token) else { continue };
                let known = every.contains(&flag) || OTHER_PROGRAMS_FLAGS.contains(&flag.as_str());
                if !known {
                    wrong.push(format!("{name}: {flag} is no command's flag (in `{line}`)"));
                }
            }
        }
    }
    assert!(
        checked > 100,
        "only {checked} flags found: is the parser broken?"
    );
    assert!(
        wrong.is_empty(),
        "docs name flags the build lacks:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn hidden_flags_are_accepted() {
    let closed = format!("127.0.0.1:{}", free_port());
    for (command, flag) in HIDDEN_FLAGS {
        assert_eq!(
            command, "status",
            "a new hidden flag needs its own invocation here"
        );
        let output = Command::new(binary())
            .args([command, flag, "100", "--insecure", "--addresses", &closed])
            .output()
            .expect("run allocdb");
        // Exit 1 (the one replica did not answer; 0 if some process took the port meanwhile):
        // the flag parsed. A usage error would be 2.
        assert!(
            matches!(output.status.code(), Some(0 | 1)),
            "{command} {flag}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// The `(number, name)` pairs of a markdown table's first two cells, in the section that
/// starts with the line `heading`, up to the next heading.
fn numbered_table(text: &str, heading: &str) -> Vec<(u8, String)> {
    let section = section(text, heading);
    section
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let number = cells.get(1)?.parse::<u8>().ok()?;
            Some((number, cells.get(2)?.trim_matches('`').to_string()))
        })
        .collect()
}

/// The text from the line that starts with `heading` to the next heading of any level.
fn section<'a>(text: &'a str, heading: &str) -> &'a str {
    let start = text
        .find(&format!("\n{heading}"))
        .unwrap_or_else(|| panic!("no section {heading:?}"))
        + 1;
    let after = &text[start..];
    let end = after[1..].find("\n#").map_or(after.len(), |end| end + 1);
    &after[..end]
}

/// `(value, name)` of every entry of one of the code's tables.
fn named<T: Copy>(
    all: &[T],
    value: impl Fn(T) -> u8,
    name: impl Fn(T) -> &'static str,
) -> Vec<(u8, String)> {
    all.iter()
        .map(|item| (value(*item), name(*item).to_string()))
        .collect()
}

#[test]
fn result_codes_in_the_docs_are_the_cores() {
    let codes = named(&ResultCode::ALL, |code| code as u8, ResultCode::name);
    // protocol.md: "**Result codes**: 0 ok, 1 already_exists, ..." in one paragraph.
    let protocol = doc("docs/protocol.md");
    let listed = protocol
        .split("**Result codes**:")
        .nth(1)
        .expect("protocol.md lists the result codes")
        .split("\n\n")
        .next()
        .expect("a paragraph");
    let words: Vec<&str> = listed
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|word| !word.is_empty())
        .collect();
    let pairs: Vec<(u8, String)> = words
        .windows(2)
        .filter_map(|pair| Some((pair[0].parse().ok()?, pair[1].to_string())))
        .collect();
    assert_eq!(
        pairs.get(..codes.len()),
        Some(&codes[..]),
        "docs/protocol.md's result codes"
    );
    // semantics.md: one row per code in its "Result codes" table.
    let semantics = doc("docs/semantics.md");
    let names: BTreeSet<String> = section(&semantics, "## Result codes")
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|line| line.split('`').next())
        .map(str::to_string)
        .collect();
    let expected: BTreeSet<String> = codes.into_iter().map(|(_, name)| name).collect();
    assert_eq!(names, expected, "docs/semantics.md's result code table");
}

#[test]
fn protocol_tables_in_the_docs_are_the_protocol_crates() {
    let protocol = doc("docs/protocol.md");
    assert_eq!(
        numbered_table(&protocol, "## 5. Error frame"),
        named(&ErrorCode::ALL, |code| code as u8, ErrorCode::name),
        "docs/protocol.md's error frame table"
    );
    assert_eq!(
        numbered_table(&protocol, "### Frame kinds"),
        named(&FrameKind::ALL, |kind| kind as u8, FrameKind::name),
        "docs/protocol.md's frame kinds"
    );
    let roles = named(&Role::ALL, |role| role as u8, Role::name)
        .iter()
        .map(|(value, name)| format!("{value} {name}"))
        .collect::<Vec<_>>()
        .join(", ");
    assert!(
        protocol.contains(&roles),
        "docs/protocol.md must give the role values as `{roles}`"
    );

    // The peer handshake's configuration values: "...; 35 values today)".
    let settings = allocdb_server::ClusterSettings::new(
        7,
        0,
        3,
        allocdb_server::settings::SLOT_MS_DEFAULT,
        allocdb_server::settings::default_core_config(),
    );
    let addresses = ["a:1".to_string(), "b:1".to_string(), "c:1".to_string()];
    let fingerprint = allocdb_server::fingerprint::Fingerprint::new(&settings, &addresses)
        .expect("a valid fingerprint");
    let values = fingerprint.handshake(0, 3).config.len();
    assert!(
        protocol.contains(&format!("; {values} values today)")),
        "docs/protocol.md must say the handshake carries {values} configuration values"
    );
}

/// Suffixes of result-code and error-code names: a backticked word in the docs with one of
/// these must be a code (or one of `NOT_CODES`).
const CODE_SUFFIXES: [&str; 14] = [
    "_full",
    "_not_found",
    "_busy",
    "_exhausted",
    "_expired",
    "_stale",
    "_evicted",
    "_mismatch",
    "_conflict",
    "_out_of_range",
    "_overflow",
    "_exists",
    "_retired",
    "_epoch",
];

/// Backticked words with a code's suffix that are not codes (a metric's label, a field).
const NOT_CODES: [&str; 3] = [
    "peer_config_mismatch",
    "config_mismatch",
    "allocdb_peer_config_mismatch",
];

#[test]
fn code_names_in_the_docs_are_codes() {
    let mut known: BTreeSet<&str> = ResultCode::ALL.iter().map(|code| code.name()).collect();
    known.extend(ErrorCode::ALL.iter().map(|code| code.name()));
    known.extend(NOT_CODES);
    let mut wrong = Vec::new();
    for (name, text) in docs() {
        for (_, code) in code_spans(&text) {
            let word = code.trim();
            let plain = word
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            let looks = CODE_SUFFIXES.iter().any(|suffix| word.ends_with(suffix));
            if plain && looks && !known.contains(word) {
                wrong.push(format!("{name}: `{word}` is no result or error code"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The number a table cell starts with (`65,536`, `6,000 (60 s ...)`), commas dropped.
fn leading_number(cell: &str) -> Option<u64> {
    let digits: String = cell
        .trim()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == ',')
        .filter(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The core's default for a limit row of operations.md's Capacity table, by its first cell.
fn core_default(limit: &str) -> Option<u64> {
    let core = allocdb_server::settings::default_core_config();
    Some(match limit {
        "resources_max" => u64::from(core.resources_max),
        "pools_max" => u64::from(core.pools_max),
        "leases_max" => u64::from(core.leases_max),
        "lease_members_max" => u64::from(core.lease_members_max),
        "bundle_size_max" => u64::from(core.bundle_size_max),
        "operations_max" => u64::from(core.operations_max),
        "clients_max" => u64::from(core.clients_max),
        "session_requests_max" => u64::from(core.session_requests_max),
        "ttl_slots_max" => core.ttl_slots_max,
        "dedupe_window_slots" => core.dedupe_window_slots,
        "lease_history_slots" => core.lease_history_slots,
        _ => return None,
    })
}

#[test]
fn capacity_defaults_in_the_docs_are_the_binarys() {
    let operations = doc("docs/operations.md");
    let core = allocdb_server::settings::default_core_config();
    let batches = format!(
        "{} / {}",
        thousands(u64::from(core.batch_requests_max)),
        core.expirations_per_batch_max
    );
    let mut checked = 0_u32;
    for line in section(&operations, "## Capacity sizing").lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (Some(limit), Some(default)) = (cells.get(1), cells.get(3)) else {
            continue;
        };
        let limit = limit.trim_matches('`');
        if limit == "batch_requests_max`, `expirations_per_batch_max" {
            assert_eq!(*default, batches, "docs/operations.md: {limit}");
        } else if let Some(actual) = core_default(limit) {
            let quoted = leading_number(default);
            assert_eq!(quoted, Some(actual), "docs/operations.md: {limit}");
        } else {
            continue;
        }
        checked += 1;
    }
    assert_eq!(checked, 12, "every limit row of the Capacity table");
}

/// The `[default: ...]` text of `flag` in a help text: clap ends the flag's description
/// with it, and the description ends where the next option's line begins.
fn described_default(help: &str, flag: &str) -> String {
    let line = help
        .lines()
        .position(|line| line.trim_start().starts_with(flag))
        .unwrap_or_else(|| panic!("no {flag} in {help}"));
    let mut lines = help.lines().skip(line);
    let mut described = lines.next().expect("the flag's line").to_string();
    for more in lines.take_while(|more| !more.trim_start().starts_with('-')) {
        described.push_str(more);
    }
    described
}

#[test]
fn connection_limit_defaults_in_the_docs_are_the_binarys() {
    let operations = doc("docs/operations.md");
    let help = help_text(&["start"]);
    let mut rows = 0_u32;
    for line in section(&operations, "## Connection limits").lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (Some(flags), Some(defaults)) = (cells.get(1), cells.get(2)) else {
            continue;
        };
        if !flags.starts_with("`--") {
            continue;
        }
        let defaults = defaults.trim_end_matches(" bytes/s");
        for (flag, default) in flags.split(", ").zip(defaults.split(", ")) {
            let flag = flag.trim_matches('`');
            let described = described_default(&help, flag);
            assert!(
                described.contains(&format!("[default: {default}]")),
                "docs/operations.md says {flag} defaults to {default}; start --help: {described}"
            );
            rows += 1;
        }
    }
    assert_eq!(rows, 7, "every flag of the Connection limits table");
}

fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn help_text(args: &[&str]) -> String {
    let output = Command::new(binary())
        .args(args)
        .arg("--help")
        .output()
        .expect("run allocdb --help");
    String::from_utf8(output.stdout).expect("UTF-8")
}

/// A one-replica cluster's `/metrics` text.
fn scrape_metrics() -> String {
    let cluster = Cluster::start("docs-metrics", 1, &[]);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let output = Command::new(binary())
            .args(["health", &cluster.metrics[0], "--path", "/metrics"])
            .output()
            .expect("run allocdb health");
        if output.status.success() {
            return String::from_utf8(output.stdout).expect("UTF-8");
        }
        assert!(Instant::now() < deadline, "/metrics never answered");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Each metric as scraped (counters with `_total`, histograms by family) with the values
/// of its labels (`le` aside).
fn exported_metrics(exposition: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut exported: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for declaration in exposition
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
    {
        let mut parts = declaration.split_whitespace();
        let (family, kind) = (parts.next().expect("a name"), parts.next().expect("a type"));
        let name = if kind == "counter" {
            format!("{family}_total")
        } else {
            family.to_string()
        };
        exported.entry(name).or_default();
    }
    for line in exposition.lines().filter(|line| !line.starts_with('#')) {
        let Some((name, labels)) = line.split_once('{') else {
            continue;
        };
        let Some(values) = exported.get_mut(name) else {
            continue;
        };
        for label in labels.split(['{', '}', ',']) {
            if let Some((key, value)) = label.split_once('=') {
                if key != "le" {
                    values.insert(value.trim_matches('"').to_string());
                }
            }
        }
    }
    exported
}

/// Every `allocdb_*` name in the docs that is neither a crate nor an exported metric.
fn unexported_metric_names(exported: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let crates = ["core", "wal", "vsr", "protocol", "server", "client"]
        .map(|name| format!("allocdb_{name}"));
    let mut wrong = Vec::new();
    for (doc_name, text) in docs() {
        for (position, _) in text.match_indices("allocdb_") {
            let name: String = text[position..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            let name = name.trim_end_matches('_');
            let family = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(name);
            // `allocdb_peer_config_mismatch(es_total)`: the gauge and the counter at once.
            let both = text[position + name.len()..].starts_with("(es_total)");
            if !crates.iter().any(|krate| krate == name) && !exported.contains_key(family) && !both
            {
                wrong.push(format!("{doc_name}: {name} is not exported"));
            }
        }
    }
    wrong.sort();
    wrong.dedup();
    wrong
}

#[test]
fn documented_metrics_are_the_exported_ones() {
    let exposition = scrape_metrics();
    let exported = exported_metrics(&exposition);
    assert!(exported.len() > 30, "{exposition}");

    // The Monitoring table of docs/operations.md documents every exported metric and the
    // values of its labels.
    let operations = doc("docs/operations.md");
    let table = section(&operations, "## Monitoring and alarms")
        .split("Alarms worth setting")
        .next()
        .expect("the metric table");
    for (name, values) in &exported {
        let row = table
            .lines()
            .find(|line| line.starts_with('|') && line.contains(&format!("`{name}")))
            .unwrap_or_else(|| {
                panic!("{name} is exported but not in docs/operations.md's metric table")
            });
        for value in values {
            assert!(
                row.contains(&format!("`{value}`")),
                "{name}{{{value}}} is exported but its row does not name `{value}`: {row}"
            );
        }
    }

    // Every metric name any doc mentions is exported.
    let wrong = unexported_metric_names(&exported);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The repository's top-level directories: a backticked path that starts with one of them
/// names a file or directory of the checkout.
const TOP_LEVEL: [&str; 13] = [
    "allocdb-core/",
    "allocdb-wal/",
    "allocdb-protocol/",
    "allocdb-vsr/",
    "allocdb-client/",
    "allocdb-server/",
    "allocdb-python/",
    "simulator/",
    "deploy/",
    "docs/",
    "examples/",
    ".ci/",
    "src/",
];

#[test]
fn repository_paths_in_the_docs_exist() {
    let root = repo();
    let mut wrong = Vec::new();
    let mut checked = 0_u32;
    for (name, text) in docs() {
        for (_, code) in code_spans(&text) {
            for token in code.split_whitespace() {
                let path = token.trim_matches(|c: char| "()[],;:\"'".contains(c));
                let Some(top) = TOP_LEVEL.iter().find(|top| path.starts_with(*top)) else {
                    continue;
                };
                // Placeholders (`<target>`, `<i>`), globs and generated output are not paths.
                if path.contains(['<', '*', '$', '{']) || path.contains("/artifacts/") {
                    continue;
                }
                // `src/audit.rs` in client.md is the server's: paths under `src/` are relative
                // to the crate the text is about, so try every crate.
                let found = if *top == "src/" {
                    [
                        "allocdb-server",
                        "allocdb-client",
                        "allocdb-core",
                        "simulator",
                    ]
                    .iter()
                    .any(|krate| root.join(krate).join(path).exists())
                } else {
                    root.join(path).exists()
                };
                checked += 1;
                if !found {
                    wrong.push(format!("{name}: {path} does not exist"));
                }
            }
        }
    }
    assert!(
        checked > 50,
        "only {checked} paths found: is the parser broken?"
    );
    wrong.sort();
    wrong.dedup();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
