//! Where the replica's log syncs run, so that the replica task never waits for the disk.
//!
//! The driver begins a sync after handing a round's messages to the links
//! ([`allocdb_vsr::Replica::sync_log_begin`]), gives it to a [`LogSyncer`], goes on with the
//! next inputs, and hands the finished sync back ([`allocdb_vsr::Replica::sync_log_end`]) as
//! one more input. At most one sync is in flight: appends made meanwhile wait for the next,
//! which covers all of them (group commit).

use allocdb_wal::{FileSyncer, TailSync};
use tokio::sync::mpsc;

/// Where a [`LogSyncer`] runs the syncs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogSyncMode {
    /// On a dedicated thread (production): the fsync blocks neither the replica task nor
    /// a runtime worker.
    #[default]
    Thread,
    /// On a task of the driver's own runtime: the simulator's choice, where storage is in
    /// memory and the schedule must stay deterministic (no thread outside the simulation).
    Task,
}

/// Runs log syncs away from the replica task and returns them, finished, through
/// [`LogSyncer::finished`].
pub struct LogSyncer<F: FileSyncer> {
    start: Starter<F>,
    finished: mpsc::Receiver<TailSync<F>>,
    in_flight: bool,
}

enum Starter<F: FileSyncer> {
    Thread(std::sync::mpsc::SyncSender<TailSync<F>>),
    Task(mpsc::Sender<TailSync<F>>),
}

impl<F: FileSyncer> LogSyncer<F> {
    /// A syncer running in `mode`. `Thread` starts its thread here; it ends when the syncer
    /// is dropped (after the sync it is running, if any).
    ///
    /// # Panics
    /// If the operating system refuses a thread (the replica cannot run without it).
    pub fn new(mode: LogSyncMode) -> LogSyncer<F> {
        // One sync in flight, so one slot each way suffices.
        let (done_tx, finished) = mpsc::channel(1);
        let start = match mode {
            LogSyncMode::Thread => {
                let (jobs_tx, jobs) = std::sync::mpsc::sync_channel::<TailSync<F>>(1);
                std::thread::Builder::new()
                    .name("allocdb-log-sync".into())
                    .spawn(move || {
                        while let Ok(mut sync) = jobs.recv() {
                            sync.run();
                            if done_tx.blocking_send(sync).is_err() {
                                break;
                            }
                        }
                    })
                    .expect("the log-sync thread must start");
                Starter::Thread(jobs_tx)
            }
            LogSyncMode::Task => Starter::Task(done_tx),
        };
        LogSyncer {
            start,
            finished,
            in_flight: false,
        }
    }

    /// Whether a sync is running (a new one waits until it is back).
    pub fn in_flight(&self) -> bool {
        self.in_flight
    }

    /// Starts `sync`.
    ///
    /// # Panics
    /// If a sync is in flight already, or the sync thread died (it only stops when this
    /// syncer is dropped).
    pub fn start(&mut self, mut sync: TailSync<F>) {
        assert!(!self.in_flight, "one log sync at a time");
        self.in_flight = true;
        match &self.start {
            Starter::Thread(jobs) => jobs
                .try_send(sync)
                .unwrap_or_else(|_| panic!("the log-sync thread is idle and alive")),
            Starter::Task(done) => {
                let done = done.clone();
                tokio::spawn(async move {
                    sync.run();
                    // The driver may have stopped meanwhile; then nobody needs the outcome.
                    let _ = done.send(sync).await;
                });
            }
        }
    }

    /// The sync in flight, once it has run; pending forever when none is in flight.
    pub async fn finished(&mut self) -> TailSync<F> {
        if !self.in_flight {
            return std::future::pending().await;
        }
        let sync = self
            .finished
            .recv()
            .await
            .expect("the syncer holds a sender until the sync in flight is back");
        self.in_flight = false;
        sync
    }

    /// The sync in flight if it is back already (without waiting).
    pub fn try_finished(&mut self) -> Option<TailSync<F>> {
        if !self.in_flight {
            return None;
        }
        let sync = self.finished.try_recv().ok()?;
        self.in_flight = false;
        Some(sync)
    }
}
