//! The lease table: live leases and terminal leases still inside the history window. Rows are
//! recycled through a free stack when a terminal lease retires; which row a lease occupies is
//! layout, never observable.

use crate::id_map::{IdMap, ROW_NONE};
use crate::ids::{HolderId, LeaseId, Slot};
use crate::views::LeaseState;

/// One lease.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct LeaseRow {
    pub(crate) id: LeaseId,
    pub(crate) holder: HolderId,
    pub(crate) epoch: u64,
    /// Live: the deadline or `DEADLINE_NONE`. Terminal: 0.
    pub(crate) deadline: Slot,
    /// Live: 0. Terminal: the slot from which it retires.
    pub(crate) retire_slot: Slot,
    /// Head of the member chain.
    pub(crate) members: u32,
    pub(crate) member_count: u32,
    pub(crate) state: LeaseState,
    pub(crate) used: bool,
}

#[derive(Debug)]
pub(crate) struct LeaseTable {
    pub(crate) rows: Vec<LeaseRow>,
    /// Free rows; popped from the end.
    free: Vec<u32>,
    map: IdMap,
}

impl LeaseTable {
    pub(crate) fn new(rows_max: u32) -> LeaseTable {
        assert!(rows_max > 0 && rows_max < ROW_NONE);
        LeaseTable {
            rows: vec![LeaseRow::default(); rows_max as usize],
            // Reversed so the first lease takes row 0: easier to read in a debugger.
            free: (0..rows_max).rev().collect(),
            map: IdMap::new(rows_max),
        }
    }

    pub(crate) fn memory_bytes(&self) -> u64 {
        (self.rows.capacity() * size_of::<LeaseRow>() + self.free.capacity() * size_of::<u32>())
            as u64
            + self.map.memory_bytes()
    }

    pub(crate) fn rows_max(&self) -> u32 {
        u32::try_from(self.rows.len()).expect("rows_max is a u32")
    }

    pub(crate) fn len(&self) -> u32 {
        self.map.len()
    }

    pub(crate) fn free_len(&self) -> u32 {
        u32::try_from(self.free.len()).expect("rows_max is a u32")
    }

    pub(crate) fn is_full(&self) -> bool {
        self.free.is_empty()
    }

    pub(crate) fn find(&self, id: LeaseId) -> Option<u32> {
        self.map.get(id.0)
    }

    pub(crate) fn row(&self, row: u32) -> &LeaseRow {
        &self.rows[row as usize]
    }

    pub(crate) fn row_mut(&mut self, row: u32) -> &mut LeaseRow {
        &mut self.rows[row as usize]
    }

    /// Stores a new lease. The caller checked `is_full` and that the id is new.
    pub(crate) fn insert(&mut self, lease: LeaseRow) -> u32 {
        assert!(lease.used, "inserting an unused lease row");
        let row = self.free.pop().expect("lease table over capacity");
        assert!(
            !self.rows[row as usize].used,
            "free lease row {row} is in use"
        );
        self.rows[row as usize] = lease;
        self.map.insert(lease.id.0, row);
        row
    }

    /// Forgets a lease and recycles its row.
    pub(crate) fn remove(&mut self, row: u32) {
        let id = self.rows[row as usize].id;
        assert!(
            self.rows[row as usize].used,
            "removing unused lease row {row}"
        );
        assert_eq!(
            self.map.remove(id.0),
            Some(row),
            "lease {} row mismatch",
            id.0
        );
        self.rows[row as usize] = LeaseRow::default();
        // Within the reserved capacity: this push never reallocates.
        assert!(self.free.len() < self.rows.len());
        self.free.push(row);
    }
}

/// `Vec::clone` keeps only the length; a clone must keep the free stack's reserved capacity so
/// that it, too, never allocates when a row is freed.
impl Clone for LeaseTable {
    fn clone(&self) -> LeaseTable {
        LeaseTable {
            rows: self.rows.clone(),
            free: crate::fifo::clone_reserved(&self.free),
            map: self.map.clone(),
        }
    }
}
