//! The resource table: one row per resource ever created, never removed. Rows are appended
//! into a buffer reserved at construction; the pool free-list links live in the rows so that
//! taking a member out of a pool is O(1) wherever it sits in the list.

use crate::id_map::{IdMap, ROW_NONE};
use crate::ids::ResourceId;
use crate::views::ResourceState;

/// One resource.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ResourceRow {
    pub(crate) id: ResourceId,
    pub(crate) version: u64,
    /// Pool row, or `ROW_NONE`.
    pub(crate) pool: u32,
    /// Row of the live lease holding it, or `ROW_NONE`.
    pub(crate) lease: u32,
    /// Free-list neighbours inside its pool (meaningful only while available and pooled).
    pub(crate) free_prev: u32,
    pub(crate) free_next: u32,
    pub(crate) state: ResourceState,
}

#[derive(Debug)]
pub(crate) struct ResourceTable {
    pub(crate) rows: Vec<ResourceRow>,
    map: IdMap,
    rows_max: u32,
}

impl ResourceTable {
    pub(crate) fn new(rows_max: u32) -> ResourceTable {
        ResourceTable {
            rows: Vec::with_capacity(rows_max as usize),
            map: IdMap::new(rows_max),
            rows_max,
        }
    }

    pub(crate) fn memory_bytes(&self) -> u64 {
        (self.rows.capacity() * size_of::<ResourceRow>()) as u64 + self.map.memory_bytes()
    }

    pub(crate) fn len(&self) -> u32 {
        u32::try_from(self.rows.len()).expect("rows_max is a u32")
    }

    pub(crate) fn is_full(&self) -> bool {
        self.len() == self.rows_max
    }

    pub(crate) fn find(&self, id: ResourceId) -> Option<u32> {
        self.map.get(id)
    }

    pub(crate) fn map_len(&self) -> u32 {
        self.map.len()
    }

    pub(crate) fn row(&self, row: u32) -> &ResourceRow {
        &self.rows[row as usize]
    }

    pub(crate) fn row_mut(&mut self, row: u32) -> &mut ResourceRow {
        &mut self.rows[row as usize]
    }

    /// Appends an available resource. The caller checked that the id is new and a row is free.
    pub(crate) fn insert(&mut self, id: ResourceId, pool: u32) -> u32 {
        assert!(
            !self.is_full(),
            "resource table over capacity {}",
            self.rows_max
        );
        let row = self.len();
        // Within the reserved capacity: this push never reallocates.
        self.rows.push(ResourceRow {
            id,
            version: 1,
            pool,
            lease: ROW_NONE,
            free_prev: ROW_NONE,
            free_next: ROW_NONE,
            state: ResourceState::Available,
        });
        self.map.insert(id, row);
        assert_eq!(self.rows.capacity(), self.rows_max as usize);
        row
    }
}

/// `Vec::clone` keeps only the length; a clone must keep the reserved capacity so that it,
/// too, never allocates when rows are appended.
impl Clone for ResourceTable {
    fn clone(&self) -> ResourceTable {
        ResourceTable {
            rows: crate::fifo::clone_reserved(&self.rows),
            map: self.map.clone(),
            rows_max: self.rows_max,
        }
    }
}
