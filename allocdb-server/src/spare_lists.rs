//! Lists recycled between the replica task and the client sessions: reply lists one way,
//! request lists the other.
//!
//! Each round the driver gathers every client connection's replies into one list and hands it
//! to that connection's session, which writes them out; each client frame's requests travel
//! the other way in a list of their own. A list for a connection that carries a thousand
//! clients is a few hundred KiB, past the allocator's mmap threshold, so a fresh one per round
//! was mapped, grown, zeroed page by page and unmapped again: about a tenth of the primary's
//! CPU in the profile at 1,024 clients for the replies, and 3–4 % (page faults under
//! `decode_requests`) for the requests. The receiving end gives each emptied list back here
//! and the sending end takes it again. Both ends are bounded: at most [`SPARE_LISTS_MAX`]
//! lists wait in each pool, none larger than [`SPARE_ITEMS_MAX`] items.

use std::sync::Mutex;

use allocdb_vsr::frame::{FrameReply, FrameRequest};

/// Emptied lists kept for reuse, per pool.
pub const SPARE_LISTS_MAX: usize = 16;
/// The largest list (in items of capacity) kept for reuse; larger ones are freed.
pub const SPARE_ITEMS_MAX: usize = 4_096;

/// The reply lists' pool: filled by the replica task, written and given back by the sessions.
pub type ReplyLists = SpareLists<FrameReply>;
/// The request lists' pool: filled by the sessions, emptied and given back by the replica task.
pub type RequestLists = SpareLists<FrameRequest>;

/// A shared pool of emptied lists.
pub struct SpareLists<T> {
    spare: Mutex<Vec<Vec<T>>>,
}

impl<T> Default for SpareLists<T> {
    fn default() -> Self {
        SpareLists {
            spare: Mutex::new(Vec::new()),
        }
    }
}

impl<T> SpareLists<T> {
    /// An empty list, reused when one is spare.
    pub fn take(&self) -> Vec<T> {
        self.lock().pop().unwrap_or_default()
    }

    /// Keeps `list`, emptied, for a later [`SpareLists::take`] (unless the pool is full or the
    /// list too large to hold on to).
    pub fn give_back(&self, mut list: Vec<T>) {
        if list.capacity() == 0 || list.capacity() > SPARE_ITEMS_MAX {
            return;
        }
        list.clear();
        let mut spare = self.lock();
        if spare.len() < SPARE_LISTS_MAX {
            spare.push(list);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<T>>> {
        // Only whole lists are pushed and popped: a panic elsewhere leaves a usable pool.
        self.spare
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::{ReplyLists, SPARE_ITEMS_MAX, SPARE_LISTS_MAX};
    use allocdb_vsr::ReplyBody;
    use allocdb_vsr::frame::FrameReply;

    fn list(capacity: usize, len: usize) -> Vec<FrameReply> {
        let mut list = Vec::with_capacity(capacity);
        for request_id in 0..len as u64 {
            list.push(FrameReply {
                request_id,
                body: ReplyBody::Invalid,
            });
        }
        list
    }

    #[test]
    fn a_list_given_back_is_taken_again_empty_with_its_capacity() {
        let lists = ReplyLists::default();
        lists.give_back(list(512, 300));
        let again = lists.take();
        assert!(again.is_empty());
        assert_eq!(again.capacity(), 512);
        assert_eq!(lists.take().capacity(), 0, "only one was spare");
    }

    #[test]
    fn the_pool_is_bounded_in_lists_and_in_size() {
        let lists = ReplyLists::default();
        lists.give_back(list(SPARE_ITEMS_MAX + 1, 1));
        assert_eq!(lists.take().capacity(), 0, "too large to keep");
        for _ in 0..SPARE_LISTS_MAX + 5 {
            lists.give_back(list(8, 1));
        }
        let kept = std::iter::from_fn(|| Some(lists.take()))
            .take_while(|l| l.capacity() > 0)
            .count();
        assert_eq!(kept, SPARE_LISTS_MAX);
    }
}
