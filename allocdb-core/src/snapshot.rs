//! Snapshots: the allocator's full logical state in a versioned, checksummed byte format, from
//! which `decode_snapshot` rebuilds an allocator that continues *exactly* as the original
//! would (same outcomes, same digest) for any further batches.
//!
//! Layout (little-endian, through [`crate::wire`]):
//! ```text
//! magic u64 | format version u32 | body length u64 | crc32c(body) u32 | body
//! body: config | last_op u64 | last_slot u64 | retired watermark u128
//!       pools:      count u32, then per pool: id u128
//!       resources:  count u32, then per resource: id u128, pool index u32 (or u32::MAX), version u64
//!       free lists: per pool: count u32, then resource indices u32 in list order
//!       leases:     count u32, then per lease: id u128, holder u128, state u8, epoch u64,
//!                   deadline u64, retire slot u64, member count u8, resource indices u32
//!       history:    count u32, then lease indices u32 in retirement order
//!       operations: count u32, then per record (oldest first): id u128, fingerprint u128,
//!                   code u8, lease u128, epoch u64, deadline u64, created slot u64,
//!                   executed op u64, executed index u32
//!       retired through u64 (the newest op of a retired operation record)
//!       sessions:   count u32, then per session: id u64, client u128, highest u64, used op u64,
//!                   answer count u32, then per answer: request u64, fingerprint u128,
//!                   code u8, lease u128, epoch u64, deadline u64, executed op u64,
//!                   executed index u32
//! ```
//! Resource states and leases, pool totals, and the expiry index are derived on decode from
//! the leases, so they cannot disagree with them. Table layout (rows, heap order) is not
//! saved: it is not observable.

use crate::allocator::Allocator;
use crate::command::{BUNDLE_SIZE_LIMIT, DEADLINE_NONE, Outcome};
use crate::config::{Config, ConfigError};
use crate::id_map::ROW_NONE;
use crate::ids::LeaseId;
use crate::invariants::InvariantViolation;
use crate::lease_table::LeaseRow;
use crate::operation_table::OperationRow;
use crate::result_code::ResultCode;
use crate::views::{LeaseState, ResourceState};
use crate::wire::{DecodeError, Reader, Writer};

/// "ALLOCSNP" as a little-endian u64.
pub const SNAPSHOT_MAGIC: u64 = u64::from_le_bytes(*b"ALLOCSNP");
/// The snapshot format this build writes and reads.
///
/// Version 2: the table capacities at the start of the body, written since version 1, are
/// binding (a snapshot loads only into tables of exactly its sizes); version 1 readers
/// ignored them, so a version 1 snapshot may come from differently sized tables.
///
/// Version 4: client sessions and the operation table's retirement watermark.
pub const SNAPSHOT_VERSION: u32 = 4;
/// Bytes before the body: magic, version, body length, checksum.
const HEADER_BYTES: usize = 8 + 4 + 8 + 4;

/// Why a snapshot was refused. Decoding never panics, whatever the bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnapshotError {
    /// The bytes are truncated or a field holds a value no encoder writes.
    Decode(DecodeError),
    /// The bytes do not start with [`SNAPSHOT_MAGIC`].
    BadMagic {
        /// The first eight bytes, as a little-endian u64.
        found: u64,
    },
    /// The format version is not [`SNAPSHOT_VERSION`].
    UnsupportedVersion {
        /// The version found.
        found: u32,
    },
    /// The body's crc32c does not match the header.
    Checksum {
        /// The checksum in the header.
        stored: u32,
        /// The checksum of the body read.
        computed: u32,
    },
    /// The configuration given to decode is itself invalid.
    Config(ConfigError),
    /// A table size or behavioural bound differs between the snapshot and the given config.
    ConfigMismatch {
        /// The config field.
        field: &'static str,
        /// Its value in the snapshot.
        snapshot: u64,
        /// Its value in the given config.
        config: u64,
    },
    /// The snapshot holds more rows than a table of the given config.
    DoesNotFit {
        /// The table.
        table: &'static str,
        /// Rows the snapshot needs.
        rows: u64,
        /// Rows the config provides.
        capacity: u64,
    },
    /// The content is well formed but contradicts itself (a broken invariant).
    Inconsistent(InvariantViolation),
}

impl std::fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnapshotError::Decode(error) => write!(f, "snapshot: {error}"),
            SnapshotError::BadMagic { found } => write!(f, "snapshot: bad magic {found:#018x}"),
            SnapshotError::UnsupportedVersion { found } => write!(
                f,
                "snapshot: format version {found}, this build reads {SNAPSHOT_VERSION}"
            ),
            SnapshotError::Checksum { stored, computed } => write!(
                f,
                "snapshot: body checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ),
            SnapshotError::Config(error) => write!(f, "snapshot: {error}"),
            SnapshotError::ConfigMismatch {
                field,
                snapshot,
                config,
            } => write!(
                f,
                "snapshot: taken with {field} = {snapshot}, but the config has {config}"
            ),
            SnapshotError::DoesNotFit {
                table,
                rows,
                capacity,
            } => write!(
                f,
                "snapshot: {table} needs {rows} rows, the config provides {capacity}"
            ),
            SnapshotError::Inconsistent(violation) => write!(f, "snapshot: {violation}"),
        }
    }
}

impl std::error::Error for SnapshotError {}

impl From<DecodeError> for SnapshotError {
    fn from(error: DecodeError) -> SnapshotError {
        SnapshotError::Decode(error)
    }
}

fn inconsistent(invariant: &'static str, detail: String) -> SnapshotError {
    SnapshotError::Inconsistent(InvariantViolation { invariant, detail })
}

fn fits(table: &'static str, rows: u32, capacity: u32) -> Result<(), SnapshotError> {
    if rows > capacity {
        return Err(SnapshotError::DoesNotFit {
            table,
            rows: u64::from(rows),
            capacity: u64::from(capacity),
        });
    }
    Ok(())
}

/// The config fields that change behaviour, not just capacity: they must match exactly.
fn behaviour_fields(config: &Config) -> [(&'static str, u64); 6] {
    [
        ("bundle_size_max", u64::from(config.bundle_size_max)),
        ("ttl_slots_max", config.ttl_slots_max),
        ("dedupe_window_slots", config.dedupe_window_slots),
        ("lease_history_slots", config.lease_history_slots),
        (
            "expirations_per_batch_max",
            u64::from(config.expirations_per_batch_max),
        ),
        ("batch_requests_max", u64::from(config.batch_requests_max)),
    ]
}

/// The table capacities. They change behaviour too (a full table answers `*_table_full`), so
/// a snapshot loads only into tables of exactly its sizes: replicas with other sizes would
/// answer the same batch differently and diverge.
fn capacity_fields(config: &Config) -> [(&'static str, u32); 7] {
    [
        ("resources_max", config.resources_max),
        ("pools_max", config.pools_max),
        ("leases_max", config.leases_max),
        ("lease_members_max", config.lease_members_max),
        ("operations_max", config.operations_max),
        ("clients_max", config.clients_max),
        ("session_requests_max", config.session_requests_max),
    ]
}

impl Allocator {
    /// Appends a snapshot of the full state to `out`.
    pub fn encode_snapshot(&self, out: &mut Vec<u8>) {
        let start = out.len();
        let mut writer = Writer::new(out);
        writer.u64(SNAPSHOT_MAGIC);
        writer.u32(SNAPSHOT_VERSION);
        writer.u64(0); // Body length, patched below.
        writer.u32(0); // Checksum, patched below.
        let body_start = writer.len();
        self.encode_body(&mut writer);
        let body_len = u64::try_from(writer.len() - body_start).expect("usize fits in u64");
        // Truncations are intended: the two halves of the u64 length.
        #[allow(clippy::cast_possible_truncation)]
        let (low, high) = (body_len as u32, (body_len >> 32) as u32);
        writer.patch_u32(start + 12, low);
        writer.patch_u32(start + 16, high);
        let checksum = crc32c::crc32c(&out[body_start..]);
        Writer::new(out).patch_u32(start + 20, checksum);
        debug_assert_eq!(out.len() - start, HEADER_BYTES + (out.len() - body_start));
    }

    fn encode_body(&self, writer: &mut Writer<'_>) {
        for (_, value) in capacity_fields(&self.config) {
            writer.u32(value);
        }
        for (_, value) in behaviour_fields(&self.config) {
            writer.u64(value);
        }
        writer.u64(self.last_op);
        writer.u64(self.last_slot);
        writer.u128(self.retired_watermark);
        writer.u32(self.pools.len());
        for pool in &self.pools.rows {
            writer.u128(pool.id);
        }
        writer.u32(self.resources.len());
        for resource in &self.resources.rows {
            writer.u128(resource.id);
            writer.u32(resource.pool);
            writer.u64(resource.version);
        }
        for pool in &self.pools.rows {
            writer.u32(pool.free);
            let mut member = pool.head;
            for _ in 0..pool.free {
                writer.u32(member);
                member = self.resources.row(member).free_next;
            }
            assert_eq!(
                member, ROW_NONE,
                "pool {} free list is longer than free",
                pool.id
            );
        }
        self.encode_leases(writer);
        writer.u32(self.operations.fifo.len());
        for row in self.operations.fifo.iter() {
            let record = self.operations.row(row);
            writer.u128(record.id);
            writer.u128(record.fingerprint);
            write_outcome(writer, &record.outcome);
            writer.u64(record.created_slot);
            writer.u64(record.executed_op);
            writer.u32(record.executed_index);
        }
        writer.u64(self.operations.retired_through);
        self.encode_sessions(writer);
    }

    fn encode_sessions(&self, writer: &mut Writer<'_>) {
        writer.u32(self.sessions.len());
        for row in self.sessions.used_rows() {
            let session = self.sessions.row(row);
            writer.u64(session.id);
            writer.u128(session.client);
            writer.u64(session.highest);
            writer.u64(session.used_op);
            let ring = self.sessions.ring(row);
            let stored = ring.iter().filter(|answer| answer.request != 0).count();
            writer.u32(u32::try_from(stored).expect("a ring holds at most a u32 of answers"));
            for answer in ring.iter().filter(|answer| answer.request != 0) {
                writer.u64(answer.request);
                writer.u128(answer.fingerprint);
                write_outcome(writer, &answer.outcome);
                writer.u64(answer.executed_op);
                writer.u32(answer.executed_index);
            }
        }
    }

    fn encode_leases(&self, writer: &mut Writer<'_>) {
        // Leases are written in row order; `index_of_row` maps rows to their index in the file.
        let mut index_of_row = vec![ROW_NONE; self.leases.rows_max() as usize];
        let mut index = 0_u32;
        writer.u32(self.leases.len());
        for row in 0..self.leases.rows_max() {
            let lease = self.leases.row(row);
            if !lease.used {
                continue;
            }
            index_of_row[row as usize] = index;
            index += 1;
            writer.u128(lease.id.0);
            writer.u128(lease.holder);
            writer.u8(lease.state as u8);
            writer.u64(lease.epoch);
            writer.u64(lease.deadline);
            writer.u64(lease.retire_slot);
            let mut rows = [ROW_NONE; BUNDLE_SIZE_LIMIT];
            let count = self
                .members
                .read_chain(lease.members, lease.member_count, &mut rows);
            writer.u8(u8::try_from(count).expect("bundle length fits in u8"));
            for &member in &rows[..count] {
                writer.u32(member);
            }
        }
        assert_eq!(index, self.leases.len());
        writer.u32(self.history.len());
        for row in self.history.iter() {
            writer.u32(index_of_row[row as usize]);
        }
    }

    /// Rebuilds an allocator from a snapshot, sized by `config`.
    ///
    /// # Errors
    /// A [`SnapshotError`] naming what is wrong: the bytes, the checksum, the format, a config
    /// the snapshot does not fit, or content that breaks an invariant. Never panics.
    pub fn decode_snapshot(config: Config, bytes: &[u8]) -> Result<Allocator, SnapshotError> {
        let mut reader = Reader::new(bytes);
        let magic = reader.u64("snapshot magic")?;
        if magic != SNAPSHOT_MAGIC {
            return Err(SnapshotError::BadMagic { found: magic });
        }
        let version = reader.u32("snapshot version")?;
        if version != SNAPSHOT_VERSION {
            return Err(SnapshotError::UnsupportedVersion { found: version });
        }
        let body_len = reader.u64("snapshot body length")?;
        let stored = reader.u32("snapshot checksum")?;
        let body_len = usize::try_from(body_len)
            .ok()
            .filter(|&len| len == reader.remaining())
            .ok_or(DecodeError::Invalid {
                what: "snapshot body length",
                offset: 12,
                value: body_len,
            })?;
        let body = reader.take("snapshot body", body_len)?;
        let computed = crc32c::crc32c(body);
        if computed != stored {
            return Err(SnapshotError::Checksum { stored, computed });
        }
        config.validate().map_err(SnapshotError::Config)?;
        let mut reader = Reader::new(body);
        let mut allocator = decode_config(config, &mut reader)?;
        allocator.last_op = reader.u64("last op")?;
        allocator.last_slot = reader.u64("last slot")?;
        allocator.retired_watermark = reader.u128("retired watermark")?;
        allocator.decode_pools_and_resources(&mut reader)?;
        let lease_rows = allocator.decode_leases(&mut reader)?;
        allocator.decode_history(&mut reader, &lease_rows)?;
        allocator.decode_operations(&mut reader)?;
        allocator.decode_sessions(&mut reader)?;
        reader.finish()?;
        allocator
            .find_violation()
            .map_err(SnapshotError::Inconsistent)?;
        Ok(allocator)
    }

    fn decode_pools_and_resources(&mut self, reader: &mut Reader<'_>) -> Result<(), SnapshotError> {
        let pools = reader.u32("pool count")?;
        fits("pools", pools, self.config.pools_max)?;
        for _ in 0..pools {
            let id = reader.u128("pool id")?;
            if self.pools.find(id).is_some() {
                return Err(inconsistent("pool ids unique", format!("pool {id} twice")));
            }
            self.pools.insert(id);
        }
        let resources = reader.u32("resource count")?;
        fits("resources", resources, self.config.resources_max)?;
        for _ in 0..resources {
            let id = reader.u128("resource id")?;
            let offset = reader.offset();
            let pool = reader.u32("resource pool")?;
            let version = reader.u64("resource version")?;
            if pool != ROW_NONE && pool >= pools {
                let value = u64::from(pool);
                return Err(DecodeError::Invalid {
                    what: "resource pool",
                    offset,
                    value,
                }
                .into());
            }
            if self.resources.find(id).is_some() {
                return Err(inconsistent(
                    "resource ids unique",
                    format!("resource {id} twice"),
                ));
            }
            let row = self.resources.insert(id, pool);
            self.resources.row_mut(row).version = version;
            if pool != ROW_NONE {
                self.pools.add_member(pool);
            }
        }
        for pool in 0..pools {
            let free = reader.count("pool free count", self.pools.row(pool).total)?;
            for _ in 0..free {
                let offset = reader.offset();
                let member = reader.u32("pool free member")?;
                let resource = self.resources.rows.get(member as usize);
                let unlinked = resource.is_some_and(|resource| {
                    resource.pool == pool
                        && resource.free_prev == ROW_NONE
                        && self.pools.row(pool).head != member
                });
                if !unlinked {
                    let value = u64::from(member);
                    return Err(DecodeError::Invalid {
                        what: "pool free member",
                        offset,
                        value,
                    }
                    .into());
                }
                self.pools.push_free(pool, &mut self.resources.rows, member);
            }
        }
        Ok(())
    }

    /// Decodes the leases; returns the row each file index landed in.
    fn decode_leases(&mut self, reader: &mut Reader<'_>) -> Result<Vec<u32>, SnapshotError> {
        let count = reader.u32("lease count")?;
        fits("leases", count, self.config.leases_max)?;
        let mut rows = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let id = LeaseId(reader.u128("lease id")?);
            let holder = reader.u128("lease holder")?;
            let offset = reader.offset();
            let state_value = reader.u8("lease state")?;
            let state = LeaseState::from_u8(state_value).ok_or(DecodeError::Invalid {
                what: "lease state",
                offset,
                value: u64::from(state_value),
            })?;
            let epoch = reader.u64("lease epoch")?;
            let deadline = reader.u64("lease deadline")?;
            let retire_slot = reader.u64("lease retire slot")?;
            let offset = reader.offset();
            let member_count = reader.u8("lease member count")?;
            if member_count == 0 || u32::from(member_count) > self.config.bundle_size_max {
                let value = u64::from(member_count);
                return Err(DecodeError::Invalid {
                    what: "lease member count",
                    offset,
                    value,
                }
                .into());
            }
            let mut members = [ROW_NONE; BUNDLE_SIZE_LIMIT];
            for member in &mut members[..usize::from(member_count)] {
                let offset = reader.offset();
                *member = reader.u32("lease member")?;
                if *member as usize >= self.resources.rows.len() {
                    let value = u64::from(*member);
                    return Err(DecodeError::Invalid {
                        what: "lease member",
                        offset,
                        value,
                    }
                    .into());
                }
            }
            let members = &members[..usize::from(member_count)];
            if self.leases.find(id).is_some() {
                return Err(inconsistent(
                    "lease ids unique",
                    format!("lease {} twice", id.0),
                ));
            }
            let members_needed = u32::from(member_count);
            if self.members.free_count() < members_needed {
                let used = self.members.rows_max() - self.members.free_count() + members_needed;
                fits("lease_members", used, self.members.rows_max())?;
            }
            let chain = self.members.alloc_chain(members);
            let lease = LeaseRow {
                id,
                holder,
                epoch,
                deadline,
                retire_slot,
                members: chain,
                member_count: members_needed,
                state,
                used: true,
            };
            let row = self.leases.insert(lease);
            rows.push(row);
            if let Some(resource_state) = state.resource_state() {
                self.hold_members(row, id, members, resource_state)?;
            }
        }
        Ok(rows)
    }

    /// Gives the members of a decoded live lease to it; each must be free and off its pool's
    /// free list.
    fn hold_members(
        &mut self,
        row: u32,
        id: LeaseId,
        members: &[u32],
        state: ResourceState,
    ) -> Result<(), SnapshotError> {
        for &member in members {
            let resource = self.resources.row(member);
            let on_free_list = resource.pool != ROW_NONE
                && (resource.free_prev != ROW_NONE || self.pools.row(resource.pool).head == member);
            if resource.lease != ROW_NONE || on_free_list {
                let detail = format!(
                    "resource {} in live lease {} is held or free",
                    resource.id, id.0
                );
                return Err(inconsistent("one live lease per resource", detail));
            }
            let resource = self.resources.row_mut(member);
            resource.lease = row;
            resource.state = state;
        }
        let deadline = self.leases.row(row).deadline;
        if deadline != DEADLINE_NONE {
            self.expiry.insert(row, deadline, id);
        }
        Ok(())
    }

    fn decode_history(
        &mut self,
        reader: &mut Reader<'_>,
        lease_rows: &[u32],
    ) -> Result<(), SnapshotError> {
        let offset = reader.offset();
        let count = reader.u32("history count")?;
        if count as usize > lease_rows.len() {
            let value = u64::from(count);
            return Err(DecodeError::Invalid {
                what: "history count",
                offset,
                value,
            }
            .into());
        }
        let mut seen = vec![false; lease_rows.len()];
        for _ in 0..count {
            let offset = reader.offset();
            let index = reader.u32("history lease")?;
            let row = lease_rows.get(index as usize).copied();
            let terminal = row.is_some_and(|row| !self.leases.row(row).state.is_live());
            if !terminal || seen[index as usize] {
                let value = u64::from(index);
                return Err(DecodeError::Invalid {
                    what: "history lease",
                    offset,
                    value,
                }
                .into());
            }
            seen[index as usize] = true;
            let row = row.expect("checked above");
            self.history.push_back(row);
            self.history_member_rows += self.leases.row(row).member_count;
        }
        Ok(())
    }

    fn decode_operations(&mut self, reader: &mut Reader<'_>) -> Result<(), SnapshotError> {
        let count = reader.u32("operation count")?;
        fits("operations", count, self.config.operations_max)?;
        let mut previous_created = 0;
        for _ in 0..count {
            let id = reader.u128("operation id")?;
            let fingerprint = reader.u128("operation fingerprint")?;
            let outcome = read_outcome(reader)?;
            let created_slot = reader.u64("operation created slot")?;
            let executed_op = reader.u64("operation executed op")?;
            let executed_index = reader.u32("operation executed index")?;
            if executed_op == 0
                || executed_op > self.last_op
                || executed_index >= self.config.batch_requests_max
            {
                return Err(inconsistent(
                    "operations executed at a position of the log so far",
                    format!("operation {id} at op {executed_op} index {executed_index}"),
                ));
            }
            if id == 0 || self.operations.find(id).is_some() {
                return Err(inconsistent(
                    "operation ids unique and non-zero",
                    format!("operation {id}"),
                ));
            }
            if created_slot < previous_created || created_slot > self.last_slot {
                let detail =
                    format!("operation {id} created at {created_slot}, after {previous_created}");
                return Err(inconsistent(
                    "operation records in window and order",
                    detail,
                ));
            }
            previous_created = created_slot;
            self.operations.insert(OperationRow {
                id,
                fingerprint,
                outcome,
                created_slot,
                executed_op,
                executed_index,
            });
        }
        let retired_through = reader.u64("operations retired through")?;
        if retired_through > self.last_op {
            return Err(inconsistent(
                "operation records retired at ops of the log so far",
                format!(
                    "retired through op {retired_through}, last op {}",
                    self.last_op
                ),
            ));
        }
        self.operations.retired_through = retired_through;
        Ok(())
    }

    fn decode_sessions(&mut self, reader: &mut Reader<'_>) -> Result<(), SnapshotError> {
        let count = reader.u32("session count")?;
        fits("sessions", count, self.config.clients_max)?;
        let window = u64::from(self.config.session_requests_max);
        let mut answers = Vec::new();
        // One flag per ring slot, reset after each session: a duplicate slot is found in
        // O(1) rather than by scanning the session's earlier answers.
        let mut taken = vec![false; self.config.session_requests_max as usize];
        for _ in 0..count {
            let id = reader.u64("session id")?;
            let client = reader.u128("session client")?;
            let highest = reader.u64("session highest request")?;
            let used_op = reader.u64("session used op")?;
            if id == 0 || self.sessions.find(id).is_some() || used_op > self.last_op {
                return Err(inconsistent(
                    "sessions unique, non-zero and used at ops of the log so far",
                    format!("session {id} used at op {used_op}"),
                ));
            }
            let stored = reader.u32("session answer count")?;
            fits("session answers", stored, self.config.session_requests_max)?;
            answers.clear();
            for _ in 0..stored {
                let request = reader.u64("answer request")?;
                let fingerprint = reader.u128("answer fingerprint")?;
                let outcome = read_outcome(reader)?;
                let executed_op = reader.u64("answer executed op")?;
                let executed_index = reader.u32("answer executed index")?;
                let in_window = request <= highest;
                let slot = usize::try_from(request % window).expect("below the window");
                let slot_taken = std::mem::replace(&mut taken[slot], true);
                if request == 0
                    || !in_window
                    || slot_taken
                    || executed_op == 0
                    || executed_op > self.last_op
                    || executed_index >= self.config.batch_requests_max
                {
                    return Err(inconsistent(
                        "session answers up to the highest, one per slot, at log positions",
                        format!(
                            "session {id} request {request} (highest {highest}) at op \
                             {executed_op} index {executed_index}"
                        ),
                    ));
                }
                answers.push(crate::session_table::SessionAnswer {
                    request,
                    fingerprint,
                    outcome,
                    executed_op,
                    executed_index,
                });
            }
            let session = crate::session_table::SessionRow {
                id,
                client,
                highest,
                used_op,
            };
            for answer in &answers {
                taken[usize::try_from(answer.request % window).expect("below the window")] = false;
            }
            self.sessions.restore(session, &answers);
        }
        Ok(())
    }
}

fn write_outcome(writer: &mut Writer<'_>, outcome: &Outcome) {
    debug_assert!(!outcome.retry, "stored outcomes are never retries");
    writer.u8(outcome.code as u8);
    writer.u128(outcome.lease.0);
    writer.u64(outcome.epoch);
    writer.u64(outcome.deadline_slot);
}

fn read_outcome(reader: &mut Reader<'_>) -> Result<Outcome, DecodeError> {
    let offset = reader.offset();
    let code_value = reader.u8("stored result code")?;
    let code = ResultCode::from_u8(code_value).ok_or(DecodeError::Invalid {
        what: "stored result code",
        offset,
        value: u64::from(code_value),
    })?;
    Ok(Outcome {
        code,
        retry: false,
        lease: LeaseId(reader.u128("stored lease")?),
        epoch: reader.u64("stored epoch")?,
        deadline_slot: reader.u64("stored deadline")?,
    })
}

/// Reads the snapshot's config and builds an empty allocator from `config` if it fits.
fn decode_config(config: Config, reader: &mut Reader<'_>) -> Result<Allocator, SnapshotError> {
    let mut capacities = [0_u32; 7];
    for value in &mut capacities {
        *value = reader.u32("snapshot config capacity")?;
    }
    let mut behaviour = [0_u64; 6];
    for value in &mut behaviour {
        *value = reader.u64("snapshot config bound")?;
    }
    let capacities = capacity_fields(&config)
        .into_iter()
        .zip(capacities)
        .map(|((field, expected), found)| (field, u64::from(expected), u64::from(found)));
    let behaviour = behaviour_fields(&config)
        .into_iter()
        .zip(behaviour)
        .map(|((field, expected), found)| (field, expected, found));
    for (field, expected, found) in capacities.chain(behaviour) {
        if expected != found {
            return Err(SnapshotError::ConfigMismatch {
                field,
                snapshot: found,
                config: expected,
            });
        }
    }
    // Equal capacities do not make the content fit: a corrupt-but-checksummed row count is
    // still checked against `config` by each section as it is read.
    Allocator::new(config).map_err(SnapshotError::Config)
}
