//! Where the replica's disk work runs, so that the replica task does not wait for the disk on
//! its hot path.
//!
//! Two kinds of job leave the replica task: the log's sync (the driver begins one after handing
//! a round's messages to the links, [`allocdb_vsr::Replica::sync_log_begin`]) and a due
//! checkpoint's file ([`allocdb_vsr::Replica::checkpoint_begin`]). Each kind has its own
//! [`DiskWorker`], so a checkpoint's megabytes never hold a group commit back. The driver goes
//! on with the next inputs and hands a finished job back (`sync_log_end`, `checkpoint_end`) as
//! one more input. At most one job of a kind is in flight: appends made meanwhile wait for the
//! next sync, which covers all of them (group commit).

use allocdb_wal::{CheckpointWrite, FileSyncer, FileWriter, TailSync};
use tokio::sync::mpsc;

/// Blocking disk work handed out by the replica and handed back once done.
pub trait DiskJob: Send + 'static {
    /// Does the work (blocking); the job keeps its outcome for the replica.
    fn run(&mut self);
}

impl<F: FileSyncer> DiskJob for TailSync<F> {
    fn run(&mut self) {
        TailSync::run(self);
    }
}

impl<W: FileWriter> DiskJob for CheckpointWrite<W> {
    fn run(&mut self) {
        CheckpointWrite::run(self);
    }
}

/// Where a [`DiskWorker`] runs its jobs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DiskJobMode {
    /// On a dedicated thread (production): the disk blocks neither the replica task nor a
    /// runtime worker.
    #[default]
    Thread,
    /// On a task of the driver's own runtime: the simulator's choice, where storage is in
    /// memory and the schedule must stay deterministic (no thread outside the simulation).
    /// A checkpoint's parts start after `checkpoint_delay` of (simulated) time, so view
    /// changes, state transfers and crashes land while one is out, as on a slow disk.
    Task {
        /// How long each checkpoint part waits before it runs.
        checkpoint_delay: std::time::Duration,
    },
}

impl DiskJobMode {
    /// The mode for the log's syncs: the same, never delayed.
    #[must_use]
    pub fn for_syncs(self) -> DiskJobMode {
        match self {
            DiskJobMode::Thread => DiskJobMode::Thread,
            DiskJobMode::Task { .. } => DiskJobMode::Task {
                checkpoint_delay: std::time::Duration::ZERO,
            },
        }
    }
}

/// Runs one kind of disk job away from the replica task and returns each, finished, through
/// [`DiskWorker::finished`].
pub struct DiskWorker<J: DiskJob> {
    start: Starter<J>,
    finished: mpsc::Receiver<J>,
    in_flight: bool,
}

enum Starter<J> {
    Thread(std::sync::mpsc::SyncSender<J>),
    Task(mpsc::Sender<J>, std::time::Duration),
}

impl<J: DiskJob> DiskWorker<J> {
    /// A worker running in `mode` (a `Task` delays each job by its `checkpoint_delay`).
    /// `Thread` starts its thread, named `name`, here; it ends when the worker is dropped
    /// (after the job it is running, if any).
    ///
    /// # Panics
    /// If the operating system refuses a thread (the replica cannot run without it).
    pub fn new(mode: DiskJobMode, name: &str) -> DiskWorker<J> {
        // One job in flight, so one slot each way suffices.
        let (done_tx, finished) = mpsc::channel(1);
        let start = match mode {
            DiskJobMode::Thread => {
                let (jobs_tx, jobs) = std::sync::mpsc::sync_channel::<J>(1);
                std::thread::Builder::new()
                    .name(name.into())
                    .spawn(move || {
                        while let Ok(mut job) = jobs.recv() {
                            job.run();
                            if done_tx.blocking_send(job).is_err() {
                                break;
                            }
                        }
                    })
                    .unwrap_or_else(|error| panic!("the {name} thread must start: {error}"));
                Starter::Thread(jobs_tx)
            }
            DiskJobMode::Task { checkpoint_delay } => Starter::Task(done_tx, checkpoint_delay),
        };
        DiskWorker {
            start,
            finished,
            in_flight: false,
        }
    }

    /// Whether a job is running (a new one waits until it is back).
    pub fn in_flight(&self) -> bool {
        self.in_flight
    }

    /// Starts `job`.
    ///
    /// # Panics
    /// If a job is in flight already, or the worker's thread died (it only stops when this
    /// worker is dropped).
    pub fn start(&mut self, mut job: J) {
        assert!(!self.in_flight, "one disk job of a kind at a time");
        self.in_flight = true;
        match &self.start {
            Starter::Thread(jobs) => jobs
                .try_send(job)
                .unwrap_or_else(|_| panic!("the disk worker's thread is idle and alive")),
            Starter::Task(done, delay) => {
                let (done, delay) = (done.clone(), *delay);
                tokio::spawn(async move {
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    job.run();
                    // The driver may have stopped meanwhile; then nobody needs the outcome.
                    let _ = done.send(job).await;
                });
            }
        }
    }

    /// The job in flight, once it has run; pending forever when none is in flight.
    pub async fn finished(&mut self) -> J {
        if !self.in_flight {
            return std::future::pending().await;
        }
        let job = self
            .finished
            .recv()
            .await
            .expect("the worker holds a sender until the job in flight is back");
        self.in_flight = false;
        job
    }

    /// The job in flight if it is back already (without waiting).
    pub fn try_finished(&mut self) -> Option<J> {
        if !self.in_flight {
            return None;
        }
        let job = self.finished.try_recv().ok()?;
        self.in_flight = false;
        Some(job)
    }
}
