//! The pool table and each pool's intrusive free list. A pool's free list holds its available
//! members in the order `reserve_any` will hand them out: freed members join at the tail,
//! `reserve_any` takes from the head, and `reserve` unlinks a member wherever it is.

use crate::id_map::{IdMap, ROW_NONE};
use crate::ids::PoolId;
use crate::resource_table::ResourceRow;

/// One pool.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PoolRow {
    pub(crate) id: PoolId,
    /// Members ever created in the pool.
    pub(crate) total: u32,
    /// Members on the free list.
    pub(crate) free: u32,
    pub(crate) head: u32,
    pub(crate) tail: u32,
}

#[derive(Debug)]
pub(crate) struct PoolTable {
    pub(crate) rows: Vec<PoolRow>,
    map: IdMap,
    rows_max: u32,
}

impl PoolTable {
    pub(crate) fn new(rows_max: u32) -> PoolTable {
        PoolTable {
            rows: Vec::with_capacity(rows_max as usize),
            map: IdMap::new(rows_max),
            rows_max,
        }
    }

    pub(crate) fn memory_bytes(&self) -> u64 {
        (self.rows.capacity() * size_of::<PoolRow>()) as u64 + self.map.memory_bytes()
    }

    pub(crate) fn len(&self) -> u32 {
        u32::try_from(self.rows.len()).expect("rows_max is a u32")
    }

    pub(crate) fn is_full(&self) -> bool {
        self.len() == self.rows_max
    }

    pub(crate) fn find(&self, id: PoolId) -> Option<u32> {
        self.map.get(id)
    }

    pub(crate) fn map_len(&self) -> u32 {
        self.map.len()
    }

    pub(crate) fn row(&self, row: u32) -> &PoolRow {
        &self.rows[row as usize]
    }

    /// Appends an empty pool. The caller checked that the id is new and a row is free.
    pub(crate) fn insert(&mut self, id: PoolId) -> u32 {
        assert!(
            !self.is_full(),
            "pool table over capacity {}",
            self.rows_max
        );
        let row = self.len();
        // Within the reserved capacity: this push never reallocates.
        self.rows.push(PoolRow {
            id,
            total: 0,
            free: 0,
            head: ROW_NONE,
            tail: ROW_NONE,
        });
        self.map.insert(id, row);
        row
    }

    /// Links `member` (an available, unlinked member of `pool`) at the tail of the free list.
    pub(crate) fn push_free(&mut self, pool: u32, resources: &mut [ResourceRow], member: u32) {
        let entry = &mut self.rows[pool as usize];
        let tail = entry.tail;
        {
            let resource = &mut resources[member as usize];
            assert_eq!(
                resource.pool, pool,
                "resource {} is not in pool",
                resource.id
            );
            assert!(resource.free_prev == ROW_NONE && resource.free_next == ROW_NONE);
            assert!(
                entry.head != member,
                "resource {} is already free",
                resource.id
            );
            resource.free_prev = tail;
        }
        if tail == ROW_NONE {
            entry.head = member;
        } else {
            resources[tail as usize].free_next = member;
        }
        entry.tail = member;
        entry.free += 1;
        assert!(
            entry.free <= entry.total,
            "pool {} free exceeds total",
            entry.id
        );
    }

    /// Unlinks `member` from wherever it is in the free list.
    pub(crate) fn unlink_free(&mut self, pool: u32, resources: &mut [ResourceRow], member: u32) {
        let entry = &mut self.rows[pool as usize];
        assert!(entry.free > 0, "pool {} free list is empty", entry.id);
        let (prev, next) = {
            let resource = &mut resources[member as usize];
            assert_eq!(
                resource.pool, pool,
                "resource {} is not in pool",
                resource.id
            );
            let links = (resource.free_prev, resource.free_next);
            resource.free_prev = ROW_NONE;
            resource.free_next = ROW_NONE;
            links
        };
        if prev == ROW_NONE {
            assert_eq!(entry.head, member, "unlinked member is not the head");
            entry.head = next;
        } else {
            resources[prev as usize].free_next = next;
        }
        if next == ROW_NONE {
            assert_eq!(entry.tail, member, "unlinked member is not the tail");
            entry.tail = prev;
        } else {
            resources[next as usize].free_prev = prev;
        }
        entry.free -= 1;
    }

    pub(crate) fn add_member(&mut self, pool: u32) {
        let entry = &mut self.rows[pool as usize];
        entry.total += 1;
        assert!(entry.total > 0, "pool total overflow");
    }
}

/// `Vec::clone` keeps only the length; a clone must keep the reserved capacity so that it,
/// too, never allocates when rows are appended.
impl Clone for PoolTable {
    fn clone(&self) -> PoolTable {
        PoolTable {
            rows: crate::fifo::clone_reserved(&self.rows),
            map: self.map.clone(),
            rows_max: self.rows_max,
        }
    }
}
