//! What `allocdb benchmark` has seen so far, and how it says so: the per-second progress line,
//! the answer counts by result code, and which answers end a run.
//!
//! A long benchmark is only worth running if it stops at the first sign that the cluster refuses
//! live work for a reason of its own (a full bookkeeping table) and says when; and if a reader
//! can see throughput, latency and each replica's memory second by second while it runs.
//!
//! Progress line (one per second, on stderr):
//!
//! `[  12s] 104,233 ops/s (avg 101,002) p50 1.9 ms p99 3.1 ms rss 201/188/190 MiB`
//!
//! elapsed measured seconds; ops answered in that second (per second of wall time since the
//! previous line) and since the warm-up ended; the p50 and p99 latency of the calls answered in
//! that second; each replica's resident memory (`VmRSS`), `-` for one whose memory cannot be
//! read, and `rss -` when the benchmark did not start the replicas itself.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use allocdb_core::ResultCode;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::histogram::Histogram;

/// Distinct values of a result code on the wire (`u8`): the tally has one counter per value, so
/// codes added later are counted without a change here.
const CODE_VALUES_MAX: usize = 256;

/// What an answer means for a benchmark run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnswerClass {
    /// A normal outcome of a contended workload: the command was executed (or refused because
    /// another client won the race). Counted.
    Expected,
    /// The cluster refused live work for a reason of its own bookkeeping, not the workload's
    /// doing: a full table, or an exactly-once record it no longer keeps (`session_evicted`,
    /// `request_stale`, `operation_expired`; the client library normally hides the first
    /// two, so seeing one means it could not). Ends the run with a failure.
    Bookkeeping,
    /// Anything else (the benchmark issued a command the cluster considers wrong). Ends the run
    /// with a failure.
    Unexpected,
}

/// Classifies a result code for the benchmark's workloads (reserve, `reserve_any`, release).
pub fn classify(code: ResultCode) -> AnswerClass {
    match code {
        ResultCode::Ok | ResultCode::ResourceBusy | ResultCode::PoolExhausted => {
            AnswerClass::Expected
        }
        ResultCode::ResourceTableFull
        | ResultCode::PoolTableFull
        | ResultCode::LeaseTableFull
        | ResultCode::MemberTableFull
        | ResultCode::OperationTableFull
        | ResultCode::SessionEvicted
        | ResultCode::RequestStale
        | ResultCode::OperationExpired => AnswerClass::Bookkeeping,
        // A wildcard on purpose: a code added later ends the run (loudly) until someone decides
        // it is a normal outcome; the tests check every `*_table_full` code is `Bookkeeping`.
        _ => AnswerClass::Unexpected,
    }
}

/// Answers counted by result code, and calls that ended without one.
#[derive(Clone, Debug)]
pub struct Tally {
    codes: [u64; CODE_VALUES_MAX],
    /// Calls that ended without a result code (indefinite, timeout, unavailable, closed,
    /// invalid).
    pub errors: u64,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            codes: [0; CODE_VALUES_MAX],
            errors: 0,
        }
    }
}

impl Tally {
    /// Counts one answer with `code`.
    pub fn count(&mut self, code: ResultCode) {
        self.codes[usize::from(code as u8)] += 1;
    }

    /// Answers counted with `code`.
    pub fn of(&self, code: ResultCode) -> u64 {
        self.codes[usize::from(code as u8)]
    }

    /// `answers ok=N resource_busy=N ... errors=N`: every code seen (in numeric order), then the
    /// calls that ended without a code.
    pub fn line(&self) -> String {
        let mut line = String::from("answers");
        for code in ResultCode::ALL {
            let count = self.of(code);
            if count > 0 {
                let _ = write!(line, " {}={count}", code.name());
            }
        }
        let known: u64 = ResultCode::ALL.iter().map(|code| self.of(*code)).sum();
        let unknown = self.codes.iter().sum::<u64>() - known;
        if unknown > 0 {
            let _ = write!(line, " unnamed_code={unknown}");
        }
        let _ = write!(line, " errors={}", self.errors);
        line
    }
}

/// What ended a run early.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    /// When, relative to the end of the warm-up (negative: during the warm-up).
    pub at_secs: f64,
    /// What happened.
    pub what: String,
    /// Whether it was a bookkeeping refusal (a full table or a forgotten exactly-once record).
    pub bookkeeping: bool,
}

impl Failure {
    /// The message `allocdb benchmark failed: ...` prints.
    pub fn message(&self) -> String {
        let when = if self.at_secs < 0.0 {
            "during the warm-up".to_string()
        } else {
            format!("after {:.1} s of measurement", self.at_secs)
        };
        if self.bookkeeping {
            format!(
                "BOOKKEEPING REFUSAL {when}: {}; a full table refused live work",
                self.what
            )
        } else {
            format!("{when}: {}", self.what)
        }
    }
}

/// One second's worth of measurements, ready to print.
#[derive(Clone, Debug, PartialEq)]
pub struct ProgressSample {
    /// Time since the warm-up ended.
    pub elapsed: Duration,
    /// Whether the line ends a partial second (the end of the run or a failure): its elapsed
    /// time is printed to a tenth of a second.
    pub partial: bool,
    /// Ops answered since the previous line.
    pub ops_interval: u64,
    /// Wall time since the previous line.
    pub interval: Duration,
    /// Ops answered since the warm-up ended.
    pub ops_total: u64,
    /// Latency quantiles of this interval's calls, in microseconds (`None`: no call answered).
    pub p50_us: Option<u64>,
    /// As `p50_us`.
    pub p99_us: Option<u64>,
    /// Each replica's resident memory in KiB (`None` inside: unreadable); `None`: the replicas
    /// are not this process's children.
    pub rss_kib: Option<Vec<Option<u64>>>,
}

impl ProgressSample {
    /// The progress line (see the module documentation).
    pub fn line(&self) -> String {
        let latency = |value: Option<u64>| value.map_or_else(|| "-".to_string(), format_ms);
        let rss = match &self.rss_kib {
            None => "-".to_string(),
            Some(replicas) => {
                let each: Vec<String> = replicas
                    .iter()
                    .map(|kib| kib.map_or_else(|| "-".to_string(), |kib| (kib / 1024).to_string()))
                    .collect();
                format!("{} MiB", each.join("/"))
            }
        };
        let elapsed = if self.partial {
            format!("{:>4.1}", self.elapsed.as_secs_f64())
        } else {
            format!("{:>4}", self.elapsed.as_secs_f64().round())
        };
        format!(
            "[{elapsed}s] {} ops/s (avg {}) p50 {} p99 {} rss {rss}",
            thousands(per_second(self.ops_interval, self.interval)),
            thousands(per_second(self.ops_total, self.elapsed)),
            latency(self.p50_us),
            latency(self.p99_us),
        )
    }
}

/// Shared by the client tasks (which record) and the progress loop (which samples).
pub struct Recorder {
    warm_until: Instant,
    stop_at: Instant,
    state: Mutex<RecorderState>,
    failed: AtomicBool,
    /// Wakes the progress loop at the first failure.
    pub failure_notify: Notify,
}

#[derive(Default)]
struct RecorderState {
    interval: Histogram,
    total: Histogram,
    tally: Tally,
    failure: Option<Failure>,
}

impl Recorder {
    /// Measures calls answered in `[warm_until, stop_at]`; counts every answer.
    pub fn new(warm_until: Instant, stop_at: Instant) -> Recorder {
        assert!(warm_until <= stop_at);
        Recorder {
            warm_until,
            stop_at,
            state: Mutex::new(RecorderState::default()),
            failed: AtomicBool::new(false),
            failure_notify: Notify::new(),
        }
    }

    /// Whether the clients should stop: the time is up or a call failed the run.
    pub fn should_stop(&self) -> bool {
        self.failed.load(Ordering::Relaxed) || Instant::now() >= self.stop_at
    }

    /// Records a call started at `started` that was answered with `code` (or, `None`, ended
    /// without an answer, described by `what`). Returns the answer's class; a `Bookkeeping` or
    /// `Unexpected` answer or an error fails the run.
    pub fn record(
        &self,
        started: Instant,
        code: Option<ResultCode>,
        what: impl FnOnce() -> String,
    ) -> AnswerClass {
        let now = Instant::now();
        let class = code.map_or(AnswerClass::Unexpected, classify);
        let mut state = self.state.lock().expect("no client task panics holding it");
        match code {
            Some(code) => state.tally.count(code),
            None => state.tally.errors += 1,
        }
        if class == AnswerClass::Expected {
            if now >= self.warm_until && now <= self.stop_at {
                let micros = u64::try_from(now.duration_since(started).as_micros());
                let micros = micros.unwrap_or(u64::MAX);
                state.interval.record(micros);
                state.total.record(micros);
            }
        } else if state.failure.is_none() {
            let at_secs = if now >= self.warm_until {
                now.duration_since(self.warm_until).as_secs_f64()
            } else {
                -self.warm_until.duration_since(now).as_secs_f64()
            };
            state.failure = Some(Failure {
                at_secs,
                what: what(),
                bookkeeping: class == AnswerClass::Bookkeeping,
            });
            self.failed.store(true, Ordering::Relaxed);
            self.failure_notify.notify_one();
        }
        class
    }

    /// Takes this interval's measurements: (ops in it, p50, p99, ops since the warm-up).
    pub fn take_interval(&self) -> (u64, Option<u64>, Option<u64>, u64) {
        let mut state = self.state.lock().expect("no client task panics holding it");
        let interval = std::mem::take(&mut state.interval);
        let quantile = |q| (interval.total() > 0).then(|| interval.quantile(q));
        (
            interval.total(),
            quantile(0.50),
            quantile(0.99),
            state.total.total(),
        )
    }

    /// Every measured call's latency, the answer counts, and the failure if any.
    pub fn finish(&self) -> (Histogram, Tally, Option<Failure>) {
        let state = self.state.lock().expect("no client task panics holding it");
        (
            state.total.clone(),
            state.tally.clone(),
            state.failure.clone(),
        )
    }
}

/// A process's resident memory in KiB (`VmRSS` of `/proc/<pid>/status`); `None` when it cannot
/// be read (not Linux, the process is gone, or a zombie).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vm_rss_kib(&status)
}

/// The `VmRSS:   123456 kB` line of a `/proc/<pid>/status` text, in KiB.
pub fn parse_vm_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let mut fields = line["VmRSS:".len()..].split_whitespace();
    let value = fields.next()?.parse().ok()?;
    (fields.next() == Some("kB")).then_some(value)
}

/// `count / interval`, rounded; 0 for an empty interval.
fn per_second(count: u64, interval: Duration) -> u64 {
    let seconds = interval.as_secs_f64();
    if seconds <= 0.0 {
        return 0;
    }
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let rate = (count as f64 / seconds).round() as u64;
    rate
}

/// Microseconds as milliseconds with one decimal: `1949` → `1.9 ms`.
fn format_ms(micros: u64) -> String {
    let tenths = micros.saturating_add(50) / 100;
    format!("{}.{} ms", tenths / 10, tenths % 10)
}

/// `1234567` → `1,234,567`.
fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_line_formats_rates_latency_and_rss() {
        let sample = ProgressSample {
            elapsed: Duration::from_secs(12),
            partial: false,
            ops_interval: 104_233,
            interval: Duration::from_secs(1),
            ops_total: 1_212_024,
            p50_us: Some(1_949),
            p99_us: Some(3_100),
            rss_kib: Some(vec![Some(201 * 1024 + 10), Some(188 * 1024), None]),
        };
        assert_eq!(
            sample.line(),
            "[  12s] 104,233 ops/s (avg 101,002) p50 1.9 ms p99 3.1 ms rss 201/188/- MiB"
        );
        let remote = ProgressSample {
            elapsed: Duration::from_millis(1_500),
            partial: false,
            ops_interval: 0,
            interval: Duration::from_millis(500),
            ops_total: 3,
            p50_us: None,
            p99_us: None,
            rss_kib: None,
        };
        assert_eq!(remote.line(), "[   2s] 0 ops/s (avg 2) p50 - p99 - rss -");
        // A late tick divides by the real interval, not by one second.
        let late = ProgressSample {
            interval: Duration::from_secs(2),
            ..sample
        };
        assert!(
            late.line().starts_with("[  12s] 52,117 ops/s"),
            "{}",
            late.line()
        );
        let failed = ProgressSample {
            elapsed: Duration::from_millis(14_460),
            partial: true,
            ..remote
        };
        assert!(
            failed.line().starts_with("[14.5s] 0 ops/s"),
            "{}",
            failed.line()
        );
    }

    #[test]
    fn number_formats() {
        for (value, expected) in [
            (0, "0"),
            (999, "999"),
            (1_000, "1,000"),
            (104_233, "104,233"),
            (1_234_567, "1,234,567"),
        ] {
            assert_eq!(thousands(value), expected);
        }
        for (micros, expected) in [
            (0, "0.0 ms"),
            (49, "0.0 ms"),
            (950, "1.0 ms"),
            (1_949, "1.9 ms"),
            (12_345, "12.3 ms"),
        ] {
            assert_eq!(format_ms(micros), expected);
        }
        assert_eq!(per_second(10, Duration::ZERO), 0);
        assert_eq!(per_second(10, Duration::from_millis(500)), 20);
    }

    #[test]
    fn every_bookkeeping_code_fails_the_run_and_workload_outcomes_do_not() {
        let exactly_once = [
            ResultCode::SessionEvicted,
            ResultCode::RequestStale,
            ResultCode::OperationExpired,
        ];
        for code in ResultCode::ALL {
            let class = classify(code);
            if code.name().ends_with("_table_full") || exactly_once.contains(&code) {
                assert_eq!(class, AnswerClass::Bookkeeping, "{}", code.name());
            } else {
                assert_ne!(class, AnswerClass::Bookkeeping, "{}", code.name());
            }
        }
        for code in [
            ResultCode::Ok,
            ResultCode::ResourceBusy,
            ResultCode::PoolExhausted,
        ] {
            assert_eq!(classify(code), AnswerClass::Expected);
        }
        for code in [
            ResultCode::OperationConflict,
            ResultCode::InvalidState,
            ResultCode::StaleEpoch,
            ResultCode::LeaseNotFound,
        ] {
            assert_eq!(classify(code), AnswerClass::Unexpected);
        }
    }

    #[test]
    fn tally_line_lists_seen_codes_in_order_then_errors() {
        let mut tally = Tally::default();
        assert_eq!(tally.line(), "answers errors=0");
        tally.count(ResultCode::OperationTableFull);
        tally.count(ResultCode::Ok);
        tally.count(ResultCode::Ok);
        tally.count(ResultCode::ResourceBusy);
        tally.errors = 2;
        assert_eq!(
            tally.line(),
            "answers ok=2 resource_busy=1 operation_table_full=1 errors=2"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_refusal_fails_the_run_and_says_when() {
        let start = Instant::now();
        let recorder = Recorder::new(
            start + Duration::from_secs(1),
            start + Duration::from_secs(11),
        );
        assert_eq!(
            recorder.record(start, Some(ResultCode::Ok), || unreachable!()),
            AnswerClass::Expected
        );
        tokio::time::advance(Duration::from_millis(1_500)).await;
        let started = Instant::now();
        tokio::time::advance(Duration::from_millis(2)).await;
        recorder.record(started, Some(ResultCode::ResourceBusy), || unreachable!());
        assert!(!recorder.should_stop());
        // 2 ms, reported exactly: below 2,048 µs the histogram's unit is 1 µs.
        assert_eq!(recorder.take_interval(), (1, Some(2_000), Some(2_000), 1));
        assert_eq!(recorder.take_interval(), (0, None, None, 1));
        tokio::time::advance(Duration::from_secs(14)).await;
        let class = recorder.record(Instant::now(), Some(ResultCode::LeaseTableFull), || {
            "reserve: lease_table_full (op 9)".into()
        });
        assert_eq!(class, AnswerClass::Bookkeeping);
        assert!(recorder.should_stop());
        // Later failures are counted but the first one is what the run reports.
        recorder.record(Instant::now(), None, || "reserve: timeout".into());
        let (histogram, tally, failure) = recorder.finish();
        assert_eq!(
            histogram.total(),
            1,
            "the warm-up answer is counted, not measured"
        );
        assert_eq!(
            tally.line(),
            "answers ok=1 resource_busy=1 lease_table_full=1 errors=1"
        );
        let failure = failure.expect("failed");
        assert_eq!(
            failure.message(),
            "BOOKKEEPING REFUSAL after 14.5 s of measurement: reserve: lease_table_full (op 9); \
             a full table refused live work"
        );
    }

    #[test]
    fn vm_rss_is_read_in_kib() {
        let status = "Name:\tallocdb\nVmPeak:\t  300000 kB\nVmRSS:\t  205824 kB\nThreads:\t7\n";
        assert_eq!(parse_vm_rss_kib(status), Some(205_824));
        assert_eq!(
            parse_vm_rss_kib("Name:\tzombie\nState:\tZ (zombie)\n"),
            None
        );
        assert_eq!(parse_vm_rss_kib("VmRSS:\t12 MB\n"), None);
        assert!(rss_kib(std::process::id()).is_some_and(|kib| kib > 0));
    }
}
