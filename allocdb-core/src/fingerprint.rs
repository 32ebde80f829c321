//! The fingerprint of a command: a deterministic 128-bit hash over its kind and every field.
//! A retry must carry the same command as the original; equal fingerprints stand for equal
//! commands (a collision needs ~2^64 commands under one operation id's window).

use crate::command::Command;
use crate::hash::Hasher128;

const DOMAIN_COMMAND: u64 = 0x434D_4446; // "CMDF"

/// The fingerprint of `command`.
pub(crate) fn fingerprint(command: &Command) -> u128 {
    let mut hasher = Hasher128::new(DOMAIN_COMMAND);
    match *command {
        Command::CreateResource { resource, pool } => {
            hasher.u64(1);
            hasher.u128(resource);
            hasher.u64(u64::from(pool.is_some()));
            hasher.u128(pool.unwrap_or(0));
        }
        Command::Reserve {
            resources,
            holder,
            ttl_slots,
        } => {
            hasher.u64(2);
            hasher.u64(resources.len() as u64);
            for &resource in resources.as_slice() {
                hasher.u128(resource);
            }
            hasher.u128(holder);
            hasher.u64(ttl_slots);
        }
        Command::ReserveAny {
            pool,
            count,
            holder,
            ttl_slots,
        } => {
            hasher.u64(3);
            hasher.u128(pool);
            hasher.u64(u64::from(count));
            hasher.u128(holder);
            hasher.u64(ttl_slots);
        }
        Command::Activate {
            lease,
            holder,
            epoch,
            ttl_slots,
        } => {
            hasher.u64(4);
            lease_holder_epoch(&mut hasher, lease.0, holder, epoch);
            hasher.u64(u64::from(ttl_slots.is_some()));
            hasher.u64(ttl_slots.unwrap_or(0));
        }
        Command::Renew {
            lease,
            holder,
            epoch,
            ttl_slots,
        } => {
            hasher.u64(5);
            lease_holder_epoch(&mut hasher, lease.0, holder, epoch);
            hasher.u64(ttl_slots);
        }
        Command::Release {
            lease,
            holder,
            epoch,
        } => {
            hasher.u64(6);
            lease_holder_epoch(&mut hasher, lease.0, holder, epoch);
        }
        Command::Revoke { lease } => {
            hasher.u64(7);
            hasher.u128(lease.0);
        }
        Command::Reclaim { lease } => {
            hasher.u64(8);
            hasher.u128(lease.0);
        }
        Command::Expire {
            lease,
            deadline_slot,
        } => {
            hasher.u64(9);
            hasher.u128(lease.0);
            hasher.u64(deadline_slot);
        }
        Command::RegisterSession { client } => {
            hasher.u64(10);
            hasher.u128(client);
        }
    }
    hasher.finish()
}

fn lease_holder_epoch(hasher: &mut Hasher128, lease: u128, holder: u128, epoch: u64) {
    hasher.u128(lease);
    hasher.u128(holder);
    hasher.u64(epoch);
}

#[cfg(test)]
mod tests {
    use super::fingerprint;
    use crate::command::{Bundle, Command};
    use crate::ids::LeaseId;

    #[test]
    fn every_field_changes_the_fingerprint() {
        let base = Command::Activate {
            lease: LeaseId(1),
            holder: 2,
            epoch: 3,
            ttl_slots: Some(4),
        };
        let variants = [
            Command::Activate {
                lease: LeaseId(9),
                holder: 2,
                epoch: 3,
                ttl_slots: Some(4),
            },
            Command::Activate {
                lease: LeaseId(1),
                holder: 9,
                epoch: 3,
                ttl_slots: Some(4),
            },
            Command::Activate {
                lease: LeaseId(1),
                holder: 2,
                epoch: 9,
                ttl_slots: Some(4),
            },
            Command::Activate {
                lease: LeaseId(1),
                holder: 2,
                epoch: 3,
                ttl_slots: None,
            },
            Command::Renew {
                lease: LeaseId(1),
                holder: 2,
                epoch: 3,
                ttl_slots: 4,
            },
        ];
        for variant in variants {
            assert_ne!(fingerprint(&base), fingerprint(&variant), "{variant:?}");
        }
        assert_eq!(fingerprint(&base), fingerprint(&base.clone()));
        let one = Bundle::from_slice(&[1, 2]).unwrap();
        let two = Bundle::from_slice(&[2, 1]).unwrap();
        let reserve = |resources| Command::Reserve {
            resources,
            holder: 1,
            ttl_slots: 1,
        };
        assert_ne!(fingerprint(&reserve(one)), fingerprint(&reserve(two)));
        let create = |pool| Command::CreateResource { resource: 1, pool };
        assert_ne!(fingerprint(&create(None)), fingerprint(&create(Some(0))));
    }
}
