//! The operation table: the outcome of every write executed under an application key, kept for
//! `dedupe_window_slots` or until the table is full, whichever ends first. Records retire in
//! insertion order through a FIFO (their creation slots and ops never decrease), and each
//! retirement raises `retired_through`, the newest op at which a forgotten key executed: a key
//! issued before that op and not found may have been forgotten, so it is refused, never run
//! again.

use crate::command::Outcome;
use crate::fifo::Fifo;
use crate::id_map::{IdMap, ROW_NONE};
use crate::ids::{OperationId, Slot};
use crate::result_code::ResultCode;

/// One remembered write.
#[derive(Clone, Copy, Debug)]
pub(crate) struct OperationRow {
    pub(crate) id: OperationId,
    pub(crate) fingerprint: u128,
    pub(crate) outcome: Outcome,
    pub(crate) created_slot: Slot,
    /// Where the operation executed: the op of its batch and its index in it. A retry is
    /// answered with these, so every answer names the position the effect has in the log.
    pub(crate) executed_op: crate::ids::Op,
    pub(crate) executed_index: u32,
}

const ROW_EMPTY: OperationRow = OperationRow {
    id: 0,
    fingerprint: 0,
    outcome: Outcome {
        code: ResultCode::Ok,
        retry: false,
        lease: crate::ids::LeaseId(0),
        epoch: 0,
        deadline_slot: 0,
    },
    created_slot: 0,
    executed_op: 0,
    executed_index: 0,
};

#[derive(Debug)]
pub(crate) struct OperationTable {
    rows: Vec<OperationRow>,
    free: Vec<u32>,
    map: IdMap,
    /// Rows in insertion order.
    pub(crate) fifo: Fifo<u32>,
    /// The highest `executed_op` of any retired record; 0 while none has retired.
    pub(crate) retired_through: crate::ids::Op,
}

impl OperationTable {
    pub(crate) fn new(rows_max: u32) -> OperationTable {
        assert!(rows_max > 0 && rows_max < ROW_NONE);
        OperationTable {
            rows: vec![ROW_EMPTY; rows_max as usize],
            free: (0..rows_max).rev().collect(),
            map: IdMap::new(rows_max),
            fifo: Fifo::new(rows_max),
            retired_through: 0,
        }
    }

    pub(crate) fn memory_bytes(&self) -> u64 {
        (self.rows.capacity() * size_of::<OperationRow>() + self.free.capacity() * size_of::<u32>())
            as u64
            + self.map.memory_bytes()
            + self.fifo.memory_bytes()
    }

    pub(crate) fn len(&self) -> u32 {
        self.map.len()
    }

    pub(crate) fn is_full(&self) -> bool {
        self.free.is_empty()
    }

    pub(crate) fn find(&self, id: OperationId) -> Option<&OperationRow> {
        self.map.get(id).map(|row| &self.rows[row as usize])
    }

    pub(crate) fn find_row(&self, id: OperationId) -> Option<u32> {
        self.map.get(id)
    }

    pub(crate) fn row(&self, row: u32) -> &OperationRow {
        &self.rows[row as usize]
    }

    /// Records an outcome, retiring the oldest record first when the table is full (so the
    /// table never refuses a write). The caller checked that the id is not recorded.
    pub(crate) fn insert(&mut self, record: OperationRow) {
        if self.is_full() {
            self.retire_oldest();
        }
        assert!(record.id != 0, "operation id 0 is never recorded");
        assert!(!record.outcome.retry, "a stored outcome is never a retry");
        if let Some(last) = self.fifo.len().checked_sub(1) {
            let newest = self.rows[self.fifo.get(last) as usize].created_slot;
            assert!(
                newest <= record.created_slot,
                "operation slots went backwards"
            );
        }
        let row = self.free.pop().expect("operation table over capacity");
        self.rows[row as usize] = record;
        self.map.insert(record.id, row);
        self.fifo.push_back(row);
    }

    /// Retires records with `created_slot + window_slots <= slot`, oldest first.
    pub(crate) fn retire(&mut self, slot: Slot, window_slots: u64) {
        while let Some(row) = self.fifo.front() {
            let created_slot = self.rows[row as usize].created_slot;
            assert!(created_slot <= slot, "operation record from the future");
            // `slot - created_slot` cannot overflow, unlike `created_slot + window_slots`.
            if slot - created_slot < window_slots {
                break;
            }
            self.retire_oldest();
        }
    }

    fn retire_oldest(&mut self) {
        let row = self.fifo.pop_front().expect("a record to retire");
        let executed_op = self.rows[row as usize].executed_op;
        assert!(
            executed_op >= self.retired_through,
            "operation records retire in execution order"
        );
        self.retired_through = executed_op;
        let id = self.rows[row as usize].id;
        assert_eq!(
            self.map.remove(id),
            Some(row),
            "operation {id} row mismatch"
        );
        self.rows[row as usize] = ROW_EMPTY;
        // Within the reserved capacity: this push never reallocates.
        assert!(self.free.len() < self.rows.len());
        self.free.push(row);
    }
}

/// `Vec::clone` keeps only the length; a clone must keep the free stack's reserved capacity so
/// that it, too, never allocates when a row is freed.
impl Clone for OperationTable {
    fn clone(&self) -> OperationTable {
        OperationTable {
            rows: self.rows.clone(),
            free: crate::fifo::clone_reserved(&self.free),
            map: self.map.clone(),
            fifo: self.fifo.clone(),
            retired_through: self.retired_through,
        }
    }
}
