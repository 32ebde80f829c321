//! Warns, in the log, before a core table refuses anything.
//!
//! Metrics export rows and capacity per table (`allocdb_table_rows`, `allocdb_table_capacity`),
//! but nobody reads a dashboard at 3 a.m. When a table that refuses work once full (resources,
//! pools, live leases, live lease members), or that then forgets exactly-once records early
//! (application keys retire oldest first, sessions are evicted least recently used first, and
//! their clients' late retries are refused), reaches
//! [`TABLE_WARN_PERCENT`] of its capacity, the replica logs a WARN naming the table, its rows
//! and its capacity, and repeats it at most once per [`TABLE_WARN_INTERVAL`] while it stays
//! there; it logs an INFO once the table is back below. The lease history is not watched: it
//! is best-effort and gives its rows up rather than refuse a reserve.

use allocdb_core::{Config as CoreConfig, TableUsage};
use tokio::time::{Duration, Instant};
use tracing::{info, warn};

/// The utilisation, in percent, from which a table is reported.
pub const TABLE_WARN_PERCENT: u64 = 90;

/// The shortest time between two warnings about the same table.
pub const TABLE_WARN_INTERVAL: Duration = Duration::from_secs(10);

/// The watched tables, in the order of [`rows`].
const TABLES: [&str; 6] = [
    "resources",
    "pools",
    "leases",
    "lease_members",
    "operations",
    "sessions",
];

/// What each table of [`TABLES`] does when full, for the warning.
const WHEN_FULL: [&str; TABLES.len()] = [
    "it refuses new entries when full",
    "it refuses new entries when full",
    "it refuses new entries when full",
    "it refuses new entries when full",
    "when full the oldest application key retires early (a late retry of it is refused)",
    "when full a new session evicts the least recently used one",
];

/// Per-table warning state.
#[derive(Debug)]
pub struct TableWatch {
    capacity: [u32; TABLES.len()],
    /// When each table was last reported while at or above the threshold; `None` below it.
    warned_at: [Option<Instant>; TABLES.len()],
}

/// What [`TableWatch::observe`] reported for one table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableReport {
    /// WARN: at or above the threshold (first time, or again after the interval).
    NearlyFull,
    /// INFO: back below the threshold after a warning.
    Recovered,
}

fn rows(usage: &TableUsage) -> [u32; TABLES.len()] {
    [
        usage.resources,
        usage.pools,
        usage.leases,
        usage.lease_members,
        usage.operations,
        usage.sessions,
    ]
}

impl TableWatch {
    /// Watches the tables sized by `core`.
    pub fn new(core: &CoreConfig) -> TableWatch {
        TableWatch {
            capacity: [
                core.resources_max,
                core.pools_max,
                core.leases_max,
                core.lease_members_max,
                core.operations_max,
                core.clients_max,
            ],
            warned_at: [None; TABLES.len()],
        }
    }

    /// Compares `usage` with the capacities at `now`; logs and returns what it reported, as
    /// `(table, report)`, at most one per table.
    pub fn observe(
        &mut self,
        usage: &TableUsage,
        now: Instant,
    ) -> impl Iterator<Item = (&'static str, TableReport)> + use<> {
        let mut reports = [None; TABLES.len()];
        for (index, rows) in rows(usage).into_iter().enumerate() {
            let capacity = self.capacity[index];
            assert!(capacity > 0, "validated core config");
            let nearly_full = u64::from(rows) * 100 >= u64::from(capacity) * TABLE_WARN_PERCENT;
            let table = TABLES[index];
            let warned_at = &mut self.warned_at[index];
            match (nearly_full, *warned_at) {
                (true, Some(at)) if now.saturating_duration_since(at) < TABLE_WARN_INTERVAL => {}
                (true, _) => {
                    warn!(
                        table,
                        rows,
                        capacity,
                        "core table at {}% of its capacity: {}",
                        u64::from(rows) * 100 / u64::from(capacity),
                        WHEN_FULL[index]
                    );
                    *warned_at = Some(now);
                    reports[index] = Some((table, TableReport::NearlyFull));
                }
                (false, Some(_)) => {
                    info!(
                        table,
                        rows, capacity, "core table back below {TABLE_WARN_PERCENT}%"
                    );
                    *warned_at = None;
                    reports[index] = Some((table, TableReport::Recovered));
                }
                (false, None) => {}
            }
        }
        reports.into_iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::{TABLE_WARN_INTERVAL, TableReport, TableWatch};
    use allocdb_core::{Config, TableUsage};
    use tokio::time::{Duration, Instant};

    #[test]
    fn warns_at_the_threshold_rate_limited_and_reports_recovery() {
        let mut config = Config::small();
        config.leases_max = 100;
        let mut watch = TableWatch::new(&config);
        let start = Instant::now();
        let usage = |leases: u32, lease_history: u32| TableUsage {
            leases,
            lease_history,
            ..TableUsage::default()
        };
        let at = |seconds: u64| start + Duration::from_secs(seconds);
        // (live leases, history, seconds, expected report about the lease table)
        let cases = [
            (89, 0, 0, None),
            // History is bookkeeping: a table full of it is not a warning.
            (0, 100, 1, None),
            (90, 10, 2, Some(TableReport::NearlyFull)),
            (95, 0, 3, None),
            (
                99,
                0,
                2 + TABLE_WARN_INTERVAL.as_secs(),
                Some(TableReport::NearlyFull),
            ),
            (10, 0, 30, Some(TableReport::Recovered)),
            (10, 0, 31, None),
            (100, 0, 32, Some(TableReport::NearlyFull)),
        ];
        for (leases, history, seconds, expected) in cases {
            let reports: Vec<_> = watch
                .observe(&usage(leases, history), at(seconds))
                .collect();
            let got = reports
                .iter()
                .find(|(table, _)| *table == "leases")
                .map(|r| r.1);
            assert_eq!(got, expected, "{leases} live leases at {seconds} s");
            assert!(reports.iter().all(|(table, _)| *table == "leases"));
        }
    }
}
