//! What one seed simulates: the knobs the command line sets, and everything drawn from the
//! seed (cluster size, clients, the workload's mix, the fault schedule).
//!
//! Everything here is a pure function of `(seed, knobs)`, so a seed printed by a failing run
//! rebuilds exactly the same scenario.

use allocdb_wal::SplitMix64;

/// Settings shared by every seed of a run (the command line's knobs).
#[derive(Clone, Debug)]
pub struct Knobs {
    /// Simulated milliseconds of workload under faults.
    pub fault_ms: u64,
    /// Simulated milliseconds the healed cluster gets to finish every pending request.
    pub heal_ms: u64,
    /// Force the cluster size (3 or 5); `None` draws it from the seed.
    pub replicas: Option<u8>,
    /// Most clients per seed (at least 1); the seed draws 1..=this many, at least 2 when possible.
    pub clients_max: u8,
    /// Turn every fault off (a calm run: the checkers must still hold, and faults are not the cause).
    pub no_faults: bool,
    /// Disk faults (I/O errors, bit flips) on top of network faults and crashes.
    pub disk_faults: bool,
    /// BROKEN on purpose: the simulated disks acknowledge `sync` without persisting, so a crash
    /// loses acknowledged writes. Only to show the checkers catch lost data.
    pub lying_disks: bool,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            fault_ms: 12_000,
            heal_ms: 20_000,
            replicas: None,
            clients_max: 4,
            no_faults: false,
            disk_faults: true,
            lying_disks: false,
        }
    }
}

/// One fault, applied at `at_ms` and undone `for_ms` later (crashes: restarted then).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// When it starts, in simulated milliseconds since the start.
    pub at_ms: u64,
    /// How long it lasts.
    pub for_ms: u64,
    /// What it is.
    pub kind: FaultKind,
}

/// The kinds of faults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// No traffic between the two groups of replicas, either way.
    Partition {
        /// One side (replica indices).
        side: Vec<u8>,
    },
    /// No traffic from `from` to `to` (the reverse direction still works).
    OneWay {
        /// Sender.
        from: u8,
        /// Receiver.
        to: u8,
    },
    /// Whatever replica the clients believe is primary is cut off from every other node.
    IsolatePrimary,
    /// The link between two replicas drops segments at random (turmoil's fail rate).
    LinkLoss {
        /// One end.
        a: u8,
        /// The other end.
        b: u8,
        /// Per-delivery chance the link fails, in per mille.
        fail_per_mille: u32,
    },
    /// The links of one replica get slow: up to `latency_ms` per message.
    LatencySpike {
        /// The replica.
        replica: u8,
        /// The maximum latency.
        latency_ms: u64,
    },
    /// A replica loses power: its process dies and its disk loses unsynced writes.
    Crash {
        /// The replica.
        replica: u8,
    },
    /// Whatever replica the clients believe is primary loses power.
    CrashPrimary,
    /// A replica's disk returns I/O errors and flipped bits on reads (it halts and restarts).
    DiskErrors {
        /// The replica.
        replica: u8,
    },
    /// A replica crashes and one bit of its newest log segment rots before it restarts.
    CorruptLog {
        /// The replica.
        replica: u8,
    },
}

impl FaultKind {
    /// A short name for traces and reports.
    pub fn name(&self) -> &'static str {
        match self {
            FaultKind::Partition { .. } => "partition",
            FaultKind::OneWay { .. } => "one_way_partition",
            FaultKind::IsolatePrimary => "isolate_primary",
            FaultKind::LinkLoss { .. } => "link_loss",
            FaultKind::LatencySpike { .. } => "latency_spike",
            FaultKind::Crash { .. } => "crash",
            FaultKind::CrashPrimary => "crash_primary",
            FaultKind::DiskErrors { .. } => "disk_errors",
            FaultKind::CorruptLog { .. } => "corrupt_log",
        }
    }

    /// Whether this fault cuts network links (counted as a partition).
    pub fn is_partition(&self) -> bool {
        matches!(
            self,
            FaultKind::Partition { .. } | FaultKind::OneWay { .. } | FaultKind::IsolatePrimary
        )
    }
}

/// Everything one seed simulates.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// The seed.
    pub seed: u64,
    /// 3 or 5.
    pub replica_count: u8,
    /// Clients running the workload.
    pub client_count: u8,
    /// Hot resources every client fights over (ids `1..=hot_resources`).
    pub hot_resources: u8,
    /// Members of the one pool (ids `POOL_MEMBER_BASE..`).
    pub pool_members: u8,
    /// Longest pause between a client's calls, in milliseconds.
    pub think_ms_max: u64,
    /// The fault schedule, ordered by start time.
    pub faults: Vec<Fault>,
    /// Simulated milliseconds of workload under faults.
    pub fault_ms: u64,
    /// Simulated milliseconds for healing.
    pub heal_ms: u64,
    /// Whether the disks lie about sync (planted storage bug).
    pub lying_disks: bool,
    /// Ops between checkpoints: small in some seeds, so replicas checkpoint, trim their logs
    /// and catch up laggards by state transfer.
    pub checkpoint_interval_ops: u64,
}

/// The pool every pool member belongs to.
pub const POOL_ID: u128 = 1_000;
/// The first pool member's resource id.
pub const POOL_MEMBER_BASE: u128 = 2_000;

impl Scenario {
    /// Draws the scenario of `seed`.
    pub fn draw(seed: u64, knobs: &Knobs) -> Scenario {
        let mut rng = SplitMix64::new(seed ^ 0x5CE7_A210);
        let replica_count = knobs
            .replicas
            .unwrap_or(if rng.below(3) == 0 { 5 } else { 3 });
        assert!(matches!(replica_count, 3 | 5), "3 or 5 replicas");
        let clients_max = u64::from(knobs.clients_max.max(1));
        let client_count = u8::try_from(2 + rng.below(clients_max.max(2) - 1))
            .expect("bounded by clients_max")
            .min(knobs.clients_max.max(1));
        let hot_resources = u8::try_from(2 + rng.below(5)).expect("small");
        let pool_members = u8::try_from(2 + rng.below(5)).expect("small");
        let think_ms_max = 5 + rng.below(60);
        let checkpoint_interval_ops = if rng.below(3) == 0 {
            64 + rng.below(192)
        } else {
            1 << 16
        };
        let faults = if knobs.no_faults {
            Vec::new()
        } else {
            draw_faults(&mut rng, replica_count, knobs)
        };
        let scenario = Scenario {
            seed,
            replica_count,
            client_count,
            hot_resources,
            pool_members,
            think_ms_max,
            faults,
            fault_ms: knobs.fault_ms,
            heal_ms: knobs.heal_ms,
            lying_disks: knobs.lying_disks,
            checkpoint_interval_ops,
        };
        assert!(scenario.client_count >= 1);
        assert!(scenario.faults.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
        scenario
    }

    /// The hot resources' ids.
    pub fn hot_ids(&self) -> impl Iterator<Item = u128> {
        1..=u128::from(self.hot_resources)
    }

    /// The pool members' ids.
    pub fn pool_ids(&self) -> impl Iterator<Item = u128> {
        (0..u128::from(self.pool_members)).map(|i| POOL_MEMBER_BASE + i)
    }
}

/// A fault schedule: a few overlapping faults spread over the fault phase, always including
/// crashes of the primary (repeatedly) and a partition around it when the phase is long enough.
fn draw_faults(rng: &mut SplitMix64, replica_count: u8, knobs: &Knobs) -> Vec<Fault> {
    let n = u64::from(replica_count);
    let phase = knobs.fault_ms.max(1_000);
    let count = 4 + rng.below(phase / 1_500 + 1);
    let mut faults = Vec::new();
    // Leave the first 500 ms for the clients to create the resources.
    let start_min = 500;
    let mut corrupted = false;
    for index in 0..count {
        let at_ms = start_min + rng.below(phase - start_min);
        let for_ms = 200 + rng.below(2_500);
        let replica = u8::try_from(rng.below(n)).expect("below the replica count");
        let other = u8::try_from((u64::from(replica) + 1 + rng.below(n - 1)) % n).expect("small");
        // The first three faults crash the primary, isolate it, and crash it again, so every
        // seed fails over repeatedly; the rest are drawn.
        let pick = match index {
            0 | 2 => 0,
            1 => 6,
            _ => rng.below(10),
        };
        let kind = match pick {
            0 | 1 => FaultKind::CrashPrimary,
            2 => FaultKind::Crash { replica },
            3 => FaultKind::Partition {
                side: draw_side(rng, replica_count),
            },
            4 => FaultKind::OneWay {
                from: replica,
                to: other,
            },
            5 | 6 => FaultKind::IsolatePrimary,
            7 => FaultKind::LinkLoss {
                a: replica,
                b: other,
                fail_per_mille: u32::try_from(50 + rng.below(400)).expect("small"),
            },
            8 => FaultKind::LatencySpike {
                replica,
                latency_ms: 50 + rng.below(400),
            },
            _ if knobs.disk_faults && !corrupted && rng.below(2) == 0 => {
                // One replica at most gets a rotten log per seed: rot on a majority would be
                // data loss no protocol can prevent.
                corrupted = true;
                FaultKind::CorruptLog { replica }
            }
            _ if knobs.disk_faults => FaultKind::DiskErrors { replica },
            _ => FaultKind::Crash { replica },
        };
        faults.push(Fault {
            at_ms,
            for_ms,
            kind,
        });
    }
    faults.sort_by_key(|f| f.at_ms);
    faults
}

/// A random non-empty minority-or-majority side of a partition (never everyone).
fn draw_side(rng: &mut SplitMix64, replica_count: u8) -> Vec<u8> {
    let members = 1 + rng.below(u64::from(replica_count) - 1);
    let mut side: Vec<u8> = Vec::new();
    while (side.len() as u64) < members {
        let member = u8::try_from(rng.below(u64::from(replica_count))).expect("small");
        if !side.contains(&member) {
            side.push(member);
        }
    }
    side.sort_unstable();
    side
}

#[cfg(test)]
mod tests {
    use super::{FaultKind, Knobs, Scenario};

    #[test]
    fn a_seed_always_draws_the_same_scenario() {
        let knobs = Knobs::default();
        for seed in 0..50 {
            let a = Scenario::draw(seed, &knobs);
            let b = Scenario::draw(seed, &knobs);
            assert_eq!(a.faults, b.faults);
            assert_eq!(a.replica_count, b.replica_count);
            assert!(matches!(a.replica_count, 3 | 5));
            assert!(a.client_count >= 2 && a.client_count <= knobs.clients_max);
            // Every seed crashes the primary at least twice and isolates it once.
            let count = |wanted: &FaultKind| a.faults.iter().filter(|f| &f.kind == wanted).count();
            assert!(count(&FaultKind::CrashPrimary) >= 2, "seed {seed}");
            assert!(count(&FaultKind::IsolatePrimary) >= 1, "seed {seed}");
            let corrupt = a
                .faults
                .iter()
                .filter(|f| matches!(f.kind, FaultKind::CorruptLog { .. }))
                .count();
            assert!(corrupt <= 1);
        }
        let calm = Knobs {
            no_faults: true,
            ..Knobs::default()
        };
        assert!(Scenario::draw(3, &calm).faults.is_empty());
    }
}
