//! A fixed-capacity open-addressing map from a 128-bit id to a `u32` table row.
//!
//! Linear probing with backward-shift deletion (no tombstones, so probe lengths do not decay
//! under churn). The slot count is a power of two at least twice the row capacity, so the load
//! factor never exceeds one half. The hash is [`crate::hash::hash_id`]: fixed, never seeded.
//! Nothing observable ever iterates this map, so its layout cannot leak into results.

use crate::hash::hash_id;

/// "No row": marks an empty slot and absent links in every table.
pub(crate) const ROW_NONE: u32 = u32::MAX;

#[derive(Clone, Copy, Debug)]
struct Entry {
    id: u128,
    row: u32,
}

const EMPTY: Entry = Entry {
    id: 0,
    row: ROW_NONE,
};

/// Maps ids to rows for a table of at most `rows_max` rows.
#[derive(Clone, Debug)]
pub(crate) struct IdMap {
    entries: Vec<Entry>,
    mask: u64,
    len: u32,
    rows_max: u32,
}

impl IdMap {
    pub(crate) fn new(rows_max: u32) -> IdMap {
        assert!(rows_max > 0 && rows_max < ROW_NONE);
        let slots = (u64::from(rows_max) * 2).next_power_of_two().max(8);
        IdMap {
            entries: vec![EMPTY; usize::try_from(slots).expect("slots fit in memory")],
            mask: slots - 1,
            len: 0,
            rows_max,
        }
    }

    pub(crate) fn len(&self) -> u32 {
        self.len
    }

    pub(crate) fn memory_bytes(&self) -> u64 {
        (self.entries.capacity() * size_of::<Entry>()) as u64
    }

    fn home(&self, id: u128) -> u64 {
        hash_id(id) & self.mask
    }

    #[allow(clippy::cast_possible_truncation)] // Slot indices are below `mask`, a usize length.
    fn slot(&self, index: u64) -> &Entry {
        &self.entries[index as usize]
    }

    /// The slot holding `id`, or the empty slot where it would go.
    fn probe(&self, id: u128) -> (u64, bool) {
        let mut index = self.home(id);
        // The map is never more than half full, so a probe always meets an empty slot.
        for _ in 0..=self.mask {
            let entry = self.slot(index);
            if entry.row == ROW_NONE {
                return (index, false);
            }
            if entry.id == id {
                return (index, true);
            }
            index = (index + 1) & self.mask;
        }
        unreachable!(
            "id map has no empty slot: len {} of {}",
            self.len, self.rows_max
        );
    }

    pub(crate) fn get(&self, id: u128) -> Option<u32> {
        let (index, found) = self.probe(id);
        found.then(|| self.slot(index).row)
    }

    /// Inserts an id that is not present. The caller checked the table's capacity.
    #[allow(clippy::cast_possible_truncation)] // Slot indices are below `mask`, a usize length.
    pub(crate) fn insert(&mut self, id: u128, row: u32) {
        assert!(row != ROW_NONE, "row none cannot be mapped");
        assert!(
            self.len < self.rows_max,
            "id map over capacity {}",
            self.rows_max
        );
        let (index, found) = self.probe(id);
        assert!(!found, "id {id} is already mapped");
        self.entries[index as usize] = Entry { id, row };
        self.len += 1;
    }

    /// Removes `id`, returning its row.
    #[allow(clippy::cast_possible_truncation)] // Slot indices are below `mask`, a usize length.
    pub(crate) fn remove(&mut self, id: u128) -> Option<u32> {
        let (mut hole, found) = self.probe(id);
        if !found {
            return None;
        }
        let row = self.slot(hole).row;
        // Backward-shift: pull later entries of the cluster into the hole when their home
        // does not lie cyclically in (hole, index], so every entry stays reachable from home.
        let mut index = hole;
        loop {
            index = (index + 1) & self.mask;
            let entry = *self.slot(index);
            if entry.row == ROW_NONE {
                break;
            }
            let entry_home = self.home(entry.id);
            let stays = if hole <= index {
                hole < entry_home && entry_home <= index
            } else {
                hole < entry_home || entry_home <= index
            };
            if !stays {
                self.entries[hole as usize] = entry;
                hole = index;
            }
        }
        self.entries[hole as usize] = EMPTY;
        self.len -= 1;
        Some(row)
    }
}

#[cfg(test)]
mod tests {
    use super::IdMap;
    use std::collections::BTreeMap;

    #[test]
    fn matches_a_btreemap_under_churn() {
        let mut map = IdMap::new(64);
        let mut model: BTreeMap<u128, u32> = BTreeMap::new();
        let mut state: u64 = 1;
        for step in 0..20_000_u32 {
            state = crate::hash::mix64(state + u64::from(step));
            // A small id space with colliding homes exercises cluster shifting.
            let id = u128::from(state % 97) << (state % 3 * 40);
            if let Some(row) = model.remove(&id) {
                assert_eq!(map.remove(id), Some(row), "step {step}");
            } else if model.len() < 64 {
                model.insert(id, step);
                map.insert(id, step);
            }
            assert_eq!(map.len() as usize, model.len());
            for (key, row) in &model {
                assert_eq!(map.get(*key), Some(*row), "step {step} id {key}");
            }
            assert_eq!(map.get(u128::MAX), None);
        }
    }
}
