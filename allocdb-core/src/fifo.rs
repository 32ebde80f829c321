//! A bounded ring buffer, allocated once. Holds retirement queues whose order is insertion
//! order; pushing past the capacity is a programmer error because every caller sizes the ring
//! to the table whose rows it queues.

/// A first-in first-out queue of at most `capacity` values.
#[derive(Clone, Debug)]
pub(crate) struct Fifo<T: Copy + Default> {
    buffer: Vec<T>,
    head: u32,
    len: u32,
}

impl<T: Copy + Default> Fifo<T> {
    pub(crate) fn new(capacity: u32) -> Fifo<T> {
        assert!(capacity > 0, "a fifo holds at least one value");
        Fifo {
            buffer: vec![T::default(); capacity as usize],
            head: 0,
            len: 0,
        }
    }

    pub(crate) fn capacity(&self) -> u32 {
        u32::try_from(self.buffer.len()).expect("capacity was given as u32")
    }

    pub(crate) fn len(&self) -> u32 {
        self.len
    }

    pub(crate) fn is_full(&self) -> bool {
        self.len == self.capacity()
    }

    pub(crate) fn memory_bytes(&self) -> u64 {
        (self.buffer.capacity() * size_of::<T>()) as u64
    }

    fn position(&self, index: u32) -> usize {
        debug_assert!(index < self.capacity());
        let sum = u64::from(self.head) + u64::from(index);
        let wrapped = sum % u64::from(self.capacity());
        usize::try_from(wrapped).expect("below a u32 capacity")
    }

    pub(crate) fn push_back(&mut self, value: T) {
        assert!(
            !self.is_full(),
            "fifo overflow: capacity {}",
            self.capacity()
        );
        let position = self.position(self.len);
        self.buffer[position] = value;
        self.len += 1;
        assert!(self.len <= self.capacity());
    }

    pub(crate) fn front(&self) -> Option<T> {
        if self.len == 0 {
            None
        } else {
            Some(self.buffer[self.head as usize])
        }
    }

    pub(crate) fn pop_front(&mut self) -> Option<T> {
        let value = self.front()?;
        self.head = if self.head + 1 == self.capacity() {
            0
        } else {
            self.head + 1
        };
        self.len -= 1;
        Some(value)
    }

    /// The value `index` places behind the front.
    pub(crate) fn get(&self, index: u32) -> T {
        assert!(index < self.len, "fifo index {index} out of {}", self.len);
        self.buffer[self.position(index)]
    }

    /// Values from front to back.
    pub(crate) fn iter(&self) -> impl Iterator<Item = T> + '_ {
        (0..self.len).map(|index| self.get(index))
    }
}

/// A copy of `values` with the same reserved capacity (`Vec::clone` keeps only the length).
pub(crate) fn clone_reserved<T: Clone>(values: &Vec<T>) -> Vec<T> {
    let mut copy = Vec::with_capacity(values.capacity());
    copy.extend_from_slice(values);
    assert!(copy.capacity() >= values.capacity());
    copy
}

#[cfg(test)]
mod tests {
    use super::Fifo;

    #[test]
    fn wraps_around_in_order() {
        let mut fifo: Fifo<u32> = Fifo::new(3);
        for round in 0..10 {
            fifo.push_back(round);
            fifo.push_back(round + 100);
            assert_eq!(fifo.iter().collect::<Vec<_>>(), vec![round, round + 100]);
            assert_eq!(fifo.pop_front(), Some(round));
            assert_eq!(fifo.pop_front(), Some(round + 100));
            assert_eq!(fifo.pop_front(), None);
        }
        fifo.push_back(1);
        fifo.push_back(2);
        fifo.push_back(3);
        assert!(fifo.is_full());
    }

    #[test]
    #[should_panic(expected = "fifo overflow")]
    fn overflow_is_a_programmer_error() {
        let mut fifo: Fifo<u8> = Fifo::new(1);
        fifo.push_back(1);
        fifo.push_back(2);
    }
}
