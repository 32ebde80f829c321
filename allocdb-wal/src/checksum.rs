//! The 128-bit checksum that chains log records and names checkpoints.
//!
//! crc32c (hardware-accelerated, 32 bits) guards each record against torn writes and bit rot,
//! but 32 bits are too few to *identify* a record: the hash chain lets a replica decide that
//! its log and a peer's agree up to an op, so a collision there would silently merge two
//! histories. The chain therefore uses this 128-bit, deterministic, non-cryptographic hash.
//!
//! Construction (a MurmurHash3-x64-128-style mixer, written for AllocDB and specified here
//! because it is persisted): two 64-bit lanes start at `len` and `len ^ SEED_LANE_2`; every
//! 16-byte block (a zero-padded last block included) is read as two little-endian `u64`
//! words `k1, k2` and mixed with the multiply/rotate rounds below; the lanes are finished
//! with `len`, cross-added and passed through the 64-bit avalanche finaliser. The result is
//! `u128::from(h2) << 64 | u128::from(h1)`. Same bytes, any machine, same checksum.

use allocdb_core::Writer;

/// A record's, or a checkpoint's, 128-bit identity.
pub type Checksum = u128;

const C1: u64 = 0x87c3_7b91_1142_53d5;
const C2: u64 = 0x4cf5_ad43_2745_937f;
const SEED_LANE_2: u64 = 0x9e37_79b9_7f4a_7c15;

/// The 128-bit checksum of `bytes` (see the module documentation for the exact function).
///
/// ```
/// use allocdb_wal::checksum128;
/// assert_eq!(checksum128(b"abc"), checksum128(b"abc"));
/// assert_ne!(checksum128(b"abc"), checksum128(b"abd"));
/// ```
pub fn checksum128(bytes: &[u8]) -> Checksum {
    let len = bytes.len() as u64;
    let mut h1 = len;
    let mut h2 = len ^ SEED_LANE_2;
    let mut blocks = bytes.chunks_exact(16);
    for block in &mut blocks {
        let (k1, k2) = words(block);
        round(&mut h1, &mut h2, k1, k2);
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        let mut padded = [0_u8; 16];
        padded[..tail.len()].copy_from_slice(tail);
        let (k1, k2) = words(&padded);
        round(&mut h1, &mut h2, k1, k2);
    }
    h1 ^= len;
    h2 ^= len;
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    h1 = avalanche(h1);
    h2 = avalanche(h2);
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    (u128::from(h2) << 64) | u128::from(h1)
}

/// The parent checksum of op 1: distinct per cluster, so two clusters' logs never chain.
pub fn root_checksum(cluster_id: u128) -> Checksum {
    let mut bytes = Vec::with_capacity(32);
    let mut writer = Writer::new(&mut bytes);
    writer.bytes(b"allocdb-root-v1\0");
    writer.u128(cluster_id);
    checksum128(&bytes)
}

fn words(block: &[u8]) -> (u64, u64) {
    debug_assert_eq!(block.len(), 16);
    let mut low = [0_u8; 8];
    let mut high = [0_u8; 8];
    low.copy_from_slice(&block[..8]);
    high.copy_from_slice(&block[8..16]);
    (u64::from_le_bytes(low), u64::from_le_bytes(high))
}

fn round(h1: &mut u64, h2: &mut u64, k1: u64, k2: u64) {
    let k1 = k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
    *h1 ^= k1;
    *h1 = h1
        .rotate_left(27)
        .wrapping_add(*h2)
        .wrapping_mul(5)
        .wrapping_add(0x52dc_e729);
    let k2 = k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
    *h2 ^= k2;
    *h2 = h2
        .rotate_left(31)
        .wrapping_add(*h1)
        .wrapping_mul(5)
        .wrapping_add(0x3849_5ab5);
}

fn avalanche(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

#[cfg(test)]
mod tests {
    use super::{checksum128, root_checksum};

    #[test]
    fn is_pinned_and_sensitive_to_every_byte_and_length() {
        // Pinned: the function is persisted, so it must never change silently.
        assert_eq!(checksum128(b""), checksum128(&[]));
        let base: Vec<u8> = (0..=255_u8).collect();
        let reference = checksum128(&base);
        for index in 0..base.len() {
            let mut changed = base.clone();
            changed[index] ^= 1;
            assert_ne!(checksum128(&changed), reference, "byte {index}");
        }
        // Zero padding of the tail must not make lengths collide.
        assert_ne!(checksum128(&[0]), checksum128(&[0, 0]));
        assert_ne!(checksum128(&[]), checksum128(&[0]));
        assert_ne!(root_checksum(1), root_checksum(2));
    }

    #[test]
    fn known_value() {
        // Pinned values: the function is persisted, so a change must be a deliberate format bump.
        assert_eq!(
            checksum128(b"allocdb"),
            0xe164_2248_3911_1552_7972_8922_72e9_3be7
        );
        assert_eq!(
            checksum128(&[0xab; 100]),
            0xbe8b_4c3c_2047_f9c4_4093_c87f_12d9_6a63
        );
    }
}
