//! The lease-member table: rows shared by all leases, one per (lease, resource). A lease's
//! members form a singly linked chain in reservation order; free rows form another chain.
//! Member rows stay with a terminal lease (so `get_lease` can show them) until it retires.

use crate::id_map::ROW_NONE;

#[derive(Clone, Debug)]
pub(crate) struct MemberTable {
    /// Resource row of each member row.
    resource: Vec<u32>,
    /// Next member of the same lease, or next free row.
    next: Vec<u32>,
    free_head: u32,
    free_count: u32,
}

impl MemberTable {
    pub(crate) fn new(rows_max: u32) -> MemberTable {
        assert!(rows_max > 0 && rows_max < ROW_NONE);
        let next = (0..rows_max)
            .map(|row| {
                if row + 1 == rows_max {
                    ROW_NONE
                } else {
                    row + 1
                }
            })
            .collect();
        MemberTable {
            resource: vec![ROW_NONE; rows_max as usize],
            next,
            free_head: 0,
            free_count: rows_max,
        }
    }

    pub(crate) fn memory_bytes(&self) -> u64 {
        ((self.resource.capacity() + self.next.capacity()) * size_of::<u32>()) as u64
    }

    pub(crate) fn rows_max(&self) -> u32 {
        u32::try_from(self.next.len()).expect("rows_max is a u32")
    }

    pub(crate) fn free_count(&self) -> u32 {
        self.free_count
    }

    /// Builds a chain holding `resources` in order; returns its head. The caller checked
    /// `free_count`.
    pub(crate) fn alloc_chain(&mut self, resources: &[u32]) -> u32 {
        assert!(!resources.is_empty());
        assert!(
            resources.len() <= self.free_count as usize,
            "member table over capacity"
        );
        let head = self.free_head;
        let mut last = ROW_NONE;
        for &resource in resources {
            let row = self.free_head;
            assert!(row != ROW_NONE, "free chain shorter than free_count");
            self.free_head = self.next[row as usize];
            self.resource[row as usize] = resource;
            last = row;
        }
        // The taken rows were already chained in order; cut the chain after the last one.
        self.next[last as usize] = ROW_NONE;
        self.free_count -= u32::try_from(resources.len()).expect("bundle length is small");
        head
    }

    /// Returns the `count` rows of the chain at `head` to the free chain.
    pub(crate) fn free_chain(&mut self, head: u32, count: u32) {
        assert!(count > 0);
        let mut row = head;
        for _ in 0..count {
            assert!(row != ROW_NONE, "member chain shorter than its count");
            let next = self.next[row as usize];
            self.resource[row as usize] = ROW_NONE;
            self.next[row as usize] = self.free_head;
            self.free_head = row;
            row = next;
        }
        assert_eq!(row, ROW_NONE, "member chain longer than its count");
        self.free_count += count;
        assert!(self.free_count <= self.rows_max());
    }

    /// The resource rows of the chain at `head`, in order, written into `out`; returns how
    /// many. Bounded by `out.len()` so a corrupted chain cannot loop forever.
    pub(crate) fn read_chain(&self, head: u32, count: u32, out: &mut [u32]) -> usize {
        let mut row = head;
        let mut read = 0;
        while read < count as usize && read < out.len() && (row as usize) < self.next.len() {
            out[read] = self.resource[row as usize];
            row = self.next[row as usize];
            read += 1;
        }
        read
    }

    /// The next row of a chain; for validation walks.
    pub(crate) fn next_of(&self, row: u32) -> Option<u32> {
        self.next.get(row as usize).copied()
    }

    pub(crate) fn resource_of(&self, row: u32) -> Option<u32> {
        self.resource.get(row as usize).copied()
    }
}
