//! The reference model: the semantics of `notes/core-spec.md` written as plainly as possible
//! over `BTreeMap`, `VecDeque` and `Vec`, sharing no code with the allocator's tables. Clarity
//! beats speed here: every rule is a direct transcription, checked in the order the spec lists.

use std::collections::{BTreeMap, VecDeque};

use allocdb_core::{
    Bundle, Command, Config, DEADLINE_NONE, HolderId, LeaseId, LeaseState, LeaseView, Op,
    OperationId, OperationKey, Outcome, PoolId, PoolStats, Request, ResourceId, ResourceState,
    ResourceView, ResultCode, SessionId, Slot, session_id_at,
};

/// Deliberate bugs, used once each to show the comparison catches a wrong implementation.
#[derive(Clone, Copy, Debug, Default)]
pub struct Flaws {
    /// Accept any epoch in activate, renew and release.
    pub skip_epoch_check: bool,
    /// Return freed resources to the head of their pool's free list instead of the tail.
    pub free_to_head: bool,
}

struct ModelResource {
    pool: Option<PoolId>,
    state: ResourceState,
    lease: Option<LeaseId>,
    version: u64,
}

pub struct ModelLease {
    pub holder: HolderId,
    pub state: LeaseState,
    pub epoch: u64,
    resources: Vec<ResourceId>,
    /// Live: the deadline or `DEADLINE_NONE`. Terminal: 0.
    pub deadline_slot: Slot,
    /// Live: 0. Terminal: terminal slot + `lease_history_slots`.
    retire_slot: Slot,
    /// Terminal: how many leases ended before it (history is dropped in this order).
    ended_seq: u64,
}

struct OperationRecord {
    command: Command,
    outcome: Outcome,
    created_slot: Slot,
    /// Insertion order: a full table forgets the lowest first.
    seq: u64,
    executed: (Op, u32),
}

/// A session as the spec states it: every answer is kept until a later request number with
/// the same remainder modulo the window is executed.
struct ModelSession {
    highest: u64,
    used_op: Op,
    answers: BTreeMap<u64, (Command, Outcome, (Op, u32))>,
}

pub struct Model {
    config: Config,
    flaws: Flaws,
    last_op: Op,
    last_slot: Slot,
    resources: BTreeMap<ResourceId, ModelResource>,
    /// Per pool: members ever created, and the free list, head first.
    pools: BTreeMap<PoolId, (u32, VecDeque<ResourceId>)>,
    leases: BTreeMap<LeaseId, ModelLease>,
    operations: BTreeMap<OperationId, OperationRecord>,
    operations_seq: u64,
    /// The newest op at which a forgotten operation record had executed.
    retired_through: Op,
    sessions: BTreeMap<SessionId, ModelSession>,
    /// Where each request of the last batch executed.
    positions: Vec<(Op, u32)>,
    retired_max: Option<LeaseId>,
    /// Leases ended so far: the next `ended_seq`.
    ended_count: u64,
}

fn ok(lease: LeaseId, epoch: u64, deadline_slot: Slot) -> Outcome {
    Outcome {
        code: ResultCode::Ok,
        retry: false,
        lease,
        epoch,
        deadline_slot,
    }
}

impl Model {
    pub fn new(config: Config, flaws: Flaws) -> Model {
        Model {
            config,
            flaws,
            last_op: 0,
            last_slot: 0,
            resources: BTreeMap::new(),
            pools: BTreeMap::new(),
            leases: BTreeMap::new(),
            operations: BTreeMap::new(),
            operations_seq: 0,
            retired_through: 0,
            sessions: BTreeMap::new(),
            positions: Vec::new(),
            retired_max: None,
            ended_count: 0,
        }
    }

    pub fn last_op(&self) -> Op {
        self.last_op
    }

    pub fn last_slot(&self) -> Slot {
        self.last_slot
    }

    /// Where each request of the last batch executed (a retry: where its original did).
    pub fn executed_positions(&self) -> &[(Op, u32)] {
        &self.positions
    }

    pub fn apply_batch(&mut self, op: Op, slot: Slot, requests: &[Request]) -> Vec<Outcome> {
        assert!(op > self.last_op);
        let now = slot.max(self.last_slot);
        self.last_op = op;
        self.last_slot = now;
        // u128: `created + window` is compared exactly, even near the end of time.
        let window = u128::from(self.config.dedupe_window_slots);
        let aged: Vec<OperationId> = self
            .operations
            .iter()
            .filter(|(_, record)| u128::from(record.created_slot) + window <= u128::from(now))
            .map(|(id, _)| *id)
            .collect();
        for id in aged {
            self.forget_operation(id);
        }
        let retiring: Vec<LeaseId> = self
            .leases
            .iter()
            .filter(|(_, lease)| !lease.state.is_live() && lease.retire_slot <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in retiring {
            self.leases.remove(&id);
            self.retired_max = self.retired_max.max(Some(id));
        }
        let mut outcomes = Vec::new();
        self.positions.clear();
        for (index, request) in requests.iter().enumerate() {
            let position = LeaseId::from_position(op, u32::try_from(index).unwrap());
            let (outcome, executed) = self.apply_request(position, now, request);
            outcomes.push(outcome);
            self.positions.push(executed);
        }
        outcomes
    }

    fn forget_operation(&mut self, id: OperationId) {
        let record = self.operations.remove(&id).expect("a kept record");
        self.retired_through = self.retired_through.max(record.executed.0);
    }

    fn apply_request(
        &mut self,
        position: LeaseId,
        now: Slot,
        request: &Request,
    ) -> (Outcome, (Op, u32)) {
        let here = (position.op(), position.index());
        let refuse = |code| (Outcome::code(code), here);
        if let Command::Expire {
            lease,
            deadline_slot,
        } = request.command
        {
            if request.operation_id != 0 {
                return refuse(ResultCode::InvalidOperationId);
            }
            return (self.expire(lease, deadline_slot, now), here);
        }
        if let Command::RegisterSession { .. } = request.command {
            if request.operation_id != 0 {
                return refuse(ResultCode::InvalidOperationId);
            }
            if self.sessions.len() >= self.config.clients_max as usize {
                let victim = self
                    .sessions
                    .iter()
                    .min_by_key(|(id, session)| (session.used_op, **id))
                    .map(|(id, _)| *id)
                    .unwrap();
                self.sessions.remove(&victim);
            }
            let session = ModelSession {
                highest: 0,
                used_op: here.0,
                answers: BTreeMap::new(),
            };
            self.sessions.insert(session_id_at(here.0, here.1), session);
            return (Outcome::code(ResultCode::Ok), here);
        }
        match OperationKey::of(request.operation_id) {
            OperationKey::None | OperationKey::Session { request: 0, .. } => {
                refuse(ResultCode::InvalidOperationId)
            }
            OperationKey::Session {
                session,
                request: number,
            } => self.apply_numbered(position, now, &request.command, session, number),
            OperationKey::Application {
                issued_after_op, ..
            } => {
                if let Some(record) = self.operations.get(&request.operation_id) {
                    if record.command == request.command {
                        let outcome = Outcome {
                            retry: true,
                            ..record.outcome
                        };
                        return (outcome, record.executed);
                    }
                    return refuse(ResultCode::OperationConflict);
                }
                if issued_after_op >= here.0 {
                    return refuse(ResultCode::InvalidOperationId);
                }
                if issued_after_op < self.retired_through {
                    return refuse(ResultCode::OperationExpired);
                }
                let outcome = match self.execute(position, now, &request.command) {
                    Ok(outcome) => outcome,
                    Err(code) => Outcome::code(code),
                };
                if self.operations.len() >= self.config.operations_max as usize {
                    let oldest = self
                        .operations
                        .iter()
                        .min_by_key(|(_, record)| record.seq)
                        .map(|(id, _)| *id)
                        .unwrap();
                    self.forget_operation(oldest);
                }
                self.operations_seq += 1;
                let record = OperationRecord {
                    command: request.command,
                    outcome,
                    created_slot: now,
                    seq: self.operations_seq,
                    executed: here,
                };
                self.operations.insert(request.operation_id, record);
                (outcome, here)
            }
        }
    }

    fn apply_numbered(
        &mut self,
        position: LeaseId,
        now: Slot,
        command: &Command,
        id: SessionId,
        number: u64,
    ) -> (Outcome, (Op, u32)) {
        let here = (position.op(), position.index());
        let window = u64::from(self.config.session_requests_max);
        let Some(session) = self.sessions.get_mut(&id) else {
            return (Outcome::code(ResultCode::SessionEvicted), here);
        };
        if number <= session.highest {
            if let Some((stored, outcome, executed)) = session.answers.get(&number) {
                session.used_op = here.0;
                if stored != command {
                    return (Outcome::code(ResultCode::OperationConflict), here);
                }
                let outcome = Outcome {
                    retry: true,
                    ..*outcome
                };
                return (outcome, *executed);
            }
            if number + window <= session.highest {
                return (Outcome::code(ResultCode::RequestStale), here);
            }
        }
        session.used_op = here.0;
        let outcome = match self.execute(position, now, command) {
            Ok(outcome) => outcome,
            Err(code) => Outcome::code(code),
        };
        let session = self.sessions.get_mut(&id).unwrap();
        session
            .answers
            .retain(|kept, _| *kept % window != number % window);
        session.answers.insert(number, (*command, outcome, here));
        session.highest = session.highest.max(number);
        (outcome, here)
    }

    fn execute(
        &mut self,
        position: LeaseId,
        now: Slot,
        command: &Command,
    ) -> Result<Outcome, ResultCode> {
        match *command {
            Command::CreateResource { resource, pool } => self.create_resource(resource, pool),
            Command::Reserve {
                resources,
                holder,
                ttl_slots,
            } => self.reserve(position, now, resources.as_slice(), holder, ttl_slots),
            Command::ReserveAny {
                pool,
                count,
                holder,
                ttl_slots,
            } => self.reserve_any(position, now, pool, count, holder, ttl_slots),
            Command::Activate {
                lease,
                holder,
                epoch,
                ttl_slots,
            } => self.activate(now, lease, holder, epoch, ttl_slots),
            Command::Renew {
                lease,
                holder,
                epoch,
                ttl_slots,
            } => self.renew(now, lease, holder, epoch, ttl_slots),
            Command::Release {
                lease,
                holder,
                epoch,
            } => self.release(now, lease, holder, epoch),
            Command::Revoke { lease } => self.revoke(lease),
            Command::Reclaim { lease } => self.reclaim(now, lease),
            Command::RegisterSession { .. } => unreachable!("register is handled before keys"),
            Command::Expire { .. } => unreachable!("expire is handled before dedupe"),
        }
    }

    fn create_resource(
        &mut self,
        resource: ResourceId,
        pool: Option<PoolId>,
    ) -> Result<Outcome, ResultCode> {
        if self.resources.contains_key(&resource) {
            return Err(ResultCode::AlreadyExists);
        }
        if self.resources.len() >= self.config.resources_max as usize {
            return Err(ResultCode::ResourceTableFull);
        }
        if let Some(pool) = pool {
            let new_pool = !self.pools.contains_key(&pool);
            if new_pool && self.pools.len() >= self.config.pools_max as usize {
                return Err(ResultCode::PoolTableFull);
            }
            let entry = self.pools.entry(pool).or_insert((0, VecDeque::new()));
            entry.0 += 1;
            entry.1.push_back(resource);
        }
        let row = ModelResource {
            pool,
            state: ResourceState::Available,
            lease: None,
            version: 1,
        };
        self.resources.insert(resource, row);
        Ok(ok(LeaseId(0), 0, 0))
    }

    fn deadline(&self, now: Slot, ttl_slots: u64) -> Result<Slot, ResultCode> {
        if ttl_slots == 0 || ttl_slots > self.config.ttl_slots_max {
            return Err(ResultCode::TtlOutOfRange);
        }
        match now.checked_add(ttl_slots) {
            Some(deadline) if deadline < DEADLINE_NONE => Ok(deadline),
            _ => Err(ResultCode::SlotOverflow),
        }
    }

    /// `leases_max` and `lease_members_max` bound live leases; terminal leases give their
    /// rows up, earliest ended first, only once the reserve is known to fit.
    fn check_lease_room(&mut self, members: usize) -> Result<(), ResultCode> {
        let live = self.leases.values().filter(|lease| lease.state.is_live());
        if live.clone().count() >= self.config.leases_max as usize {
            return Err(ResultCode::LeaseTableFull);
        }
        let live_members: usize = live.map(|lease| lease.resources.len()).sum();
        if live_members + members > self.config.lease_members_max as usize {
            return Err(ResultCode::MemberTableFull);
        }
        loop {
            let used: usize = self.leases.values().map(|l| l.resources.len()).sum();
            let fits = self.leases.len() < self.config.leases_max as usize
                && used + members <= self.config.lease_members_max as usize;
            if fits {
                return Ok(());
            }
            let oldest = self
                .leases
                .iter()
                .filter(|(_, lease)| !lease.state.is_live())
                .min_by_key(|(_, lease)| lease.ended_seq)
                .map(|(id, _)| *id)
                .expect("a terminal lease to drop");
            self.leases.remove(&oldest);
            self.retired_max = self.retired_max.max(Some(oldest));
        }
    }

    fn reserve(
        &mut self,
        position: LeaseId,
        now: Slot,
        resources: &[ResourceId],
        holder: HolderId,
        ttl_slots: u64,
    ) -> Result<Outcome, ResultCode> {
        if resources.is_empty() || resources.len() > self.config.bundle_size_max as usize {
            return Err(ResultCode::BundleTooLarge);
        }
        let deadline = self.deadline(now, ttl_slots)?;
        for (index, resource) in resources.iter().enumerate() {
            if resources[..index].contains(resource) {
                return Err(ResultCode::BundleDuplicateResource);
            }
        }
        if resources.iter().any(|id| !self.resources.contains_key(id)) {
            return Err(ResultCode::ResourceNotFound);
        }
        if resources
            .iter()
            .any(|id| self.resources[id].state != ResourceState::Available)
        {
            return Err(ResultCode::ResourceBusy);
        }
        self.check_lease_room(resources.len())?;
        Ok(self.grant(position, holder, deadline, resources.to_vec()))
    }

    fn reserve_any(
        &mut self,
        position: LeaseId,
        now: Slot,
        pool: PoolId,
        count: u32,
        holder: HolderId,
        ttl_slots: u64,
    ) -> Result<Outcome, ResultCode> {
        if count == 0 || count > self.config.bundle_size_max {
            return Err(ResultCode::BundleTooLarge);
        }
        let deadline = self.deadline(now, ttl_slots)?;
        let Some((_, free)) = self.pools.get(&pool) else {
            return Err(ResultCode::PoolNotFound);
        };
        let count = count as usize;
        if free.len() < count {
            return Err(ResultCode::PoolExhausted);
        }
        let taken: Vec<ResourceId> = free.iter().take(count).copied().collect();
        self.check_lease_room(count)?;
        Ok(self.grant(position, holder, deadline, taken))
    }

    /// Reserve's step 8, shared by `reserve` and `reserve_any`: all checks have passed.
    fn grant(
        &mut self,
        id: LeaseId,
        holder: HolderId,
        deadline: Slot,
        resources: Vec<ResourceId>,
    ) -> Outcome {
        for resource in &resources {
            let row = self.resources.get_mut(resource).unwrap();
            assert_eq!(row.state, ResourceState::Available);
            row.state = ResourceState::Reserved;
            row.lease = Some(id);
            row.version += 1;
            if let Some(pool) = row.pool {
                self.pools
                    .get_mut(&pool)
                    .unwrap()
                    .1
                    .retain(|r| r != resource);
            }
        }
        let lease = ModelLease {
            holder,
            state: LeaseState::Reserved,
            epoch: 1,
            resources,
            deadline_slot: deadline,
            retire_slot: 0,
            ended_seq: 0,
        };
        assert!(self.leases.insert(id, lease).is_none(), "lease id reused");
        ok(id, 1, deadline)
    }

    fn lookup(&self, id: LeaseId) -> Result<&ModelLease, ResultCode> {
        if let Some(lease) = self.leases.get(&id) {
            return Ok(lease);
        }
        // Only an id some batch could have issued is "retired": op 1..=last_op, and an index
        // below batch_requests_max.
        let op = id.0 >> 32;
        let index = id.0 & u128::from(u32::MAX);
        let issuable = (1..=u128::from(self.last_op)).contains(&op)
            && index < u128::from(self.config.batch_requests_max);
        match self.retired_max {
            Some(retired_max) if id <= retired_max && issuable => Err(ResultCode::LeaseRetired),
            _ => Err(ResultCode::LeaseNotFound),
        }
    }

    /// Lookup, holder, epoch, then a live lease past its deadline: steps 2 to 5 of activate,
    /// renew and release.
    fn check_holder(
        &self,
        now: Slot,
        id: LeaseId,
        holder: HolderId,
        epoch: u64,
    ) -> Result<(), ResultCode> {
        let lease = self.lookup(id)?;
        if holder != lease.holder {
            return Err(ResultCode::HolderMismatch);
        }
        if epoch != lease.epoch && !self.flaws.skip_epoch_check {
            return Err(ResultCode::StaleEpoch);
        }
        let passed = lease.deadline_slot != DEADLINE_NONE && lease.deadline_slot < now;
        if lease.state.is_live() && passed {
            return Err(ResultCode::LeaseExpired);
        }
        Ok(())
    }

    fn set_members(&mut self, id: LeaseId, state: ResourceState) {
        for resource in &self.leases[&id].resources {
            let row = self.resources.get_mut(resource).unwrap();
            assert_eq!(row.lease, Some(id));
            row.state = state;
            row.version += 1;
        }
    }

    /// Ends a live lease: terminal state, deadline 0, resources freed in member order.
    fn finish(&mut self, id: LeaseId, state: LeaseState, now: Slot) {
        let history = self.config.lease_history_slots;
        let lease = self.leases.get_mut(&id).unwrap();
        assert!(lease.state.is_live() && !state.is_live());
        lease.ended_seq = self.ended_count;
        self.ended_count += 1;
        lease.state = state;
        lease.deadline_slot = 0;
        lease.retire_slot = now + history;
        for resource in &lease.resources {
            let row = self.resources.get_mut(resource).unwrap();
            assert_eq!(row.lease, Some(id));
            row.state = ResourceState::Available;
            row.lease = None;
            row.version += 1;
            if let Some(pool) = row.pool {
                let free = &mut self.pools.get_mut(&pool).unwrap().1;
                if self.flaws.free_to_head {
                    free.push_front(*resource);
                } else {
                    free.push_back(*resource);
                }
            }
        }
    }

    fn activate(
        &mut self,
        now: Slot,
        id: LeaseId,
        holder: HolderId,
        epoch: u64,
        ttl_slots: Option<u64>,
    ) -> Result<Outcome, ResultCode> {
        let deadline = match ttl_slots {
            Some(ttl_slots) => self.deadline(now, ttl_slots)?,
            None => DEADLINE_NONE,
        };
        self.check_holder(now, id, holder, epoch)?;
        if self.leases[&id].state != LeaseState::Reserved {
            return Err(ResultCode::InvalidState);
        }
        self.set_members(id, ResourceState::Active);
        let lease = self.leases.get_mut(&id).unwrap();
        lease.state = LeaseState::Active;
        lease.deadline_slot = deadline;
        Ok(ok(id, lease.epoch, deadline))
    }

    fn renew(
        &mut self,
        now: Slot,
        id: LeaseId,
        holder: HolderId,
        epoch: u64,
        ttl_slots: u64,
    ) -> Result<Outcome, ResultCode> {
        let deadline = self.deadline(now, ttl_slots)?;
        self.check_holder(now, id, holder, epoch)?;
        let lease = self.leases.get_mut(&id).unwrap();
        if !matches!(lease.state, LeaseState::Reserved | LeaseState::Active) {
            return Err(ResultCode::InvalidState);
        }
        lease.deadline_slot = deadline;
        Ok(ok(id, lease.epoch, deadline))
    }

    fn release(
        &mut self,
        now: Slot,
        id: LeaseId,
        holder: HolderId,
        epoch: u64,
    ) -> Result<Outcome, ResultCode> {
        self.check_holder(now, id, holder, epoch)?;
        let lease = self.leases.get_mut(&id).unwrap();
        if !matches!(lease.state, LeaseState::Reserved | LeaseState::Active) {
            return Err(ResultCode::InvalidState);
        }
        lease.epoch += 1;
        let epoch = lease.epoch;
        self.finish(id, LeaseState::Released, now);
        Ok(ok(id, epoch, 0))
    }

    fn revoke(&mut self, id: LeaseId) -> Result<Outcome, ResultCode> {
        let state = self.lookup(id)?.state;
        if !matches!(state, LeaseState::Reserved | LeaseState::Active) {
            return Err(ResultCode::InvalidState);
        }
        self.set_members(id, ResourceState::Revoking);
        let lease = self.leases.get_mut(&id).unwrap();
        lease.state = LeaseState::Revoking;
        lease.epoch += 1;
        Ok(ok(id, lease.epoch, lease.deadline_slot))
    }

    fn reclaim(&mut self, now: Slot, id: LeaseId) -> Result<Outcome, ResultCode> {
        let lease = self.lookup(id)?;
        if lease.state != LeaseState::Revoking {
            return Err(ResultCode::InvalidState);
        }
        let epoch = lease.epoch;
        self.finish(id, LeaseState::Revoked, now);
        Ok(ok(id, epoch, 0))
    }

    fn expire(&mut self, id: LeaseId, deadline_slot: Slot, now: Slot) -> Outcome {
        let lease = match self.lookup(id) {
            Ok(lease) => lease,
            Err(code) => return Outcome::code(code),
        };
        if !lease.state.is_live() || lease.deadline_slot != deadline_slot || deadline_slot >= now {
            return Outcome::code(ResultCode::InvalidState);
        }
        let lease = self.leases.get_mut(&id).unwrap();
        lease.epoch += 1;
        let epoch = lease.epoch;
        self.finish(id, LeaseState::Expired, now);
        ok(id, epoch, 0)
    }

    /// The expirations a primary would prepend at `slot`: (deadline, id) order, bounded.
    pub fn due_expirations(&self, slot: Slot, out_len: usize) -> Vec<Request> {
        let mut due: Vec<(Slot, LeaseId)> = self
            .leases
            .iter()
            .filter(|(_, lease)| lease.state.is_live())
            .filter(|(_, lease)| lease.deadline_slot != DEADLINE_NONE)
            .filter(|(_, lease)| lease.deadline_slot < slot)
            .map(|(id, lease)| (lease.deadline_slot, *id))
            .collect();
        due.sort_unstable();
        due.truncate(out_len.min(self.config.expirations_per_batch_max as usize));
        due.into_iter()
            .map(|(deadline_slot, lease)| Request {
                operation_id: 0,
                command: Command::Expire {
                    lease,
                    deadline_slot,
                },
            })
            .collect()
    }

    pub fn get_resource(&self, id: ResourceId) -> Result<ResourceView, ResultCode> {
        let row = self
            .resources
            .get(&id)
            .ok_or(ResultCode::ResourceNotFound)?;
        Ok(ResourceView {
            id,
            pool: row.pool,
            state: row.state,
            lease: row.lease,
            version: row.version,
        })
    }

    pub fn get_lease(&self, id: LeaseId) -> Result<LeaseView, ResultCode> {
        let lease = self.lookup(id)?;
        Ok(LeaseView {
            id,
            holder: lease.holder,
            state: lease.state,
            epoch: lease.epoch,
            resources: Bundle::from_slice(&lease.resources).unwrap(),
            deadline_slot: lease.deadline_slot,
            retire_slot: lease.retire_slot,
        })
    }

    pub fn pool_stats(&self, pool: PoolId) -> Result<PoolStats, ResultCode> {
        let (total, free) = self.pools.get(&pool).ok_or(ResultCode::PoolNotFound)?;
        Ok(PoolStats {
            pool,
            total: *total,
            free: u32::try_from(free.len()).unwrap(),
        })
    }

    /// A lease's current view for building the next commands (holder, epoch, deadline).
    pub fn lease(&self, id: LeaseId) -> Option<&ModelLease> {
        self.leases.get(&id)
    }
}
