//! The full invariant scan. `check_invariants` panics on the first violation (a broken
//! invariant in a running replica is corruption: fail closed); snapshot decoding runs the same
//! scan as [`Allocator::find_violation`] and turns a violation into an error, because there
//! the broken state came from outside. The scan never panics itself: every row index it
//! follows is bounds-checked first.

use crate::allocator::Allocator;
use crate::command::{BUNDLE_SIZE_LIMIT, DEADLINE_NONE};
use crate::id_map::ROW_NONE;
use crate::views::ResourceState;

/// A broken invariant: which one, and the ids involved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvariantViolation {
    /// The invariant's short name.
    pub invariant: &'static str,
    /// The ids and values that break it.
    pub detail: String,
}

impl std::fmt::Display for InvariantViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "invariant `{}` violated: {}",
            self.invariant, self.detail
        )
    }
}

impl std::error::Error for InvariantViolation {}

type Check = Result<(), InvariantViolation>;

fn ensure(condition: bool, invariant: &'static str, detail: impl FnOnce() -> String) -> Check {
    if condition {
        Ok(())
    } else {
        Err(InvariantViolation {
            invariant,
            detail: detail(),
        })
    }
}

impl Allocator {
    /// Scans every table and panics, naming the invariant and the ids, on the first violation.
    pub fn check_invariants(&self) {
        if let Err(violation) = self.find_violation() {
            panic!("allocdb-core state is corrupt: {violation}");
        }
    }

    /// The first broken invariant, if any. Never panics, whatever the tables hold.
    ///
    /// # Errors
    /// The violation found.
    pub fn find_violation(&self) -> Result<(), InvariantViolation> {
        self.check_resources()?;
        self.check_leases()?;
        self.check_pools()?;
        self.check_expiry()?;
        self.check_history()?;
        self.check_operations()?;
        self.check_sessions()?;
        let watermark_op = self.retired_watermark >> 32;
        ensure(
            watermark_op <= u128::from(self.last_op),
            "retired watermark was issued",
            || {
                format!(
                    "watermark {} after op {}",
                    self.retired_watermark, self.last_op
                )
            },
        )
    }

    /// The resource rows of lease `row`'s member chain, if the chain is well formed.
    fn checked_members(&self, row: u32) -> Option<([u32; BUNDLE_SIZE_LIMIT], usize)> {
        let lease = self.leases.rows.get(row as usize)?;
        let count = lease.member_count as usize;
        if count == 0 || count > BUNDLE_SIZE_LIMIT {
            return None;
        }
        let mut rows = [ROW_NONE; BUNDLE_SIZE_LIMIT];
        let mut member = lease.members;
        for slot in &mut rows[..count] {
            *slot = self.members.resource_of(member)?;
            if *slot as usize >= self.resources.rows.len() {
                return None;
            }
            member = self.members.next_of(member)?;
        }
        (member == ROW_NONE).then_some((rows, count))
    }

    fn check_resources(&self) -> Check {
        let rows = &self.resources.rows;
        ensure(
            self.resources.map_len() as usize == rows.len(),
            "resource map",
            || format!("{} mapped, {} rows", self.resources.map_len(), rows.len()),
        )?;
        for (row, resource) in (0_u32..).zip(rows) {
            let id = resource.id;
            ensure(self.resources.find(id) == Some(row), "resource map", || {
                format!("resource {id} not mapped to its row")
            })?;
            ensure(
                resource.pool == ROW_NONE || (resource.pool as usize) < self.pools.rows.len(),
                "resource pool exists",
                || format!("resource {id} pool row {}", resource.pool),
            )?;
            ensure(resource.version >= 1, "resource version", || {
                format!("resource {id}")
            })?;
            if resource.state == ResourceState::Available {
                ensure(resource.lease == ROW_NONE, "available iff no lease", || {
                    format!("available resource {id} has a lease")
                })?;
                continue;
            }
            let lease = self.leases.rows.get(resource.lease as usize);
            let holder = lease.filter(|lease| lease.used && lease.state.is_live());
            ensure(holder.is_some(), "resource lease is live", || {
                format!(
                    "resource {id} ({:?}) lease row {}",
                    resource.state, resource.lease
                )
            })?;
            let lease = holder.expect("checked above");
            ensure(
                lease.state.resource_state() == Some(resource.state),
                "resource state = lease state",
                || {
                    format!(
                        "resource {id} {:?}, lease {} {:?}",
                        resource.state, lease.id.0, lease.state
                    )
                },
            )?;
            let listed = self
                .checked_members(resource.lease)
                .is_some_and(|(members, count)| members[..count].contains(&row));
            ensure(listed, "lease lists its resources", || {
                format!("lease {} does not list resource {id}", lease.id.0)
            })?;
        }
        Ok(())
    }

    fn check_leases(&self) -> Check {
        let mut used = 0_u32;
        let mut members_used = 0_u64;
        for row in 0..self.leases.rows_max() {
            let lease = self.leases.row(row);
            if !lease.used {
                continue;
            }
            used += 1;
            let id = lease.id.0;
            ensure(self.leases.find(lease.id) == Some(row), "lease map", || {
                format!("lease {id} not mapped to its row")
            })?;
            let (op, index) = (lease.id.op(), lease.id.index());
            let issued = op >= 1 && op <= self.last_op && index < self.config.batch_requests_max;
            ensure(issued, "lease id was issued", || {
                format!(
                    "lease {id} (op {op}, index {index}) with last op {}",
                    self.last_op
                )
            })?;
            ensure(lease.epoch >= 1, "lease epoch", || {
                format!("lease {id} epoch 0")
            })?;
            let members = self.checked_members(row);
            let bundle_ok = lease.member_count <= self.config.bundle_size_max;
            ensure(members.is_some() && bundle_ok, "lease member chain", || {
                format!("lease {id} with {} members", lease.member_count)
            })?;
            let (members, count) = members.expect("checked above");
            members_used += u64::from(lease.member_count);
            for (index, member) in members[..count].iter().enumerate() {
                ensure(
                    !members[index + 1..count].contains(member),
                    "lease members distinct",
                    || {
                        format!(
                            "lease {id} lists resource {} twice",
                            self.resources.row(*member).id
                        )
                    },
                )?;
                let resource = self.resources.row(*member);
                let held = resource.lease == row;
                ensure(
                    held == lease.state.is_live(),
                    "live lease holds its members",
                    || {
                        format!(
                            "lease {id} ({:?}) and resource {}",
                            lease.state, resource.id
                        )
                    },
                )?;
            }
            let live = lease.state.is_live();
            let slots_ok = if live {
                lease.retire_slot == 0 && lease.deadline != 0
            } else {
                lease.retire_slot != 0 && lease.deadline == 0
            };
            ensure(slots_ok, "lease deadline and retire slot", || {
                format!(
                    "lease {id} {:?} deadline {} retire {}",
                    lease.state, lease.deadline, lease.retire_slot
                )
            })?;
        }
        ensure(
            used == self.leases.len() && used + self.leases.free_len() == self.leases.rows_max(),
            "lease rows",
            || {
                format!(
                    "{used} used, {} mapped, {} free",
                    self.leases.len(),
                    self.leases.free_len()
                )
            },
        )?;
        let members_total = members_used + u64::from(self.members.free_count());
        ensure(
            members_total == u64::from(self.members.rows_max()),
            "member rows",
            || format!("{members_used} used + {} free", self.members.free_count()),
        )
    }

    fn check_pools(&self) -> Check {
        let mut counts = vec![(0_u32, 0_u32); self.pools.rows.len()];
        for resource in &self.resources.rows {
            if let Some(count) = counts.get_mut(resource.pool as usize) {
                count.0 += 1;
                count.1 += u32::from(resource.state == ResourceState::Available);
            }
        }
        ensure(
            self.pools.map_len() as usize == self.pools.rows.len(),
            "pool map",
            || {
                format!(
                    "{} mapped, {} rows",
                    self.pools.map_len(),
                    self.pools.rows.len()
                )
            },
        )?;
        for ((row, pool), (total, available)) in (0_u32..).zip(&self.pools.rows).zip(counts) {
            let id = pool.id;
            ensure(self.pools.find(id) == Some(row), "pool map", || {
                format!("pool {id}")
            })?;
            ensure(pool.total == total, "pool total = members", || {
                format!("pool {id} total {} but {total} members", pool.total)
            })?;
            ensure(
                pool.free == available,
                "pool free = available members",
                || format!("pool {id} free {} but {available} available", pool.free),
            )?;
            let mut previous = ROW_NONE;
            let mut member = pool.head;
            for _ in 0..pool.free {
                let resource = self.resources.rows.get(member as usize);
                let linked = resource.is_some_and(|resource| {
                    resource.pool == row
                        && resource.state == ResourceState::Available
                        && resource.free_prev == previous
                });
                ensure(linked, "pool free list", || {
                    format!("pool {id} free list broken at row {member}")
                })?;
                previous = member;
                member = resource.expect("checked above").free_next;
            }
            ensure(
                member == ROW_NONE && pool.tail == previous,
                "pool free list",
                || format!("pool {id} free list longer than {} or bad tail", pool.free),
            )?;
        }
        Ok(())
    }

    fn check_expiry(&self) -> Check {
        ensure(
            self.expiry.find_disorder().is_none(),
            "expiry heap order",
            || format!("disorder at position {:?}", self.expiry.find_disorder()),
        )?;
        ensure(
            self.expiry.positions_used() == self.expiry.len() as usize,
            "expiry positions",
            || {
                format!(
                    "{} positions, {} entries",
                    self.expiry.positions_used(),
                    self.expiry.len()
                )
            },
        )?;
        for (row, deadline, id) in self.expiry.entries() {
            let lease = self.leases.rows.get(row as usize);
            let exact = lease.is_some_and(|lease| {
                lease.used
                    && lease.state.is_live()
                    && lease.id.0 == id
                    && lease.deadline == deadline
            });
            ensure(
                exact && deadline != DEADLINE_NONE,
                "expiry entry matches its lease",
                || format!("entry (deadline {deadline}, lease {id}) at lease row {row}"),
            )?;
        }
        let with_deadline = self
            .leases
            .rows
            .iter()
            .filter(|lease| lease.used && lease.state.is_live() && lease.deadline != DEADLINE_NONE)
            .count();
        ensure(
            with_deadline == self.expiry.len() as usize,
            "expiry index = live leases with a deadline",
            || format!("{with_deadline} leases, {} entries", self.expiry.len()),
        )
    }

    fn check_history(&self) -> Check {
        let mut seen = vec![false; self.leases.rows_max() as usize];
        let mut previous_retire = 0;
        let mut member_rows: u64 = 0;
        for row in self.history.iter() {
            let lease = self.leases.rows.get(row as usize);
            let terminal = lease.is_some_and(|lease| lease.used && !lease.state.is_live());
            ensure(
                terminal && !seen[row as usize],
                "history holds terminal leases once",
                || format!("history entry at lease row {row}"),
            )?;
            seen[row as usize] = true;
            let lease = lease.expect("checked above");
            member_rows += u64::from(lease.member_count);
            let retire = lease.retire_slot;
            ensure(retire >= previous_retire, "history in retire order", || {
                format!(
                    "lease {} retires at {retire} after {previous_retire}",
                    lease.id.0
                )
            })?;
            ensure(
                retire > self.last_slot || retire == u64::MAX,
                "history not overdue",
                || {
                    format!(
                        "lease {} retire slot {retire} <= last slot {}",
                        lease.id.0, self.last_slot
                    )
                },
            )?;
            previous_retire = retire;
        }
        ensure(
            member_rows == u64::from(self.history_member_rows),
            "history member rows counted",
            || {
                format!(
                    "{member_rows} member rows in history, {} counted",
                    self.history_member_rows
                )
            },
        )?;
        let terminal = self
            .leases
            .rows
            .iter()
            .filter(|lease| lease.used && !lease.state.is_live())
            .count();
        ensure(
            terminal == self.history.len() as usize,
            "history = terminal leases",
            || {
                format!(
                    "{terminal} terminal leases, {} in history",
                    self.history.len()
                )
            },
        )
    }

    fn check_operations(&self) -> Check {
        let fifo = &self.operations.fifo;
        ensure(
            fifo.len() == self.operations.len(),
            "operation fifo = records",
            || format!("{} queued, {} recorded", fifo.len(), self.operations.len()),
        )?;
        let mut previous_created = 0;
        for row in fifo.iter() {
            let record = self.operations.row(row);
            let id = record.id;
            ensure(
                id != 0 && self.operations.find_row(id) == Some(row),
                "operation map",
                || format!("operation {id} at row {row}"),
            )?;
            let created = record.created_slot;
            let in_window = created <= self.last_slot
                && self.last_slot - created < self.config.dedupe_window_slots
                && created >= previous_created;
            ensure(in_window, "operation records in window and order", || {
                format!(
                    "operation {id} created {created}, last slot {}",
                    self.last_slot
                )
            })?;
            ensure(
                !record.outcome.retry,
                "stored outcome is not a retry",
                || format!("operation {id}"),
            )?;
            previous_created = created;
            ensure(
                record.executed_op >= self.operations.retired_through,
                "kept operation records executed no earlier than every retired one",
                || {
                    format!(
                        "operation {id} executed at op {}, retired through {}",
                        record.executed_op, self.operations.retired_through
                    )
                },
            )?;
        }
        Ok(())
    }

    fn check_sessions(&self) -> Check {
        let window = u64::from(self.sessions.window());
        let mut used = 0_u32;
        for row in self.sessions.used_rows() {
            used += 1;
            let session = *self.sessions.row(row);
            let id = session.id;
            ensure(
                self.sessions.find(id) == Some(row) && session.used_op <= self.last_op,
                "session map and use",
                || format!("session {id} at row {row} used at op {}", session.used_op),
            )?;
            for (slot, answer) in self.sessions.ring(row).iter().enumerate() {
                if answer.request == 0 {
                    continue;
                }
                let request = answer.request;
                // A client that skips numbers may leave an answer below its window: it stays
                // until its slot is reused, and a repeat still gets it.
                let placed = usize::try_from(request % window).expect("below the window") == slot
                    && request <= session.highest;
                ensure(
                    placed,
                    "session answers in their slot, up to the highest",
                    || {
                        format!(
                            "session {id} request {request} in slot {slot}, highest {}",
                            session.highest
                        )
                    },
                )?;
                ensure(
                    !answer.outcome.retry && answer.executed_op <= self.last_op,
                    "stored session answers are executions of the log so far",
                    || {
                        format!(
                            "session {id} request {request} at op {}",
                            answer.executed_op
                        )
                    },
                )?;
            }
        }
        ensure(
            used == self.sessions.len() && used <= self.sessions.rows_max(),
            "session rows = sessions",
            || format!("{used} rows used, {} sessions", self.sessions.len()),
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::allocator::Allocator;
    use crate::command::{Bundle, Command, Outcome, Request};
    use crate::config::Config;
    use crate::result_code::ResultCode;
    use crate::views::{LeaseState, ResourceState};

    /// Two pooled resources, one reserved by a lease, one released lease in history.
    fn populated() -> Allocator {
        let mut allocator = Allocator::new(Config::small()).unwrap();
        let create = |id: u128| Command::CreateResource {
            resource: id,
            pool: Some(9),
        };
        let reserve = |id: u128| Command::Reserve {
            resources: Bundle::from_slice(&[id]).unwrap(),
            holder: 1,
            ttl_slots: 10,
        };
        let requests = [create(1), create(2), create(3), reserve(1), reserve(2)];
        let requests = requests.map(|command| Request {
            operation_id: 0,
            command,
        });
        let requests: Vec<Request> = (1..)
            .zip(requests)
            .map(|(operation_id, request)| Request {
                operation_id,
                ..request
            })
            .collect();
        let mut outcomes = vec![Outcome::code(ResultCode::Ok); requests.len()];
        allocator.apply_batch(1, 5, &requests, &mut outcomes);
        let release = Request {
            operation_id: 99,
            command: Command::Release {
                lease: outcomes[4].lease,
                holder: 1,
                epoch: 1,
            },
        };
        let mut outcome = [Outcome::code(ResultCode::Ok)];
        allocator.apply_batch(2, 6, &[release], &mut outcome);
        assert_eq!(outcome[0].code, ResultCode::Ok);
        allocator.check_invariants();
        allocator
    }

    fn violated(allocator: &Allocator) -> &'static str {
        allocator
            .find_violation()
            .expect_err("corruption must be caught")
            .invariant
    }

    #[test]
    fn each_deliberate_corruption_is_named() {
        let mut broken = populated();
        broken.resources.rows[0].state = ResourceState::Available;
        assert_eq!(violated(&broken), "available iff no lease");

        let mut broken = populated();
        broken.resources.rows[0].state = ResourceState::Active;
        assert_eq!(violated(&broken), "resource state = lease state");

        let mut broken = populated();
        broken.resources.rows[2].state = ResourceState::Reserved;
        broken.resources.rows[2].lease = 0;
        assert_eq!(violated(&broken), "lease lists its resources");

        let mut broken = populated();
        broken.pools.rows[0].free += 1;
        assert_eq!(violated(&broken), "pool free = available members");

        let mut broken = populated();
        let live = broken.resources.rows[0].lease;
        broken.leases.rows[live as usize].deadline += 1;
        assert_eq!(violated(&broken), "expiry entry matches its lease");

        let mut broken = populated();
        let terminal = broken.history.front().unwrap();
        broken.leases.rows[terminal as usize].state = LeaseState::Active;
        assert!(broken.find_violation().is_err());

        let mut broken = populated();
        broken.last_slot = 20_000;
        assert_eq!(violated(&broken), "history not overdue");

        let mut broken = populated();
        broken.last_op = 0;
        assert_eq!(violated(&broken), "lease id was issued");
    }

    #[test]
    #[should_panic(expected = "invariant `pool total = members` violated: pool 9")]
    fn check_invariants_panics_naming_the_invariant() {
        let mut broken = populated();
        broken.pools.rows[0].total = 7;
        broken.check_invariants();
    }
}
