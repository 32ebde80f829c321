//! Client and operation identities.
//!
//! Writes the caller gives no operation id are keyed by the driver on its session (see
//! `numbering.rs`). Application keys, which a caller may store and retry from anywhere, are
//! made here: `issued_after_op` (an op this client saw committed) and a nonce. The nonce is 64
//! random bits drawn once per client (the client, unlike a replica, may use the OS's
//! randomness) plus a counter, so this client never repeats one, and another client repeats
//! one only if its random start lands within this client's count of it.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use allocdb_core::ids::OperationKey;
use allocdb_core::{Op, OperationId};
use allocdb_protocol::ClientId;

/// Hands out this client's application keys and request ids.
#[derive(Debug)]
pub(crate) struct IdSource {
    client_id: ClientId,
    nonce_base: u64,
    nonce_next: AtomicU64,
    request_next: AtomicU64,
}

impl IdSource {
    /// A source with fresh random identity.
    pub(crate) fn random() -> IdSource {
        IdSource::from_seed(random_u64(), random_u64())
    }

    /// A source with a given identity (tests).
    pub(crate) fn from_seed(client_high: u64, client_low: u64) -> IdSource {
        // A non-zero high half keeps the client id non-zero.
        let high = client_high.max(1);
        let client_id = (u128::from(high) << 64) | u128::from(client_low);
        assert_ne!(client_id, 0);
        IdSource {
            client_id,
            nonce_base: client_low ^ high.rotate_left(17),
            nonce_next: AtomicU64::new(1),
            request_next: AtomicU64::new(1),
        }
    }

    /// This client's id, carried by its hello and its `register_session`.
    pub(crate) fn client_id(&self) -> ClientId {
        self.client_id
    }

    /// A fresh application key issued after `issued_after_op`: never 0, never repeated by
    /// this client.
    pub(crate) fn application_key(&self, issued_after_op: Op) -> OperationId {
        loop {
            let counter = self.nonce_next.fetch_add(1, Ordering::Relaxed);
            assert!(counter < u64::MAX, "nonce counter exhausted");
            let nonce = self.nonce_base.wrapping_add(counter);
            let id = OperationKey::Application {
                issued_after_op,
                nonce,
            }
            .id();
            // Id 0 (op 0, nonce 0) is reserved for internal commands: take the next nonce.
            if id != 0 {
                return id;
            }
        }
    }

    /// A fresh request id: it matches a reply to its call.
    pub(crate) fn next_request_id(&self) -> u64 {
        let id = self.request_next.fetch_add(1, Ordering::Relaxed);
        // The driver's own requests use ids with bit 63 set.
        assert!(id < 1 << 63, "request counter exhausted");
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
    use allocdb_core::ids::OperationKey;

    #[test]
    fn application_keys_are_unique_non_zero_and_carry_the_op() {
        let source = IdSource::from_seed(0xABCD, 7);
        let mut seen = std::collections::BTreeSet::new();
        for op in 0..1000 {
            let id = source.application_key(op / 10);
            assert_ne!(id, 0);
            let OperationKey::Application {
                issued_after_op, ..
            } = OperationKey::of(id)
            else {
                panic!("{id} is not an application key");
            };
            assert_eq!(issued_after_op, op / 10);
            assert!(seen.insert(id), "operation id {id} repeated");
        }
        // A nonce that would make id 0 is skipped.
        let zero = IdSource::from_seed(1, 1u64.rotate_left(17));
        assert_eq!(zero.nonce_base, 0);
        zero.nonce_next
            .store(0, std::sync::atomic::Ordering::Relaxed);
        assert_ne!(zero.application_key(0), 0);
        assert_ne!(zero.client_id(), 0);
    }

    #[test]
    fn two_random_clients_differ() {
        let a = IdSource::random();
        let b = IdSource::random();
        assert_ne!(a.client_id(), b.client_id());
        assert_ne!(a.application_key(5), b.application_key(5));
    }
}
