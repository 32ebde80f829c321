//! The commands: each validates in the order the semantics fix (docs/semantics.md), then
//! mutates. A command that returns a non-`Ok` code has changed nothing.

use crate::allocator::{Allocator, Position};
use crate::command::{BUNDLE_SIZE_LIMIT, Bundle, DEADLINE_NONE, Outcome};
use crate::id_map::ROW_NONE;
use crate::ids::{HolderId, LeaseId, PoolId, ResourceId, Slot};
use crate::lease_table::LeaseRow;
use crate::result_code::ResultCode;
use crate::views::{LeaseState, ResourceState};

/// The resource rows of one lease, copied out of the member chain.
type MemberRows = ([u32; BUNDLE_SIZE_LIMIT], usize);

impl Allocator {
    pub(crate) fn create_resource(
        &mut self,
        resource: ResourceId,
        pool: Option<PoolId>,
    ) -> Outcome {
        if self.resources.find(resource).is_some() {
            return Outcome::code(ResultCode::AlreadyExists);
        }
        if self.resources.is_full() {
            return Outcome::code(ResultCode::ResourceTableFull);
        }
        let pool_row = match pool {
            None => ROW_NONE,
            Some(pool) => match self.pools.find(pool) {
                Some(row) => row,
                None if self.pools.is_full() => return Outcome::code(ResultCode::PoolTableFull),
                None => self.pools.insert(pool),
            },
        };
        let row = self.resources.insert(resource, pool_row);
        if pool_row != ROW_NONE {
            self.pools.add_member(pool_row);
            self.pools
                .push_free(pool_row, &mut self.resources.rows, row);
        }
        debug_assert_eq!(self.resources.row(row).state, ResourceState::Available);
        Outcome::code(ResultCode::Ok)
    }

    /// The deadline `slot + ttl_slots`, or why it cannot be one.
    fn deadline(&self, slot: Slot, ttl_slots: u64) -> Result<Slot, ResultCode> {
        if ttl_slots == 0 || ttl_slots > self.config.ttl_slots_max {
            return Err(ResultCode::TtlOutOfRange);
        }
        match slot.checked_add(ttl_slots) {
            Some(deadline) if deadline < DEADLINE_NONE => Ok(deadline),
            _ => Err(ResultCode::SlotOverflow),
        }
    }

    fn bundle_len_ok(&self, len: usize) -> bool {
        len > 0 && len <= self.config.bundle_size_max as usize
    }

    /// Room for a new lease of `count` members. `leases_max` and `lease_members_max` bound
    /// live leases: terminal leases in the history are bookkeeping and give their rows up,
    /// oldest first, rather than refuse a reserve. Checks before it drops anything, so a
    /// refused reserve changes nothing.
    fn lease_capacity(&mut self, count: usize) -> Result<(), ResultCode> {
        let count = u32::try_from(count).expect("bundle length is small");
        let history = self.history.len();
        assert!(history <= self.leases.len());
        if self.leases.len() - history >= self.leases.rows_max() {
            return Err(ResultCode::LeaseTableFull);
        }
        if self.members.free_count() + self.history_member_rows < count {
            return Err(ResultCode::MemberTableFull);
        }
        // Bounded: each pass retires one history lease, and the checks above guarantee that
        // retiring all of them would make room.
        for _ in 0..history {
            if !self.leases.is_full() && self.members.free_count() >= count {
                break;
            }
            self.retire_oldest();
        }
        assert!(!self.leases.is_full() && self.members.free_count() >= count);
        Ok(())
    }

    pub(crate) fn reserve(
        &mut self,
        position: Position,
        resources: &Bundle,
        holder: HolderId,
        ttl_slots: u64,
    ) -> Outcome {
        let ids = resources.as_slice();
        if !self.bundle_len_ok(ids.len()) {
            return Outcome::code(ResultCode::BundleTooLarge);
        }
        let deadline = match self.deadline(position.slot, ttl_slots) {
            Ok(deadline) => deadline,
            Err(code) => return Outcome::code(code),
        };
        for (index, id) in ids.iter().enumerate() {
            if ids[index + 1..].contains(id) {
                return Outcome::code(ResultCode::BundleDuplicateResource);
            }
        }
        let mut rows = [ROW_NONE; BUNDLE_SIZE_LIMIT];
        for (slot, &id) in rows.iter_mut().zip(ids) {
            match self.resources.find(id) {
                Some(row) => *slot = row,
                None => return Outcome::code(ResultCode::ResourceNotFound),
            }
        }
        let rows = &rows[..ids.len()];
        if rows
            .iter()
            .any(|&row| self.resources.row(row).state != ResourceState::Available)
        {
            return Outcome::code(ResultCode::ResourceBusy);
        }
        if let Err(code) = self.lease_capacity(rows.len()) {
            return Outcome::code(code);
        }
        self.create_lease(position, holder, deadline, rows)
    }

    pub(crate) fn reserve_any(
        &mut self,
        position: Position,
        pool: PoolId,
        count: u32,
        holder: HolderId,
        ttl_slots: u64,
    ) -> Outcome {
        if !self.bundle_len_ok(count as usize) {
            return Outcome::code(ResultCode::BundleTooLarge);
        }
        let deadline = match self.deadline(position.slot, ttl_slots) {
            Ok(deadline) => deadline,
            Err(code) => return Outcome::code(code),
        };
        let Some(pool_row) = self.pools.find(pool) else {
            return Outcome::code(ResultCode::PoolNotFound);
        };
        let entry = *self.pools.row(pool_row);
        if entry.free < count {
            return Outcome::code(ResultCode::PoolExhausted);
        }
        if let Err(code) = self.lease_capacity(count as usize) {
            return Outcome::code(code);
        }
        // The first `count` members of the free list, in list order.
        let mut rows = [ROW_NONE; BUNDLE_SIZE_LIMIT];
        let mut member = entry.head;
        for slot in &mut rows[..count as usize] {
            assert!(
                member != ROW_NONE,
                "pool {pool} free list shorter than free"
            );
            *slot = member;
            member = self.resources.row(member).free_next;
        }
        self.create_lease(position, holder, deadline, &rows[..count as usize])
    }

    /// Creates a reserved lease over `rows` (validated: available, distinct, capacity free).
    fn create_lease(
        &mut self,
        position: Position,
        holder: HolderId,
        deadline: Slot,
        rows: &[u32],
    ) -> Outcome {
        assert!(!rows.is_empty() && rows.len() <= BUNDLE_SIZE_LIMIT);
        let members = self.members.alloc_chain(rows);
        let lease_row = self.leases.insert(LeaseRow {
            id: position.lease,
            holder,
            epoch: 1,
            deadline,
            retire_slot: 0,
            members,
            member_count: u32::try_from(rows.len()).expect("bundle length is small"),
            state: LeaseState::Reserved,
            used: true,
        });
        for &row in rows {
            let resource = self.resources.row_mut(row);
            assert_eq!(
                resource.state,
                ResourceState::Available,
                "resource {}",
                resource.id
            );
            resource.state = ResourceState::Reserved;
            resource.lease = lease_row;
            resource.version += 1;
            let pool = resource.pool;
            if pool != ROW_NONE {
                self.pools.unlink_free(pool, &mut self.resources.rows, row);
            }
        }
        self.expiry.insert(lease_row, deadline, position.lease);
        self.debug_check_lease(lease_row);
        Outcome {
            code: ResultCode::Ok,
            retry: false,
            lease: position.lease,
            epoch: 1,
            deadline_slot: deadline,
        }
    }

    /// Looks a lease up for a holder command: retired / not found, holder, epoch, then
    /// `lease_expired` for a live lease whose deadline has passed at `slot` (it is due to
    /// expire; its holder may no longer extend, activate or end it).
    fn lookup_holder(
        &self,
        lease: LeaseId,
        holder: HolderId,
        epoch: u64,
        slot: Slot,
    ) -> Result<u32, ResultCode> {
        let row = self.lookup(lease)?;
        let entry = self.leases.row(row);
        if entry.holder != holder {
            return Err(ResultCode::HolderMismatch);
        }
        if entry.epoch != epoch {
            return Err(ResultCode::StaleEpoch);
        }
        if entry.state.is_live() && entry.deadline != DEADLINE_NONE && entry.deadline < slot {
            return Err(ResultCode::LeaseExpired);
        }
        Ok(row)
    }

    pub(crate) fn activate(
        &mut self,
        position: Position,
        lease: LeaseId,
        holder: HolderId,
        epoch: u64,
        ttl_slots: Option<u64>,
    ) -> Outcome {
        let deadline = match ttl_slots.map(|ttl| self.deadline(position.slot, ttl)) {
            None => DEADLINE_NONE,
            Some(Ok(deadline)) => deadline,
            Some(Err(code)) => return Outcome::code(code),
        };
        let row = match self.lookup_holder(lease, holder, epoch, position.slot) {
            Ok(row) => row,
            Err(code) => return Outcome::code(code),
        };
        if self.leases.row(row).state != LeaseState::Reserved {
            return Outcome::code(ResultCode::InvalidState);
        }
        self.leases.row_mut(row).state = LeaseState::Active;
        self.set_deadline(row, deadline);
        self.set_members_state(row, ResourceState::Active);
        self.debug_check_lease(row);
        self.live_outcome(row)
    }

    pub(crate) fn renew(
        &mut self,
        position: Position,
        lease: LeaseId,
        holder: HolderId,
        epoch: u64,
        ttl_slots: u64,
    ) -> Outcome {
        let deadline = match self.deadline(position.slot, ttl_slots) {
            Ok(deadline) => deadline,
            Err(code) => return Outcome::code(code),
        };
        let row = match self.lookup_holder(lease, holder, epoch, position.slot) {
            Ok(row) => row,
            Err(code) => return Outcome::code(code),
        };
        let state = self.leases.row(row).state;
        if !matches!(state, LeaseState::Reserved | LeaseState::Active) {
            return Outcome::code(ResultCode::InvalidState);
        }
        self.set_deadline(row, deadline);
        self.debug_check_lease(row);
        self.live_outcome(row)
    }

    pub(crate) fn release(
        &mut self,
        position: Position,
        lease: LeaseId,
        holder: HolderId,
        epoch: u64,
    ) -> Outcome {
        let row = match self.lookup_holder(lease, holder, epoch, position.slot) {
            Ok(row) => row,
            Err(code) => return Outcome::code(code),
        };
        let state = self.leases.row(row).state;
        if !matches!(state, LeaseState::Reserved | LeaseState::Active) {
            return Outcome::code(ResultCode::InvalidState);
        }
        self.leases.row_mut(row).epoch += 1;
        self.terminate(row, LeaseState::Released, position.slot)
    }

    pub(crate) fn revoke(&mut self, lease: LeaseId) -> Outcome {
        let row = match self.lookup(lease) {
            Ok(row) => row,
            Err(code) => return Outcome::code(code),
        };
        let entry = self.leases.row_mut(row);
        if !matches!(entry.state, LeaseState::Reserved | LeaseState::Active) {
            return Outcome::code(ResultCode::InvalidState);
        }
        entry.state = LeaseState::Revoking;
        entry.epoch += 1;
        self.set_members_state(row, ResourceState::Revoking);
        self.debug_check_lease(row);
        self.live_outcome(row)
    }

    pub(crate) fn reclaim(&mut self, position: Position, lease: LeaseId) -> Outcome {
        let row = match self.lookup(lease) {
            Ok(row) => row,
            Err(code) => return Outcome::code(code),
        };
        if self.leases.row(row).state != LeaseState::Revoking {
            return Outcome::code(ResultCode::InvalidState);
        }
        self.terminate(row, LeaseState::Revoked, position.slot)
    }

    pub(crate) fn expire(
        &mut self,
        position: Position,
        lease: LeaseId,
        deadline_slot: Slot,
    ) -> Outcome {
        let row = match self.lookup(lease) {
            Ok(row) => row,
            Err(code) => return Outcome::code(code),
        };
        let entry = self.leases.row(row);
        // Due once its deadline slot has passed (a lease is held through its deadline slot).
        // A lease without a deadline never expires, even at the very last slot.
        let due = entry.state.is_live()
            && entry.deadline == deadline_slot
            && deadline_slot < position.slot
            && deadline_slot != DEADLINE_NONE;
        if !due {
            return Outcome::code(ResultCode::InvalidState);
        }
        self.leases.row_mut(row).epoch += 1;
        self.terminate(row, LeaseState::Expired, position.slot)
    }

    /// The outcome of a command that leaves the lease live.
    fn live_outcome(&self, row: u32) -> Outcome {
        let entry = self.leases.row(row);
        assert!(entry.state.is_live());
        Outcome {
            code: ResultCode::Ok,
            retry: false,
            lease: entry.id,
            epoch: entry.epoch,
            deadline_slot: entry.deadline,
        }
    }

    /// Moves a live lease's deadline, keeping the expiry index exact.
    fn set_deadline(&mut self, row: u32, deadline: Slot) {
        let entry = self.leases.row_mut(row);
        assert!(entry.state.is_live());
        entry.deadline = deadline;
        let (id, indexed) = (entry.id, self.expiry.contains(row));
        match (indexed, deadline == DEADLINE_NONE) {
            (true, true) => self.expiry.remove(row),
            (true, false) => self.expiry.update(row, deadline),
            (false, false) => self.expiry.insert(row, deadline, id),
            (false, true) => {}
        }
        debug_assert_eq!(self.expiry.contains(row), deadline != DEADLINE_NONE);
    }

    fn member_rows(&self, row: u32) -> MemberRows {
        let entry = self.leases.row(row);
        let mut rows = [ROW_NONE; BUNDLE_SIZE_LIMIT];
        let count = self
            .members
            .read_chain(entry.members, entry.member_count, &mut rows);
        assert_eq!(
            count, entry.member_count as usize,
            "lease {} chain",
            entry.id.0
        );
        (rows, count)
    }

    fn set_members_state(&mut self, row: u32, state: ResourceState) {
        let (rows, count) = self.member_rows(row);
        for &member in &rows[..count] {
            let resource = self.resources.row_mut(member);
            assert_eq!(resource.lease, row, "resource {} lease", resource.id);
            resource.state = state;
            resource.version += 1;
        }
    }

    /// Ends a live lease: frees its resources (to the tail of their pools' free lists, in
    /// member order), leaves the expiry index, and enters the history window.
    fn terminate(&mut self, row: u32, state: LeaseState, slot: Slot) -> Outcome {
        assert!(!state.is_live());
        let (rows, count) = self.member_rows(row);
        for &member in &rows[..count] {
            let resource = self.resources.row_mut(member);
            assert_eq!(resource.lease, row, "resource {} lease", resource.id);
            resource.state = ResourceState::Available;
            resource.lease = ROW_NONE;
            resource.version += 1;
            let pool = resource.pool;
            if pool != ROW_NONE {
                self.pools.push_free(pool, &mut self.resources.rows, member);
            }
        }
        if self.expiry.contains(row) {
            self.expiry.remove(row);
        }
        let retire_slot = slot.saturating_add(self.config.lease_history_slots);
        let entry = self.leases.row_mut(row);
        assert!(
            entry.state.is_live(),
            "lease {} is already terminal",
            entry.id.0
        );
        entry.state = state;
        entry.deadline = 0;
        entry.retire_slot = retire_slot;
        let member_count = entry.member_count;
        let outcome = Outcome {
            code: ResultCode::Ok,
            retry: false,
            lease: entry.id,
            epoch: entry.epoch,
            deadline_slot: 0,
        };
        self.history.push_back(row);
        self.history_member_rows += member_count;
        assert!(self.history_member_rows <= self.members.rows_max());
        self.debug_check_lease(row);
        outcome
    }

    /// Local invariants of one lease and its members; debug builds only (the full scan is
    /// `check_invariants`).
    fn debug_check_lease(&self, row: u32) {
        if !cfg!(debug_assertions) {
            return;
        }
        let entry = self.leases.row(row);
        let live_state = entry.state.resource_state();
        assert_eq!(self.leases.find(entry.id), Some(row));
        assert_eq!(
            self.expiry.contains(row),
            live_state.is_some() && entry.deadline != DEADLINE_NONE,
            "lease {} expiry index membership",
            entry.id.0
        );
        assert_eq!(entry.retire_slot == 0, live_state.is_some());
        let (rows, count) = self.member_rows(row);
        for &member in &rows[..count] {
            let resource = self.resources.row(member);
            if let Some(state) = live_state {
                assert_eq!(resource.state, state, "resource {} state", resource.id);
                assert_eq!(resource.lease, row, "resource {} lease", resource.id);
            } else {
                assert!(
                    resource.lease != row,
                    "resource {} held by terminal lease",
                    resource.id
                );
            }
        }
    }
}
