//! The expiry index: an indexed binary min-heap over `(deadline, lease id)` holding exactly the
//! live leases that have a deadline. Each lease row knows its heap position, so a renewal,
//! activation or termination updates or removes its entry in O(log n).
//!
//! Listing what is due never mutates the heap and never allocates: due entries form a subtree
//! at the root, and a best-first walk of that subtree with a small on-stack frontier yields
//! them in key order (see [`ExpiryIndex::due`]).

use crate::command::{Command, Request};
use crate::id_map::ROW_NONE;
use crate::ids::{LeaseId, Slot};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    deadline: Slot,
    lease: u128,
}

#[derive(Clone, Copy, Debug, Default)]
struct Entry {
    key: Key,
    row: u32,
}

#[derive(Clone, Debug)]
pub(crate) struct ExpiryIndex {
    heap: Vec<Entry>,
    len: u32,
    /// Heap position of each lease row, or `ROW_NONE`.
    position: Vec<u32>,
}

/// How many due entries one best-first pass yields; bounds the on-stack frontier.
const CHUNK: usize = 64;

impl ExpiryIndex {
    pub(crate) fn new(lease_rows_max: u32) -> ExpiryIndex {
        assert!(lease_rows_max > 0 && lease_rows_max < ROW_NONE);
        ExpiryIndex {
            heap: vec![Entry::default(); lease_rows_max as usize],
            len: 0,
            position: vec![ROW_NONE; lease_rows_max as usize],
        }
    }

    pub(crate) fn memory_bytes(&self) -> u64 {
        (self.heap.capacity() * size_of::<Entry>() + self.position.capacity() * size_of::<u32>())
            as u64
    }

    pub(crate) fn len(&self) -> u32 {
        self.len
    }

    pub(crate) fn contains(&self, row: u32) -> bool {
        self.position[row as usize] != ROW_NONE
    }

    fn key(&self, position: u32) -> Key {
        self.heap[position as usize].key
    }

    fn swap(&mut self, a: u32, b: u32) {
        self.heap.swap(a as usize, b as usize);
        self.position[self.heap[a as usize].row as usize] = a;
        self.position[self.heap[b as usize].row as usize] = b;
    }

    fn sift_up(&mut self, start: u32) {
        let mut position = start;
        while position > 0 {
            let parent = (position - 1) / 2;
            if self.key(position) >= self.key(parent) {
                break;
            }
            self.swap(position, parent);
            position = parent;
        }
    }

    fn sift_down(&mut self, start: u32) {
        let mut position = start;
        loop {
            let left = 2 * position + 1;
            if left >= self.len {
                break;
            }
            let right = left + 1;
            let child = if right < self.len && self.key(right) < self.key(left) {
                right
            } else {
                left
            };
            if self.key(child) >= self.key(position) {
                break;
            }
            self.swap(position, child);
            position = child;
        }
    }

    pub(crate) fn insert(&mut self, row: u32, deadline: Slot, lease: LeaseId) {
        assert!(!self.contains(row), "lease {} is already indexed", lease.0);
        assert!(self.len < u32::try_from(self.heap.len()).expect("u32 rows"));
        let position = self.len;
        self.heap[position as usize] = Entry {
            key: Key {
                deadline,
                lease: lease.0,
            },
            row,
        };
        self.position[row as usize] = position;
        self.len += 1;
        self.sift_up(position);
    }

    pub(crate) fn update(&mut self, row: u32, deadline: Slot) {
        let position = self.position[row as usize];
        assert!(position != ROW_NONE, "lease row {row} is not indexed");
        let old = self.heap[position as usize].key.deadline;
        self.heap[position as usize].key.deadline = deadline;
        if deadline < old {
            self.sift_up(position);
        } else {
            self.sift_down(position);
        }
    }

    pub(crate) fn remove(&mut self, row: u32) {
        let position = self.position[row as usize];
        assert!(position != ROW_NONE, "lease row {row} is not indexed");
        let last = self.len - 1;
        if position != last {
            self.swap(position, last);
        }
        self.len -= 1;
        self.position[row as usize] = ROW_NONE;
        if position < self.len {
            self.sift_down(position);
            self.sift_up(position);
        }
    }

    /// Fills `out` with `Expire` requests for the entries with `deadline < slot`, in key
    /// order, at most `limit`. Returns how many.
    ///
    /// Runs best-first passes of up to [`CHUNK`] entries. Each pass re-derives its frontier
    /// from the entries already yielded (a subtree at the root, since they are the smallest
    /// keys), so a whole call costs O(limit² / CHUNK + limit · CHUNK) with no scratch memory.
    pub(crate) fn due(&self, slot: Slot, limit: usize, out: &mut [Request]) -> usize {
        let limit = limit.min(out.len());
        let mut yielded = 0;
        while yielded < limit {
            let take = (limit - yielded).min(CHUNK);
            let after = yielded.checked_sub(1).map(|last| request_key(&out[last]));
            let mut frontier = Frontier::new();
            self.seed(after, slot, take, &mut frontier);
            let mut taken = 0;
            while taken < take {
                let Some(position) = frontier.pop_min() else {
                    break;
                };
                let entry = self.heap[position as usize];
                debug_assert!(entry.key.deadline < slot);
                debug_assert!(after.is_none_or(|after| entry.key > after));
                out[yielded] = Request {
                    operation_id: 0,
                    command: Command::Expire {
                        lease: LeaseId(entry.key.lease),
                        deadline_slot: entry.key.deadline,
                    },
                };
                yielded += 1;
                taken += 1;
                for child in [2 * position + 1, 2 * position + 2] {
                    self.offer(child, slot, take - taken, &mut frontier);
                }
            }
            if taken < take {
                break;
            }
        }
        debug_assert!(yielded <= limit);
        yielded
    }

    fn offer(&self, position: u32, slot: Slot, cap: usize, frontier: &mut Frontier) {
        if position < self.len && self.key(position).deadline < slot {
            frontier.insert(self.key(position), position, cap);
        }
    }

    /// Puts into `frontier` the `take` smallest due entries whose parent was already yielded
    /// (key `<= after`), walking the yielded subtree without a stack.
    fn seed(&self, after: Option<Key>, slot: Slot, take: usize, frontier: &mut Frontier) {
        let Some(after) = after else {
            self.offer(0, slot, take, frontier);
            return;
        };
        let yielded = |position: u32| position < self.len && self.key(position) <= after;
        assert!(yielded(0), "yielded entries must include the root");
        let mut position = 0;
        'walk: loop {
            let left = 2 * position + 1;
            for child in [left, left + 1] {
                if child < self.len && !yielded(child) {
                    self.offer(child, slot, take, frontier);
                }
            }
            if yielded(left) {
                position = left;
                continue;
            }
            if yielded(left + 1) {
                position = left + 1;
                continue;
            }
            // Climb until a left child whose right sibling is in the yielded subtree.
            loop {
                if position == 0 {
                    break 'walk;
                }
                let parent = (position - 1) / 2;
                if position == 2 * parent + 1 && yielded(position + 1) {
                    position += 1;
                    continue 'walk;
                }
                position = parent;
            }
        }
    }

    /// Visits every entry as `(lease row, deadline, lease id)`; for validation.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (u32, Slot, u128)> + '_ {
        self.heap[..self.len as usize]
            .iter()
            .map(|entry| (entry.row, entry.key.deadline, entry.key.lease))
    }

    /// The first position that breaks the heap order or the position index, if any.
    pub(crate) fn find_disorder(&self) -> Option<u32> {
        (0..self.len).find(|&position| {
            let entry = self.heap[position as usize];
            let misplaced = self.position.get(entry.row as usize) != Some(&position);
            let unordered = position > 0 && self.key((position - 1) / 2) > entry.key;
            misplaced || unordered
        })
    }

    /// How many lease rows claim a heap position; equals `len` when the index is consistent.
    pub(crate) fn positions_used(&self) -> usize {
        self.position.iter().filter(|&&p| p != ROW_NONE).count()
    }
}

fn request_key(request: &Request) -> Key {
    match request.command {
        Command::Expire {
            lease,
            deadline_slot,
        } => Key {
            deadline: deadline_slot,
            lease: lease.0,
        },
        _ => unreachable!("due() only writes expire requests"),
    }
}

/// The best-first frontier: heap positions sorted by key, largest first, so the minimum pops
/// from the end. Holds at most `cap` entries: a candidate beyond the `cap` smallest cannot be
/// among the next `cap` yielded, and neither can its descendants, whose keys are larger.
struct Frontier {
    items: [(Key, u32); CHUNK + 1],
    len: usize,
}

impl Frontier {
    fn new() -> Frontier {
        Frontier {
            items: [(Key::default(), 0); CHUNK + 1],
            len: 0,
        }
    }

    fn insert(&mut self, key: Key, position: u32, cap: usize) {
        assert!(cap <= CHUNK);
        if cap == 0 || (self.len >= cap && key > self.items[0].0) {
            return;
        }
        let mut index = self.len;
        while index > 0 && self.items[index - 1].0 < key {
            self.items[index] = self.items[index - 1];
            index -= 1;
        }
        self.items[index] = (key, position);
        self.len += 1;
        if self.len > cap {
            self.items.copy_within(1..self.len, 0);
            self.len -= 1;
        }
        debug_assert!(self.len <= cap);
    }

    fn pop_min(&mut self) -> Option<u32> {
        if self.len == 0 {
            return None;
        }
        self.len -= 1;
        Some(self.items[self.len].1)
    }
}

#[cfg(test)]
mod tests {
    use super::ExpiryIndex;
    use crate::command::{Command, Request};
    use crate::ids::LeaseId;
    use std::collections::BTreeSet;

    fn expected(model: &BTreeSet<(u64, u128)>, slot: u64, limit: usize) -> Vec<(u64, u128)> {
        model
            .iter()
            .filter(|(deadline, _)| *deadline < slot)
            .take(limit)
            .copied()
            .collect()
    }

    #[test]
    fn due_matches_a_sorted_model_under_churn() {
        let rows = 300_u32;
        let mut index = ExpiryIndex::new(rows);
        let mut model: BTreeSet<(u64, u128)> = BTreeSet::new();
        let mut deadlines = vec![None; rows as usize];
        let mut state = 5_u64;
        let mut out = vec![
            Request {
                operation_id: 0,
                command: Command::Revoke { lease: LeaseId(0) }
            };
            200
        ];
        for step in 0..4_000_u64 {
            state = crate::hash::mix64(state ^ step);
            let row = u32::try_from(state % u64::from(rows)).unwrap();
            let lease = u128::from(row) * 7 + 1;
            let deadline = (state >> 20) % 40;
            match deadlines[row as usize] {
                None => {
                    index.insert(row, deadline, LeaseId(lease));
                    model.insert((deadline, lease));
                    deadlines[row as usize] = Some(deadline);
                }
                Some(old) if state % 2 == 0 => {
                    index.update(row, deadline);
                    model.remove(&(old, lease));
                    model.insert((deadline, lease));
                    deadlines[row as usize] = Some(deadline);
                }
                Some(old) => {
                    index.remove(row);
                    model.remove(&(old, lease));
                    deadlines[row as usize] = None;
                }
            }
            assert_eq!(index.find_disorder(), None);
            let slot = (state >> 40) % 45;
            let limit = usize::try_from((state >> 8) % 200).unwrap();
            let count = index.due(slot, limit, &mut out);
            let got: Vec<(u64, u128)> = out[..count]
                .iter()
                .map(|request| match request.command {
                    Command::Expire {
                        lease,
                        deadline_slot,
                    } => (deadline_slot, lease.0),
                    _ => panic!("not an expire"),
                })
                .collect();
            assert_eq!(
                got,
                expected(&model, slot, limit),
                "step {step} slot {slot}"
            );
        }
    }
}
