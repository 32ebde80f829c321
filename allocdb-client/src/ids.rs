//! Client and operation identities.
//!
//! Operation ids must be unique across every client of a cluster inside the dedupe window, or
//! one client's write could be answered with another's stored outcome. Each client therefore
//! draws 64 random bits once (the client, unlike a replica, may use the OS's randomness) and
//! numbers its operations below them: `random << 64 | counter`.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use allocdb_core::OperationId;
use allocdb_vsr::ClientId;

/// Hands out this client's operation ids and request numbers.
#[derive(Debug)]
pub(crate) struct IdSource {
    client_id: ClientId,
    operation_high: u128,
    operation_next: AtomicU64,
    request_next: AtomicU64,
}

impl IdSource {
    /// A source with fresh random identity.
    pub(crate) fn random() -> IdSource {
        IdSource::from_seed(random_u64(), random_u64())
    }

    /// A source with a given identity (tests).
    pub(crate) fn from_seed(client_high: u64, client_low: u64) -> IdSource {
        // Zero is reserved for internal commands; a non-zero high half keeps every id non-zero.
        let high = client_high.max(1);
        let client_id = (u128::from(high) << 64) | u128::from(client_low);
        assert_ne!(client_id, 0);
        IdSource {
            client_id,
            operation_high: u128::from(high) << 64,
            operation_next: AtomicU64::new(1),
            request_next: AtomicU64::new(1),
        }
    }

    /// This client's id, carried by every request.
    pub(crate) fn client_id(&self) -> ClientId {
        self.client_id
    }

    /// A fresh operation id, never 0 and never repeated by this client.
    pub(crate) fn next_operation_id(&self) -> OperationId {
        let counter = self.operation_next.fetch_add(1, Ordering::Relaxed);
        assert!(counter < u64::MAX, "operation counter exhausted");
        let id = self.operation_high | u128::from(counter);
        debug_assert_ne!(id, 0);
        id
    }

    /// A fresh request number: it matches a reply to its call.
    pub(crate) fn next_request_id(&self) -> u64 {
        let id = self.request_next.fetch_add(1, Ordering::Relaxed);
        assert!(id < u64::MAX, "request counter exhausted");
        id
    }
}

/// 64 bits from the OS: `RandomState` is seeded from the OS's random source per process and
/// varies per instance; mixing the time and process id in guards against a platform where it
/// is not.
fn random_u64() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    hasher.write_u128(nanos);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::IdSource;

    #[test]
    fn operation_ids_are_unique_non_zero_and_carry_the_client_bits() {
        let source = IdSource::from_seed(0xABCD, 7);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..1000 {
            let id = source.next_operation_id();
            assert_ne!(id, 0);
            assert_eq!(id >> 64, 0xABCD);
            assert!(seen.insert(id), "operation id {id} repeated");
        }
        // A zero seed still yields non-zero ids.
        let zero = IdSource::from_seed(0, 0);
        assert_ne!(zero.client_id(), 0);
        assert_ne!(zero.next_operation_id() >> 64, 0);
    }

    #[test]
    fn two_random_clients_differ() {
        let a = IdSource::random();
        let b = IdSource::random();
        assert_ne!(a.client_id(), b.client_id());
        assert_ne!(a.next_operation_id(), b.next_operation_id());
    }
}
