//! The allocator: the tables, `apply_batch` with its dedupe preamble and retirement passes,
//! and the queries. The commands themselves are in `commands.rs`; the digest, the invariant
//! checks and the snapshot codec each have their own module.

use crate::command::{Bundle, Command, Outcome, Request};
use crate::config::{Config, ConfigError};
use crate::expiry_index::ExpiryIndex;
use crate::fifo::Fifo;
use crate::fingerprint::fingerprint;
use crate::id_map::ROW_NONE;
use crate::ids::{LeaseId, Op, OperationKey, PoolId, ResourceId, Slot, session_id_at};
use crate::lease_table::LeaseTable;
use crate::member_table::MemberTable;
use crate::operation_table::{OperationRow, OperationTable};
use crate::pool_table::PoolTable;
use crate::resource_table::ResourceTable;
use crate::result_code::ResultCode;
use crate::session_table::{Lookup, SessionAnswer, SessionTable};
use crate::views::{LeaseView, PoolStats, ResourceView, TableUsage};

/// The allocator state machine. Every table is allocated once by [`Allocator::new`]; applying
/// commands never allocates, never reads a clock and never depends on hash iteration order.
///
/// ```
/// use allocdb_core::{Allocator, Bundle, Command, Config, Outcome, Request, ResultCode};
///
/// let mut allocator = Allocator::new(Config::small()).unwrap();
/// let requests = [
///     Request { operation_id: 1, command: Command::CreateResource { resource: 7, pool: None } },
///     Request {
///         operation_id: 2,
///         command: Command::Reserve {
///             resources: Bundle::from_slice(&[7]).unwrap(),
///             holder: 42,
///             ttl_slots: 10,
///         },
///     },
/// ];
/// let mut outcomes = [Outcome::code(ResultCode::Ok); 2];
/// allocator.apply_batch(1, 100, &requests, &mut outcomes);
/// assert_eq!(outcomes[1].code, ResultCode::Ok);
/// assert_eq!(outcomes[1].deadline_slot, 110);
/// assert_eq!(allocator.get_resource(7).unwrap().lease, Some(outcomes[1].lease));
/// ```
#[derive(Clone, Debug)]
pub struct Allocator {
    pub(crate) config: Config,
    pub(crate) resources: ResourceTable,
    pub(crate) pools: PoolTable,
    pub(crate) leases: LeaseTable,
    pub(crate) members: MemberTable,
    pub(crate) expiry: ExpiryIndex,
    pub(crate) operations: OperationTable,
    pub(crate) sessions: SessionTable,
    /// Where each request of the last batch executed (its own position, or for a retry the
    /// original execution's): what every answer reports. Scratch, not state.
    executed: Vec<(Op, u32)>,
    executed_len: usize,
    /// Terminal lease rows in the order they became terminal (so in `retire_slot` order).
    pub(crate) history: Fifo<u32>,
    /// Lease-member rows held by the terminal leases in `history`: rows a reserve may reclaim.
    pub(crate) history_member_rows: u32,
    pub(crate) last_op: Op,
    pub(crate) last_slot: Slot,
    /// The largest lease id ever retired; 0 while none has.
    pub(crate) retired_watermark: u128,
}

/// Where a request sits: the lease id it would create and the batch's effective slot.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Position {
    pub(crate) lease: LeaseId,
    pub(crate) slot: Slot,
}

impl Allocator {
    /// Validates `config` and allocates every table.
    ///
    /// # Errors
    /// The [`ConfigError`] naming the first invalid field.
    pub fn new(config: Config) -> Result<Allocator, ConfigError> {
        config.validate()?;
        let allocator = Allocator {
            config,
            resources: ResourceTable::new(config.resources_max),
            pools: PoolTable::new(config.pools_max),
            leases: LeaseTable::new(config.leases_max),
            members: MemberTable::new(config.lease_members_max),
            expiry: ExpiryIndex::new(config.leases_max),
            operations: OperationTable::new(config.operations_max),
            sessions: SessionTable::new(config.clients_max, config.session_requests_max),
            executed: vec![(0, 0); config.batch_requests_max as usize],
            executed_len: 0,
            history: Fifo::new(config.leases_max),
            history_member_rows: 0,
            last_op: 0,
            last_slot: 0,
            retired_watermark: 0,
        };
        assert_eq!(allocator.leases.len(), 0);
        assert_eq!(allocator.members.free_count(), config.lease_members_max);
        Ok(allocator)
    }

    /// The configuration the tables were sized from.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The bytes reserved by every table at construction (capacities times element sizes).
    pub fn memory_bytes_reserved(&self) -> u64 {
        self.resources.memory_bytes()
            + self.pools.memory_bytes()
            + self.leases.memory_bytes()
            + self.members.memory_bytes()
            + self.expiry.memory_bytes()
            + self.operations.memory_bytes()
            + self.sessions.memory_bytes()
            + (self.executed.capacity() * size_of::<(Op, u32)>()) as u64
            + self.history.memory_bytes()
    }

    /// The op of the last applied batch; 0 before any.
    pub fn last_op(&self) -> Op {
        self.last_op
    }

    /// The effective slot of the last applied batch; 0 before any.
    pub fn last_slot(&self) -> Slot {
        self.last_slot
    }

    /// Applies one committed batch: `outcomes[i]` receives the outcome of `requests[i]`.
    ///
    /// `op` must exceed every earlier op (replication guarantees it). A `slot` below the last
    /// one is clamped up to it, so logical time never goes backwards.
    pub fn apply_batch(
        &mut self,
        op: Op,
        slot: Slot,
        requests: &[Request],
        outcomes: &mut [Outcome],
    ) {
        assert_eq!(requests.len(), outcomes.len(), "one outcome per request");
        assert!(
            requests.len() <= self.config.batch_requests_max as usize,
            "batch of {} requests exceeds batch_requests_max {}",
            requests.len(),
            self.config.batch_requests_max
        );
        assert!(
            op > self.last_op,
            "op {op} does not follow {}",
            self.last_op
        );
        let slot_effective = slot.max(self.last_slot);
        self.last_op = op;
        self.last_slot = slot_effective;
        self.operations
            .retire(slot_effective, self.config.dedupe_window_slots);
        self.retire_leases(slot_effective);
        self.warm(requests);
        for (index, (request, outcome)) in requests.iter().zip(outcomes.iter_mut()).enumerate() {
            let index = u32::try_from(index).expect("batch_requests_max fits in u32");
            let position = Position {
                lease: LeaseId::from_position(op, index),
                slot: slot_effective,
            };
            let (applied, executed_at) = self.apply_request(position, request);
            assert!(
                executed_at.0 <= op,
                "a write executed at op {} after {op}",
                executed_at.0
            );
            assert!(applied.retry || executed_at == (op, index));
            *outcome = applied;
            self.executed[index as usize] = executed_at;
            debug_assert!(!outcome.retry || request.operation_id != 0);
        }
        self.executed_len = requests.len();
        assert_eq!(self.last_slot, slot_effective);
    }

    /// Touches the table rows the batch will use before executing it. The lookups of one
    /// batch are independent, so issuing them back to back lets the CPU overlap their cache
    /// misses instead of paying one after the other inside each command. Reads only: it cannot
    /// change any outcome.
    fn warm(&self, requests: &[Request]) {
        let mut touched: u64 = 0;
        for request in requests {
            match request.command {
                Command::Reserve { resources, .. } => {
                    for &id in resources.as_slice() {
                        if let Some(row) = self.resources.find(id) {
                            touched += self.resources.row(row).version;
                        }
                    }
                }
                Command::Activate { lease, .. }
                | Command::Renew { lease, .. }
                | Command::Release { lease, .. }
                | Command::Revoke { lease }
                | Command::Reclaim { lease }
                | Command::Expire { lease, .. } => {
                    if let Some(row) = self.leases.find(lease) {
                        touched += self.leases.row(row).epoch;
                    }
                }
                Command::CreateResource { .. }
                | Command::ReserveAny { .. }
                | Command::RegisterSession { .. } => {}
            }
        }
        std::hint::black_box(touched);
    }

    /// Where request `index` of the last applied batch executed — the op and index of its
    /// batch, or for a retry answered from a stored record those of the original execution.
    /// Every answer reports this position, so answers order by their effects' place in the log.
    pub fn executed_position(&self, index: u32) -> (Op, u32) {
        assert!(
            (index as usize) < self.executed_len,
            "request {index} is not in the last batch ({} requests)",
            self.executed_len
        );
        self.executed[index as usize]
    }

    /// The preamble around one command: the key decides whether it runs, was answered before
    /// (a retry: the stored outcome and where it executed), or is refused. Returns the outcome
    /// and where the command executed.
    fn apply_request(&mut self, position: Position, request: &Request) -> (Outcome, (Op, u32)) {
        let here = (position.lease.op(), position.lease.index());
        let refuse = |code| (Outcome::code(code), here);
        match request.command {
            // Internal, and registration: never deduplicated or recorded; operation id 0.
            Command::Expire {
                lease,
                deadline_slot,
            } => {
                if request.operation_id != 0 {
                    return refuse(ResultCode::InvalidOperationId);
                }
                return (self.expire(position, lease, deadline_slot), here);
            }
            Command::RegisterSession { client } => {
                if request.operation_id != 0 {
                    return refuse(ResultCode::InvalidOperationId);
                }
                let id = session_id_at(here.0, here.1);
                self.sessions.register(id, client, here.0);
                return (Outcome::code(ResultCode::Ok), here);
            }
            _ => {}
        }
        let fingerprint = fingerprint(&request.command);
        match OperationKey::of(request.operation_id) {
            OperationKey::None | OperationKey::Session { request: 0, .. } => {
                refuse(ResultCode::InvalidOperationId)
            }
            OperationKey::Session {
                session,
                request: number,
            } => match self.sessions.lookup(session, number, fingerprint, here.0) {
                Lookup::Execute { row } => {
                    let outcome = self.execute(position, &request.command);
                    self.sessions.record(
                        row,
                        SessionAnswer {
                            request: number,
                            fingerprint,
                            outcome,
                            executed_op: here.0,
                            executed_index: here.1,
                        },
                    );
                    (outcome, here)
                }
                Lookup::Answered(answer) => (
                    Outcome {
                        retry: true,
                        ..answer.outcome
                    },
                    (answer.executed_op, answer.executed_index),
                ),
                Lookup::Refused(code) => refuse(code),
            },
            OperationKey::Application {
                issued_after_op, ..
            } => {
                if let Some(record) = self.operations.find(request.operation_id) {
                    if record.fingerprint != fingerprint {
                        return refuse(ResultCode::OperationConflict);
                    }
                    let outcome = Outcome {
                        retry: true,
                        ..record.outcome
                    };
                    return (outcome, (record.executed_op, record.executed_index));
                }
                // A key claims an op the client had seen committed: one from the future is
                // forged or corrupt; one older than a forgotten record may name it.
                if issued_after_op >= here.0 {
                    return refuse(ResultCode::InvalidOperationId);
                }
                if issued_after_op < self.operations.retired_through {
                    return refuse(ResultCode::OperationExpired);
                }
                let outcome = self.execute(position, &request.command);
                self.operations.insert(OperationRow {
                    id: request.operation_id,
                    fingerprint,
                    outcome,
                    created_slot: position.slot,
                    executed_op: here.0,
                    executed_index: here.1,
                });
                (outcome, here)
            }
        }
    }

    fn execute(&mut self, position: Position, command: &Command) -> Outcome {
        match *command {
            Command::CreateResource { resource, pool } => self.create_resource(resource, pool),
            Command::Reserve {
                resources,
                holder,
                ttl_slots,
            } => self.reserve(position, &resources, holder, ttl_slots),
            Command::ReserveAny {
                pool,
                count,
                holder,
                ttl_slots,
            } => self.reserve_any(position, pool, count, holder, ttl_slots),
            Command::Activate {
                lease,
                holder,
                epoch,
                ttl_slots,
            } => self.activate(position, lease, holder, epoch, ttl_slots),
            Command::Renew {
                lease,
                holder,
                epoch,
                ttl_slots,
            } => self.renew(position, lease, holder, epoch, ttl_slots),
            Command::Release {
                lease,
                holder,
                epoch,
            } => self.release(position, lease, holder, epoch),
            Command::Revoke { lease } => self.revoke(lease),
            Command::Reclaim { lease } => self.reclaim(position, lease),
            Command::Expire { .. } | Command::RegisterSession { .. } => {
                unreachable!("expire and register_session bypass the key preamble")
            }
        }
    }

    /// Frees terminal leases whose history window has ended, oldest first.
    fn retire_leases(&mut self, slot: Slot) {
        while let Some(row) = self.history.front() {
            if self.leases.row(row).retire_slot > slot {
                break;
            }
            self.retire_oldest();
        }
    }

    /// Drops the oldest terminal lease from the history: its row and member rows are freed and
    /// the retired watermark rises to at least its id. Used when its history window has ended
    /// and, best-effort history being bookkeeping, when a reserve needs its rows.
    pub(crate) fn retire_oldest(&mut self) {
        let row = self.history.pop_front().expect("history is not empty");
        let lease = *self.leases.row(row);
        assert!(
            !lease.state.is_live(),
            "live lease {} in history",
            lease.id.0
        );
        assert!(self.history_member_rows >= lease.member_count);
        self.history_member_rows -= lease.member_count;
        self.members.free_chain(lease.members, lease.member_count);
        self.leases.remove(row);
        self.retired_watermark = self.retired_watermark.max(lease.id.0);
    }

    /// Fills `out` with `Expire` requests (operation id 0) for the live leases whose deadline
    /// has passed at `slot` (`deadline < slot`: a lease is held through its deadline slot), in `(deadline, lease id)` order, at most
    /// `min(out.len(), expirations_per_batch_max)`. Returns how many. Allocation-free.
    pub fn due_expirations(&self, slot: Slot, out: &mut [Request]) -> usize {
        let limit = out
            .len()
            .min(self.config.expirations_per_batch_max as usize);
        let count = self.expiry.due(slot, limit, out);
        debug_assert!(out[..count].iter().all(|request| request.operation_id == 0));
        count
    }

    /// Rows in use per table. O(1): every table keeps its own count.
    pub fn table_usage(&self) -> TableUsage {
        let history = self.history.len();
        let members = self.members.rows_max() - self.members.free_count();
        assert!(history <= self.leases.len() && self.history_member_rows <= members);
        let usage = TableUsage {
            resources: self.resources.len(),
            pools: self.pools.len(),
            leases: self.leases.len() - history,
            lease_history: history,
            lease_members: members - self.history_member_rows,
            lease_history_members: self.history_member_rows,
            operations: self.operations.len(),
            sessions: self.sessions.len(),
        };
        debug_assert!(usage.resources <= self.config.resources_max);
        debug_assert!(usage.leases + usage.lease_history <= self.config.leases_max);
        debug_assert!(usage.operations <= self.config.operations_max);
        debug_assert!(usage.sessions <= self.config.clients_max);
        usage
    }

    /// Resolves a lease id to its row: found (live or terminal in the history), retired (an id
    /// the cluster may have issued, at or below the watermark), or not found.
    pub(crate) fn lookup(&self, lease: LeaseId) -> Result<u32, ResultCode> {
        if let Some(row) = self.leases.find(lease) {
            debug_assert_eq!(self.leases.row(row).id, lease);
            return Ok(row);
        }
        // The watermark is 0 until a lease retires, and no lease id is 0.
        if lease.0 <= self.retired_watermark && self.issuable(lease) {
            Err(ResultCode::LeaseRetired)
        } else {
            Err(ResultCode::LeaseNotFound)
        }
    }

    /// Whether a batch could have issued `lease`: a real op (1 or more, at most the last
    /// applied) and an index inside a batch (below `batch_requests_max`). The core cannot
    /// remember every id it issued in bounded memory, so an id that passes this check but
    /// named, say, a `create_resource` is still answered `lease_retired` once at or below the
    /// watermark; an id that fails it (0, op 0, an index no batch reaches) never is.
    fn issuable(&self, lease: LeaseId) -> bool {
        let op = lease.0 >> 32;
        let index = lease.0 & u128::from(u32::MAX);
        op >= 1
            && op <= u128::from(self.last_op)
            && index < u128::from(self.config.batch_requests_max)
    }

    /// One resource.
    ///
    /// # Errors
    /// [`ResultCode::ResourceNotFound`].
    pub fn get_resource(&self, id: ResourceId) -> Result<ResourceView, ResultCode> {
        let row = self
            .resources
            .find(id)
            .ok_or(ResultCode::ResourceNotFound)?;
        let resource = self.resources.row(row);
        let pool = (resource.pool != ROW_NONE).then(|| self.pools.row(resource.pool).id);
        let lease = (resource.lease != ROW_NONE).then(|| self.leases.row(resource.lease).id);
        Ok(ResourceView {
            id,
            pool,
            state: resource.state,
            lease,
            version: resource.version,
        })
    }

    /// One lease, live or terminal inside the history window.
    ///
    /// # Errors
    /// [`ResultCode::LeaseRetired`] for an id at or below the retired watermark,
    /// [`ResultCode::LeaseNotFound`] for one never issued.
    pub fn get_lease(&self, id: LeaseId) -> Result<LeaseView, ResultCode> {
        let row = self.lookup(id)?;
        let lease = self.leases.row(row);
        Ok(LeaseView {
            id,
            holder: lease.holder,
            state: lease.state,
            epoch: lease.epoch,
            resources: self.lease_bundle(row),
            deadline_slot: lease.deadline,
            retire_slot: lease.retire_slot,
        })
    }

    /// The resource ids of a lease, in member order.
    pub(crate) fn lease_bundle(&self, row: u32) -> Bundle {
        let lease = self.leases.row(row);
        let mut rows = [ROW_NONE; crate::command::BUNDLE_SIZE_LIMIT];
        let count = self
            .members
            .read_chain(lease.members, lease.member_count, &mut rows);
        assert_eq!(
            count, lease.member_count as usize,
            "lease {} chain",
            lease.id.0
        );
        let mut bundle = Bundle::EMPTY;
        for &resource in &rows[..count] {
            bundle.push(self.resources.row(resource).id);
        }
        bundle
    }

    /// A pool's size and availability.
    ///
    /// # Errors
    /// [`ResultCode::PoolNotFound`].
    pub fn pool_stats(&self, pool: PoolId) -> Result<PoolStats, ResultCode> {
        let row = self.pools.find(pool).ok_or(ResultCode::PoolNotFound)?;
        let entry = self.pools.row(row);
        debug_assert!(entry.free <= entry.total);
        Ok(PoolStats {
            pool,
            total: entry.total,
            free: entry.free,
        })
    }
}
