//! What one seed simulates: the knobs the command line sets, and everything drawn from the
//! seed (cluster size, clients, the workload's mix, the fault schedule).
//!
//! Everything here is a pure function of `(seed, knobs)`, so a seed printed by a failing run
//! rebuilds exactly the same scenario.

use allocdb_wal::SplitMix64;

/// Settings shared by every seed of a run (the command line's knobs).
#[derive(Clone, Debug)]
// Each bool is one independent command-line flag.
#[allow(clippy::struct_excessive_bools)]
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
    /// Replica clocks run fast or slow, each by a rate drawn within [`CLOCK_DRIFT_PPM_MAX`].
    pub clock_drift: bool,
    /// Process pauses (SIGSTOP-like), mostly of the primary.
    pub pauses: bool,
    /// Phases with more than f replicas crashed or cut off at once.
    pub beyond_f: bool,
    /// Reformat faults: a replica loses its whole disk and is formatted again (only while
    /// every other replica is current: more than f lost disks cannot keep acknowledged data).
    pub reformat: bool,
}

/// The drift bound every simulated replica is configured with (`clock_drift_ppm_max`) and
/// within which the simulator draws each replica's clock rate: 10 %, ten times production's
/// default, so that a primary which did not step its clock down would expire leases early by
/// far more than the one or two slots of rounding the expiry checker tolerates.
pub const CLOCK_DRIFT_PPM_MAX: u32 = 100_000;

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
            clock_drift: true,
            pauses: true,
            beyond_f: true,
            reformat: true,
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
    /// A replica's process stops being scheduled (SIGSTOP) and resumes later with its state
    /// intact: every message to or from it waits in the network and arrives on resume.
    Pause {
        /// The replica; `None`: whatever replica the clients believe is primary.
        replica: Option<u8>,
    },
    /// More than f replicas fail at once: they crash (power loss) or are cut off from every
    /// other node, and come back together. No majority remains, so nothing may commit; safety
    /// must hold throughout and progress only after they return.
    BeyondF {
        /// The replicas (f + 1 or more of them).
        replicas: Vec<u8>,
        /// Crash them (true) or cut them off (false).
        crash: bool,
    },
    /// A replica loses its whole disk, is formatted again as `allocdb format --if-empty`
    /// formats an empty data directory, and restarts.
    Reformat {
        /// The replica.
        replica: u8,
    },
    /// A second process opens a running replica's data directory (an operator's mistake, or
    /// a supervisor starting a replica twice): it must be refused and change nothing.
    SecondProcess {
        /// The replica whose directory it opens.
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
            FaultKind::Pause { .. } => "pause",
            FaultKind::BeyondF { .. } => "beyond_f",
            FaultKind::Reformat { .. } => "reformat",
            FaultKind::SecondProcess { .. } => "second_process",
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
    /// Each replica's clock rate error in ppm (positive: fast), within
    /// [`CLOCK_DRIFT_PPM_MAX`]; all zero without clock drift.
    pub clock_rates_ppm: Vec<i32>,
    /// How long each part of a checkpoint waits before it runs (a slow disk), so faults land
    /// while one is out.
    pub checkpoint_delay_ms: u64,
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
        let mut faults = if knobs.no_faults {
            Vec::new()
        } else {
            draw_faults(&mut rng, replica_count, knobs)
        };
        // The newer fault kinds draw from their own stream, so they leave the classic schedule
        // of every seed as it was.
        let mut extra = SplitMix64::new(seed ^ 0x00E5_74AF_4017);
        if !knobs.no_faults {
            draw_extra_faults(&mut extra, replica_count, knobs, &mut faults);
        }
        let clock_rates_ppm = if knobs.clock_drift && !knobs.no_faults {
            draw_clock_rates(&mut extra, replica_count)
        } else {
            vec![0; usize::from(replica_count)]
        };
        // Drawn last, so every earlier draw of the seed stays as it was.
        let checkpoint_delay_ms = if knobs.no_faults || extra.below(2) == 0 {
            0
        } else {
            1 + extra.below(300)
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
            clock_rates_ppm,
            checkpoint_delay_ms,
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

/// Adds the newer fault kinds the knobs ask for (pauses, more than f at once, reformats) to
/// `faults`, keeping it ordered by start time.
fn draw_extra_faults(
    rng: &mut SplitMix64,
    replica_count: u8,
    knobs: &Knobs,
    faults: &mut Vec<Fault>,
) {
    let n = u64::from(replica_count);
    let phase = knobs.fault_ms.max(1_000);
    let start_min = 500;
    let at = |rng: &mut SplitMix64| start_min + rng.below(phase - start_min);
    if knobs.pauses {
        // One to three pauses; the first always of the primary, the case that matters: it
        // resumes believing it leads, with a clock that jumped by the pause.
        for index in 0..=rng.below(3) {
            let replica = (index > 0 && rng.below(2) == 0)
                .then(|| u8::try_from(rng.below(n)).expect("below the replica count"));
            let at_ms = at(rng);
            faults.push(Fault {
                at_ms,
                for_ms: 100 + rng.below(1_500),
                kind: FaultKind::Pause { replica },
            });
        }
    }
    if knobs.beyond_f && rng.below(2) == 0 {
        // f + 1 (sometimes all) replicas at once, for up to two seconds.
        let f = (n - 1) / 2;
        let count = if rng.below(4) == 0 { n } else { f + 1 };
        let mut replicas: Vec<u8> = Vec::new();
        while (replicas.len() as u64) < count {
            let replica = u8::try_from(rng.below(n)).expect("small");
            if !replicas.contains(&replica) {
                replicas.push(replica);
            }
        }
        replicas.sort_unstable();
        let at_ms = at(rng);
        faults.push(Fault {
            at_ms,
            for_ms: 300 + rng.below(1_700),
            kind: FaultKind::BeyondF {
                replicas,
                crash: rng.below(2) == 0,
            },
        });
    }
    if knobs.reformat {
        let at_ms = at(rng);
        faults.push(Fault {
            at_ms,
            for_ms: 200 + rng.below(1_500),
            kind: FaultKind::Reformat {
                replica: u8::try_from(rng.below(n)).expect("small"),
            },
        });
    }
    if knobs.reformat {
        // Drawn after every other kind, so the earlier kinds of a seed stay as they were.
        for _ in 0..2 {
            faults.push(Fault {
                at_ms: at(rng),
                for_ms: 0,
                kind: FaultKind::SecondProcess {
                    replica: u8::try_from(rng.below(n)).expect("small"),
                },
            });
        }
    }
    faults.sort_by_key(|f| f.at_ms);
}

/// Each replica's clock rate within the bound; in half the seeds one replica runs fast by
/// exactly the bound, the case that would expire leases early if a primary trusted it.
fn draw_clock_rates(rng: &mut SplitMix64, replica_count: u8) -> Vec<i32> {
    let bound = i32::try_from(CLOCK_DRIFT_PPM_MAX).expect("small");
    let span = u64::from(CLOCK_DRIFT_PPM_MAX) * 2 + 1;
    let mut rates: Vec<i32> = (0..replica_count)
        .map(|_| i32::try_from(rng.below(span)).expect("small") - bound)
        .collect();
    if rng.below(2) == 0 {
        let fastest = usize::try_from(rng.below(u64::from(replica_count))).expect("small");
        rates[fastest] = bound;
    }
    assert!(rates.iter().all(|rate| rate.abs() <= bound));
    rates
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
