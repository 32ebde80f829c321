//! The state digest: a hash of the full logical state that does not depend on table layout
//! (which row holds what, heap order, map slots). Each entity hashes on its own; the entity
//! hashes are summed (wrapping, 128 bits), so the order tables are scanned in cannot matter.
//! Everything that can influence a future outcome is included: pool free-list *order* (it
//! decides `reserve_any`), retire and creation slots, the watermark, the last op and slot.

use crate::allocator::Allocator;
use crate::hash::Hasher128;
use crate::id_map::ROW_NONE;

const DOMAIN_RESOURCE: u64 = 1;
const DOMAIN_POOL: u64 = 2;
const DOMAIN_FREE_POSITION: u64 = 3;
const DOMAIN_LEASE: u64 = 4;
const DOMAIN_OPERATION: u64 = 5;
const DOMAIN_STATE: u64 = 6;
const DOMAIN_SESSION: u64 = 7;
const DOMAIN_SESSION_ANSWER: u64 = 8;

impl Allocator {
    /// A hash of the full logical state, independent of table layout: two allocators that
    /// will answer every future command identically have the same digest.
    pub fn state_digest(&self) -> u128 {
        let mut sum: u128 = 0;
        for resource in &self.resources.rows {
            let mut hasher = Hasher128::new(DOMAIN_RESOURCE);
            hasher.u128(resource.id);
            self.hash_pool_ref(&mut hasher, resource.pool);
            hasher.u64(resource.state as u64);
            let lease = (resource.lease != ROW_NONE).then(|| self.leases.row(resource.lease).id.0);
            hasher.u128(lease.unwrap_or(0));
            hasher.u64(resource.version);
            sum = sum.wrapping_add(hasher.finish());
        }
        sum = sum.wrapping_add(self.pools_digest());
        for row in 0..self.leases.rows_max() {
            let lease = self.leases.row(row);
            if !lease.used {
                continue;
            }
            let mut hasher = Hasher128::new(DOMAIN_LEASE);
            hasher.u128(lease.id.0);
            hasher.u128(lease.holder);
            hasher.u64(lease.state as u64);
            hasher.u64(lease.epoch);
            hasher.u64(lease.deadline);
            hasher.u64(lease.retire_slot);
            let bundle = self.lease_bundle(row);
            hasher.u64(bundle.len() as u64);
            for &resource in bundle.as_slice() {
                hasher.u128(resource);
            }
            sum = sum.wrapping_add(hasher.finish());
        }
        for row in self.operations.fifo.iter() {
            let record = self.operations.row(row);
            let mut hasher = Hasher128::new(DOMAIN_OPERATION);
            hasher.u128(record.id);
            hasher.u128(record.fingerprint);
            hash_outcome(&mut hasher, &record.outcome);
            hasher.u64(record.created_slot);
            hasher.u64(record.executed_op);
            hasher.u64(u64::from(record.executed_index));
            sum = sum.wrapping_add(hasher.finish());
        }
        sum = sum.wrapping_add(self.sessions_digest());
        let mut hasher = Hasher128::new(DOMAIN_STATE);
        hasher.u128(sum);
        hasher.u64(self.operations.retired_through);
        hasher.u64(u64::from(self.sessions.len()));
        hasher.u64(self.last_op);
        hasher.u64(self.last_slot);
        hasher.u128(self.retired_watermark);
        hasher.u64(u64::from(self.resources.len()));
        hasher.u64(u64::from(self.pools.len()));
        hasher.u64(u64::from(self.leases.len()));
        hasher.u64(u64::from(self.operations.len()));
        hasher.finish()
    }

    /// Sessions and their stored answers; a slot's position in the ring follows from its
    /// request number, so hashing the numbers covers the layout that matters.
    fn sessions_digest(&self) -> u128 {
        let mut sum: u128 = 0;
        for row in self.sessions.used_rows() {
            let session = self.sessions.row(row);
            let mut hasher = Hasher128::new(DOMAIN_SESSION);
            hasher.u64(session.id);
            hasher.u128(session.client);
            hasher.u64(session.highest);
            hasher.u64(session.used_op);
            sum = sum.wrapping_add(hasher.finish());
            for answer in self.sessions.ring(row) {
                if answer.request == 0 {
                    continue;
                }
                let mut hasher = Hasher128::new(DOMAIN_SESSION_ANSWER);
                hasher.u64(session.id);
                hasher.u64(answer.request);
                hasher.u128(answer.fingerprint);
                hash_outcome(&mut hasher, &answer.outcome);
                hasher.u64(answer.executed_op);
                hasher.u64(u64::from(answer.executed_index));
                sum = sum.wrapping_add(hasher.finish());
            }
        }
        sum
    }

    fn hash_pool_ref(&self, hasher: &mut Hasher128, pool: u32) {
        hasher.u64(u64::from(pool != ROW_NONE));
        hasher.u128(if pool == ROW_NONE {
            0
        } else {
            self.pools.row(pool).id
        });
    }

    /// Pools and their free lists, each free member hashed with its position in the list.
    fn pools_digest(&self) -> u128 {
        let mut sum: u128 = 0;
        for pool in &self.pools.rows {
            let mut hasher = Hasher128::new(DOMAIN_POOL);
            hasher.u128(pool.id);
            hasher.u64(u64::from(pool.total));
            hasher.u64(u64::from(pool.free));
            sum = sum.wrapping_add(hasher.finish());
            let mut member = pool.head;
            for position in 0..pool.free {
                assert!(member != ROW_NONE, "pool {} free list is short", pool.id);
                let resource = self.resources.row(member);
                let mut hasher = Hasher128::new(DOMAIN_FREE_POSITION);
                hasher.u128(pool.id);
                hasher.u64(u64::from(position));
                hasher.u128(resource.id);
                sum = sum.wrapping_add(hasher.finish());
                member = resource.free_next;
            }
        }
        sum
    }
}

fn hash_outcome(hasher: &mut Hasher128, outcome: &crate::command::Outcome) {
    hasher.u64(outcome.code as u64);
    hasher.u64(u64::from(outcome.retry));
    hasher.u128(outcome.lease.0);
    hasher.u64(outcome.epoch);
    hasher.u64(outcome.deadline_slot);
}
