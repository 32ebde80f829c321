//! `allocdb client`: one command against a cluster, one JSON line out, a scriptable exit code.
//!
//! Exit status: 0 ok; 1 a definite failure (the cluster refused, e.g. `resource_busy`; no
//! replica could be reached, so nothing was sent; or a read timed out); 2 a usage or
//! configuration error (bad flags or values, a missing setting, a wrong cluster id, an
//! address list that does not match the cluster); 3 an indefinite outcome of a *write*: the
//! deadline passed after it was sent without a definite answer, and running the same command
//! again with the printed `--operation-id` learns what happened. A read never exits 3.
//!
//! A write without `--operation-id` carries a fresh *application key* (not a session key): a
//! one-shot process cannot keep a session, and an application key can be retried from any
//! later process while the cluster remembers it. Making the key registers a session (its op is
//! the committed op the key is issued after); the session is left for eviction.
//!
//! Durations (`--ttl`, `--timeout`) read like `250ms`, `1.5s`, `2m`, `0.5h`; TTLs are converted
//! to the cluster's slots (the slot length comes from the replica's welcome), rounded up.

use std::process::ExitCode;
use std::time::Duration;

use allocdb_client::{CallOptions, Client, ClientError, Committed, ResultCode};
use allocdb_core::{
    Bundle, Command, DEADLINE_NONE, LeaseId, LeaseState, LeaseView, Op, PoolStats, ResourceState,
    ResourceView,
};
use clap::{Args, Subcommand};

use crate::cluster_args::ClusterArgs;
use crate::duration::parse_duration;
use crate::json::JsonLine;
use crate::security_args::parse_role;
use allocdb_client::ClientRole;

/// Exit status of a successful command.
pub const EXIT_OK: u8 = 0;
/// Exit status of a definite failure.
pub const EXIT_DEFINITE_FAILURE: u8 = 1;
/// Exit status of a usage or configuration error.
pub const EXIT_SETUP_ERROR: u8 = 2;
/// Exit status of an indefinite outcome.
pub const EXIT_INDEFINITE: u8 = 3;

/// `allocdb client` arguments.
#[derive(Args, Debug)]
pub struct ClientArgs {
    /// Where the cluster is and how to talk to it (flags over `ALLOCDB_*` variables).
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// The write's idempotency key (an application key); omitted, a fresh one is made and
    /// printed. Repeat an indefinite command with the printed id to learn its outcome.
    ///
    /// Layout (a u128): bit 127 clear; bits 64..127 `issued_after_op`, an op the key's maker
    /// saw committed before the first submission; bits 0..64 a nonce. The cluster remembers a
    /// key's outcome for `--dedupe-window-slots` (at most `--operations-max` keys, oldest
    /// first); a retry after that is answered `operation_expired` and never runs twice. Make
    /// keys with `allocdb client operation-id` just before the first submission. (Ids with bit
    /// 127 set are session keys, used by the client library.)
    #[arg(long)]
    pub operation_id: Option<u128>,
    /// How long to keep trying, connecting included (default 10s).
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Which client certificate in the certificate directory to use: operator or application
    /// (required with TLS; application may not create resources, revoke or reclaim).
    #[arg(long, value_parser = parse_role)]
    pub role: Option<ClientRole>,
    /// The command.
    #[command(subcommand)]
    pub command: ClientCommand,
}

/// The commands of `allocdb client`.
#[derive(Subcommand, Debug, Clone)]
pub enum ClientCommand {
    /// Creates a resource, optionally in a pool.
    CreateResource {
        /// The resource id.
        id: u128,
        /// The pool it joins.
        #[arg(long)]
        pool: Option<u128>,
    },
    /// Reserves every listed resource (a bundle: all or nothing).
    Reserve {
        /// The resources.
        #[arg(required = true)]
        ids: Vec<u128>,
        /// Who holds the lease.
        #[arg(long)]
        holder: u128,
        /// How long the reservation lives unless renewed or activated.
        #[arg(long, value_parser = parse_duration)]
        ttl: Duration,
    },
    /// Reserves `--count` free members of a pool.
    ReserveAny {
        /// The pool.
        pool: u128,
        /// How many members.
        #[arg(long)]
        count: u32,
        /// Who holds the lease.
        #[arg(long)]
        holder: u128,
        /// How long the reservation lives unless renewed or activated.
        #[arg(long, value_parser = parse_duration)]
        ttl: Duration,
    },
    /// Confirms a reservation (without `--ttl`: held until released or revoked).
    Activate {
        /// The lease.
        lease: u128,
        /// Its holder.
        #[arg(long)]
        holder: u128,
        /// Its current epoch.
        #[arg(long)]
        epoch: u64,
        /// The new lifetime.
        #[arg(long, value_parser = parse_duration)]
        ttl: Option<Duration>,
    },
    /// Extends a lease to now + `--ttl`.
    Renew {
        /// The lease.
        lease: u128,
        /// Its holder.
        #[arg(long)]
        holder: u128,
        /// Its current epoch.
        #[arg(long)]
        epoch: u64,
        /// The new lifetime.
        #[arg(long, value_parser = parse_duration)]
        ttl: Duration,
    },
    /// Gives a lease's resources back.
    Release {
        /// The lease.
        lease: u128,
        /// Its holder.
        #[arg(long)]
        holder: u128,
        /// Its current epoch.
        #[arg(long)]
        epoch: u64,
    },
    /// Takes a lease away from its holder (resources stay held until `reclaim`).
    Revoke {
        /// The lease.
        lease: u128,
    },
    /// Frees the resources of a revoked lease.
    Reclaim {
        /// The lease.
        lease: u128,
    },
    /// Reads a resource.
    GetResource {
        /// The resource.
        id: u128,
        /// Read state at least as new as this op (from an earlier write's `op`).
        #[arg(long)]
        min_op: Option<u64>,
    },
    /// Reads a lease.
    GetLease {
        /// The lease.
        id: u128,
        /// Read state at least as new as this op.
        #[arg(long)]
        min_op: Option<u64>,
    },
    /// Prints a fresh application key to pass as `--operation-id` (to store before the first
    /// submission, so a retry from any process learns the outcome).
    OperationId,
    /// Reads a pool's total and free counts.
    Pool {
        /// The pool.
        id: u128,
        /// Read state at least as new as this op.
        #[arg(long)]
        min_op: Option<u64>,
    },
}

/// Runs `allocdb client`: prints one JSON line and returns the exit status.
pub fn run(args: &ClientArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            return emit(
                &failure_line("runtime_error", &error.to_string()),
                EXIT_SETUP_ERROR,
            );
        }
    };
    let (line, status) = runtime.block_on(execute(args));
    emit(&line, status)
}

fn emit(line: &str, status: u8) -> ExitCode {
    crate::outln!("{line}");
    ExitCode::from(status)
}

/// Connects and runs the command; the JSON line and the exit status.
pub async fn execute(args: &ClientArgs) -> (String, u8) {
    let timeout = args.timeout.unwrap_or(Duration::from_secs(10));
    let mut options = match args.cluster.client_options(args.role) {
        Ok(options) => options,
        Err(reason) => {
            eprintln!("error: {reason}");
            return (failure_line("usage", &reason), EXIT_SETUP_ERROR);
        }
    };
    options.call_timeout = timeout;
    let client = match Client::connect(options).await {
        Ok(client) => client,
        Err(error) => return connect_error_line(&error),
    };
    if matches!(args.command, ClientCommand::OperationId) {
        return match client.new_operation_id().await {
            Ok(id) => (
                JsonLine::new()
                    .str("result", "ok")
                    .id("operation_id", id)
                    .u64("issued_after_op", issued_after_op(id))
                    .finish(),
                EXIT_OK,
            ),
            Err(error) => error_line(&error, None),
        };
    }
    match write_command(&client, &args.command) {
        Some(Ok(command)) => {
            let operation_id = match args.operation_id {
                Some(id) => id,
                None => match client.new_operation_id().await {
                    Ok(id) => id,
                    Err(error) => return error_line(&error, None),
                },
            };
            let call = CallOptions {
                operation_id: Some(operation_id),
                timeout: Some(timeout),
            };
            write(&client, &command, call).await
        }
        Some(Err(reason)) => (failure_line("usage", &reason), EXIT_SETUP_ERROR),
        None => read(&client, &args.command).await,
    }
}

/// The line and exit status when no session could be opened: nothing was sent.
fn connect_error_line(error: &ClientError) -> (String, u8) {
    match error {
        // Unusable options, a replica of another cluster, or no replica speaking this
        // client's transport: configuration, not an outage.
        ClientError::Invalid { reason } => (failure_line("config", reason), EXIT_SETUP_ERROR),
        _ => error_line(error, None),
    }
}

/// The core command for a write; `None` for a query.
fn write_command(client: &Client, command: &ClientCommand) -> Option<Result<Command, String>> {
    let slots = |ttl: Duration| client.slots_for(ttl);
    let command = match command {
        ClientCommand::CreateResource { id, pool } => Command::CreateResource {
            resource: *id,
            pool: *pool,
        },
        ClientCommand::Reserve { ids, holder, ttl } => {
            let Some(resources) = Bundle::from_slice(ids) else {
                return Some(Err(format!(
                    "a bundle holds at most {} resources, {} given",
                    allocdb_core::BUNDLE_SIZE_LIMIT,
                    ids.len()
                )));
            };
            Command::Reserve {
                resources,
                holder: *holder,
                ttl_slots: slots(*ttl),
            }
        }
        ClientCommand::ReserveAny {
            pool,
            count,
            holder,
            ttl,
        } => Command::ReserveAny {
            pool: *pool,
            count: *count,
            holder: *holder,
            ttl_slots: slots(*ttl),
        },
        ClientCommand::Activate { .. }
        | ClientCommand::Renew { .. }
        | ClientCommand::Release { .. }
        | ClientCommand::Revoke { .. }
        | ClientCommand::Reclaim { .. } => lease_command(command, slots),
        ClientCommand::GetResource { .. }
        | ClientCommand::GetLease { .. }
        | ClientCommand::Pool { .. }
        | ClientCommand::OperationId => return None,
    };
    Some(Ok(command))
}

/// The core command for a write on an existing lease.
fn lease_command(command: &ClientCommand, slots: impl Fn(Duration) -> u64) -> Command {
    match command {
        ClientCommand::Activate {
            lease,
            holder,
            epoch,
            ttl,
        } => Command::Activate {
            lease: LeaseId(*lease),
            holder: *holder,
            epoch: *epoch,
            ttl_slots: ttl.map(slots),
        },
        ClientCommand::Renew {
            lease,
            holder,
            epoch,
            ttl,
        } => Command::Renew {
            lease: LeaseId(*lease),
            holder: *holder,
            epoch: *epoch,
            ttl_slots: slots(*ttl),
        },
        ClientCommand::Release {
            lease,
            holder,
            epoch,
        } => Command::Release {
            lease: LeaseId(*lease),
            holder: *holder,
            epoch: *epoch,
        },
        ClientCommand::Revoke { lease } => Command::Revoke {
            lease: LeaseId(*lease),
        },
        ClientCommand::Reclaim { lease } => Command::Reclaim {
            lease: LeaseId(*lease),
        },
        _ => unreachable!("only lease commands are passed here"),
    }
}

/// Runs a write; on success, reads the lease back (at the write's op) so the line carries
/// its holder, state and resources too, e.g. which pool members `reserve-any` picked.
async fn write(client: &Client, command: &Command, call: CallOptions) -> (String, u8) {
    match client.write(*command, call).await {
        Ok(committed) => {
            let mut line = committed_line(&committed, ttl_slots(command), client.slot_ms());
            if committed.lease.0 != 0 {
                match client.get_lease(committed.lease, Some(committed.op)).await {
                    Ok(read) => {
                        if committed.retry {
                            // The stored answer executed an unknown time ago, but the read
                            // back carries the cluster's slot now: measure from there.
                            let lease = LeaseView {
                                deadline_slot: committed.deadline_slot,
                                ..read.value
                            };
                            let left = time_left_ms(&lease, read.slot, client.slot_ms());
                            line = line.u64_or_null("deadline_in_ms", left);
                        }
                        line = lease_extras(line, &read.value);
                    }
                    Err(error) => line = line.str("lease_read_error", &error.to_string()),
                }
            }
            (line.finish(), EXIT_OK)
        }
        Err(ClientError::Rejected {
            code: ResultCode::TtlOutOfRange,
            op,
        }) => {
            let message = ttl_message(
                ttl_slots(command).unwrap_or(0),
                client.ttl_slots_max(),
                client.slot_ms(),
            );
            let line = JsonLine::new()
                .str("result", ResultCode::TtlOutOfRange.name())
                .u64("op", op)
                .id_or_null("operation_id", call.operation_id)
                .str("error", &message);
            (line.finish(), EXIT_DEFINITE_FAILURE)
        }
        Err(error) => error_line(&error, call.operation_id),
    }
}

/// The TTL a write asks for, in slots; `None` for a write without one.
fn ttl_slots(command: &Command) -> Option<u64> {
    match command {
        Command::Reserve { ttl_slots, .. }
        | Command::ReserveAny { ttl_slots, .. }
        | Command::Renew { ttl_slots, .. } => Some(*ttl_slots),
        Command::Activate { ttl_slots, .. } => *ttl_slots,
        _ => None,
    }
}

/// Why a TTL was refused, naming the limits: at least one slot, at most the cluster's
/// `ttl_slots_max` (told in the welcome).
fn ttl_message(ttl_slots: u64, ttl_slots_max: u64, slot_ms: u64) -> String {
    let seconds = |slots: u64| Duration::from_millis(slots.saturating_mul(slot_ms)).as_secs_f64();
    format!(
        "--ttl is {ttl_slots} slots ({} s at {slot_ms} ms per slot): a TTL must be at least 1 \
         slot and at most the cluster's ttl_slots_max, {ttl_slots_max} slots ({} s; set by \
         allocdb format --ttl-slots-max)",
        seconds(ttl_slots),
        seconds(ttl_slots_max)
    )
}

async fn read(client: &Client, command: &ClientCommand) -> (String, u8) {
    let result = match command {
        ClientCommand::GetResource { id, min_op } => client
            .get_resource(*id, *min_op)
            .await
            .map(|read| resource_fields(ok_line(read.op), &read.value)),
        ClientCommand::GetLease { id, min_op } => {
            client.get_lease(LeaseId(*id), *min_op).await.map(|read| {
                let left = time_left_ms(&read.value, read.slot, client.slot_ms());
                lease_fields(ok_line(read.op), &read.value, left)
            })
        }
        ClientCommand::Pool { id, min_op } => client
            .pool_stats(*id, *min_op)
            .await
            .map(|read| pool_fields(ok_line(read.op), &read.value)),
        _ => unreachable!("write commands are handled by `write`"),
    };
    match result {
        Ok(line) => (line.finish(), EXIT_OK),
        Err(error) => {
            // A read changes nothing, so its outcome is never unknown: the library reports
            // no indefinite read, and the documented exit statuses promise it.
            assert!(error.is_definite(), "a read is never indefinite: {error}");
            error_line(&error, None)
        }
    }
}

/// The op an application key says it was issued after.
fn issued_after_op(id: u128) -> u64 {
    match allocdb_core::ids::OperationKey::of(id) {
        allocdb_core::ids::OperationKey::Application {
            issued_after_op, ..
        } => issued_after_op,
        _ => 0,
    }
}

fn ok_line(op: Op) -> JsonLine {
    JsonLine::new().str("result", "ok").u64("op", op)
}

fn committed_line(committed: &Committed, ttl_slots: Option<u64>, slot_ms: u64) -> JsonLine {
    // One op is one batch of writes from many connections, so `op` alone does not order two
    // writes (a release and the next grant of its resource may share one): `(op, index)` does.
    let line = ok_line(committed.op)
        .u64("index", u64::from(committed.index))
        .id("operation_id", committed.operation_id)
        .bool("retry", committed.retry);
    if committed.lease.0 == 0 {
        return line;
    }
    let deadline = deadline(committed.deadline_slot);
    // The deadline is the execution slot plus the TTL, so the TTL is the time left when the
    // write executed. A retry's stored answer executed earlier, by an unknown amount: null
    // here, filled in by `write` from the lease read back, which carries a current slot.
    let deadline_in_ms = match (deadline, ttl_slots) {
        (Some(_), Some(ttl_slots)) if !committed.retry => Some(ttl_slots.saturating_mul(slot_ms)),
        _ => None,
    };
    line.id("lease_id", committed.lease.0)
        .u64("epoch", committed.epoch)
        .u64_or_null("deadline", deadline)
        .u64_or_null("deadline_in_ms", deadline_in_ms)
}

/// A deadline slot for printing: `null` when the lease has none (held until released, or
/// finished: released, expired or revoked).
fn deadline(slot: u64) -> Option<u64> {
    (slot != DEADLINE_NONE && slot != 0).then_some(slot)
}

/// How long a live lease with a deadline has left when the cluster is at `now_slot`, in
/// milliseconds (0 once the deadline has passed but the expiry has not committed yet); `None`
/// for a lease without a deadline or a finished one.
fn time_left_ms(lease: &LeaseView, now_slot: u64, slot_ms: u64) -> Option<u64> {
    let live = matches!(
        lease.state,
        LeaseState::Reserved | LeaseState::Active | LeaseState::Revoking
    );
    let deadline = deadline(lease.deadline_slot).filter(|_| live)?;
    Some(deadline.saturating_sub(now_slot).saturating_mul(slot_ms))
}

fn lease_fields(line: JsonLine, lease: &LeaseView, deadline_in_ms: Option<u64>) -> JsonLine {
    let line = line
        .id("lease_id", lease.id.0)
        .u64("epoch", lease.epoch)
        .u64_or_null("deadline", deadline(lease.deadline_slot))
        .u64_or_null("deadline_in_ms", deadline_in_ms);
    lease_extras(line, lease)
}

/// The lease fields a write's outcome does not carry (read back at the write's op).
fn lease_extras(line: JsonLine, lease: &LeaseView) -> JsonLine {
    line.id("holder", lease.holder)
        .str("state", lease_state_name(lease.state))
        .ids("resources", lease.resources.as_slice())
}

fn resource_fields(line: JsonLine, resource: &ResourceView) -> JsonLine {
    line.id("resource_id", resource.id)
        .id_or_null("pool", resource.pool)
        .str("state", resource_state_name(resource.state))
        .id_or_null("lease_id", resource.lease.map(|lease| lease.0))
        .u64("version", resource.version)
}

fn pool_fields(line: JsonLine, pool: &PoolStats) -> JsonLine {
    line.id("pool", pool.pool)
        .u64("total", u64::from(pool.total))
        .u64("free", u64::from(pool.free))
}

/// The line and exit status for a failed call.
fn error_line(error: &ClientError, operation_id: Option<u128>) -> (String, u8) {
    match error {
        ClientError::Rejected { code, op } => {
            let line = JsonLine::new().str("result", code.name()).u64("op", *op);
            let line = match operation_id {
                Some(id) => line.id("operation_id", id),
                None => line,
            };
            let line = line.str("error", &format!("the cluster refused: {error}"));
            (line.finish(), EXIT_DEFINITE_FAILURE)
        }
        ClientError::Indefinite { operation_id } => (
            JsonLine::new()
                .str("result", "indefinite")
                .id("operation_id", *operation_id)
                .str("error", &error.to_string())
                .finish(),
            EXIT_INDEFINITE,
        ),
        // A read changes nothing: its timeout is a definite failure, never indefinite.
        ClientError::Timeout => (
            failure_line("timeout", &error.to_string()),
            EXIT_DEFINITE_FAILURE,
        ),
        ClientError::Closed {
            operation_id: Some(id),
        } => (
            JsonLine::new()
                .str("result", "indefinite")
                .id("operation_id", *id)
                .str("error", &error.to_string())
                .finish(),
            EXIT_INDEFINITE,
        ),
        ClientError::Invalid { .. } => (
            failure_line("invalid", &error.to_string()),
            EXIT_DEFINITE_FAILURE,
        ),
        ClientError::AddressList { .. } => (
            failure_line("address_list", &error.to_string()),
            EXIT_SETUP_ERROR,
        ),
        ClientError::Forbidden { .. } => (
            failure_line("forbidden", &error.to_string()),
            EXIT_DEFINITE_FAILURE,
        ),
        ClientError::Unavailable { .. } | ClientError::Closed { operation_id: None } => (
            failure_line("unavailable", &error.to_string()),
            EXIT_DEFINITE_FAILURE,
        ),
    }
}

fn failure_line(result: &str, error: &str) -> String {
    JsonLine::new()
        .str("result", result)
        .str("error", error)
        .finish()
}

/// A lease state's name as printed.
pub fn lease_state_name(state: LeaseState) -> &'static str {
    match state {
        LeaseState::Reserved => "reserved",
        LeaseState::Active => "active",
        LeaseState::Revoking => "revoking",
        LeaseState::Released => "released",
        LeaseState::Expired => "expired",
        LeaseState::Revoked => "revoked",
    }
}

/// A resource state's name as printed.
pub fn resource_state_name(state: ResourceState) -> &'static str {
    match state {
        ResourceState::Available => "available",
        ResourceState::Reserved => "reserved",
        ResourceState::Active => "active",
        ResourceState::Revoking => "revoking",
    }
}

#[cfg(test)]
mod tests {
    use allocdb_core::{Bundle, DEADLINE_NONE, LeaseId, LeaseState, LeaseView};

    use super::time_left_ms;

    #[test]
    fn time_left_counts_from_the_answer_slot_and_only_for_live_deadlines() {
        // (state, deadline slot, answered at slot, expected ms at 10 ms per slot)
        let cases = [
            (LeaseState::Reserved, 150, 100, Some(500)),
            (LeaseState::Active, 150, 150, Some(0)),
            // Past the deadline, expiry not yet committed: nothing left, never negative.
            (LeaseState::Reserved, 150, 170, Some(0)),
            (LeaseState::Revoking, 101, 100, Some(10)),
            (LeaseState::Active, DEADLINE_NONE, 100, None),
            (LeaseState::Released, 0, 100, None),
            (LeaseState::Expired, 150, 100, None),
            (LeaseState::Revoked, 150, 100, None),
        ];
        for (state, deadline_slot, now_slot, expected) in cases {
            let lease = LeaseView {
                id: LeaseId(1),
                holder: 2,
                state,
                epoch: 1,
                resources: Bundle::from_slice(&[3]).expect("one resource"),
                deadline_slot,
                retire_slot: 0,
            };
            assert_eq!(
                time_left_ms(&lease, now_slot, 10),
                expected,
                "{state:?} {deadline_slot} {now_slot}"
            );
        }
    }
}
