//! Client sessions: per session, the highest request number executed and the answers of the
//! last `session_requests_max` numbers, so a retried write is answered, never run twice, with
//! memory fixed by `clients_max × session_requests_max` whatever the throughput or the time.
//!
//! Request `n` of a session keeps its answer in slot `n % window` of the session's ring. A
//! client numbers its writes in order and never has `window` or more of them unanswered at
//! once, so when `n` overwrites `n - window`, the client already holds that answer: a copy of
//! `n - window` arriving later is stale and refused, never executed again.

use crate::command::Outcome;
use crate::id_map::{IdMap, ROW_NONE};
use crate::ids::{Op, SessionId};
use crate::result_code::ResultCode;

/// The stored answer to one numbered write.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SessionAnswer {
    /// The request number; 0 marks an empty slot.
    pub(crate) request: u64,
    pub(crate) fingerprint: u128,
    pub(crate) outcome: Outcome,
    pub(crate) executed_op: Op,
    pub(crate) executed_index: u32,
}

pub(crate) const ANSWER_EMPTY: SessionAnswer = SessionAnswer {
    request: 0,
    fingerprint: 0,
    outcome: Outcome {
        code: ResultCode::Ok,
        retry: false,
        lease: crate::ids::LeaseId(0),
        epoch: 0,
        deadline_slot: 0,
    },
    executed_op: 0,
    executed_index: 0,
};

/// One registered session.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SessionRow {
    /// 0 marks a free row (no session id is 0: it names a position at op 1 or later).
    pub(crate) id: SessionId,
    /// The client's random id, for operators.
    pub(crate) client: u128,
    /// The highest request number executed (0 before the first).
    pub(crate) highest: u64,
    /// The op of the batch that last registered or used the session: eviction order.
    pub(crate) used_op: Op,
}

const ROW_FREE: SessionRow = SessionRow {
    id: 0,
    client: 0,
    highest: 0,
    used_op: 0,
};

/// What a numbered write finds in its session.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Lookup {
    /// Not executed yet: run it and [`SessionTable::record`] the outcome.
    Execute { row: u32 },
    /// Executed before: its stored answer.
    Answered(SessionAnswer),
    /// Refused without executing.
    Refused(ResultCode),
}

#[derive(Debug)]
pub(crate) struct SessionTable {
    rows: Vec<SessionRow>,
    /// `window` answers per row, row after row.
    answers: Vec<SessionAnswer>,
    window: u32,
    free: Vec<u32>,
    map: IdMap,
}

impl SessionTable {
    pub(crate) fn new(clients_max: u32, window: u32) -> SessionTable {
        assert!(clients_max > 0 && clients_max < ROW_NONE && window > 0);
        let answers = usize::try_from(u64::from(clients_max) * u64::from(window))
            .expect("validated: at most TABLE_ROWS_LIMIT answers");
        SessionTable {
            rows: vec![ROW_FREE; clients_max as usize],
            answers: vec![ANSWER_EMPTY; answers],
            window,
            free: (0..clients_max).rev().collect(),
            map: IdMap::new(clients_max),
        }
    }

    pub(crate) fn memory_bytes(&self) -> u64 {
        (self.rows.capacity() * size_of::<SessionRow>()
            + self.answers.capacity() * size_of::<SessionAnswer>()
            + self.free.capacity() * size_of::<u32>()) as u64
            + self.map.memory_bytes()
    }

    pub(crate) fn len(&self) -> u32 {
        self.map.len()
    }

    pub(crate) fn rows_max(&self) -> u32 {
        u32::try_from(self.rows.len()).expect("clients_max is a u32")
    }

    pub(crate) fn window(&self) -> u32 {
        self.window
    }

    pub(crate) fn row(&self, row: u32) -> &SessionRow {
        &self.rows[row as usize]
    }

    pub(crate) fn find(&self, id: SessionId) -> Option<u32> {
        self.map.get(u128::from(id))
    }

    /// The stored answers of a row's ring, in slot order (empty slots included).
    pub(crate) fn ring(&self, row: u32) -> &[SessionAnswer] {
        let start = row as usize * self.window as usize;
        &self.answers[start..start + self.window as usize]
    }

    fn slot(&self, row: u32, request: u64) -> usize {
        row as usize * self.window as usize
            + usize::try_from(request % u64::from(self.window)).expect("below the window")
    }

    /// Opens session `id` at `op`. When every row is taken, the least recently used session
    /// (lowest `used_op`, then lowest id: no hash order involved) is evicted first.
    pub(crate) fn register(&mut self, id: SessionId, client: u128, op: Op) {
        assert!(
            id != 0 && self.find(id).is_none(),
            "session {id} registered twice"
        );
        if self.free.is_empty() {
            let victim = self.least_recently_used();
            self.evict(victim);
        }
        let row = self.free.pop().expect("a row was freed");
        self.rows[row as usize] = SessionRow {
            id,
            client,
            highest: 0,
            used_op: op,
        };
        self.map.insert(u128::from(id), row);
    }

    fn least_recently_used(&self) -> u32 {
        let mut best = ROW_NONE;
        for (row, entry) in self.rows.iter().enumerate() {
            assert!(entry.id != 0, "a full session table has no free row");
            let row = u32::try_from(row).expect("clients_max is a u32");
            if best == ROW_NONE || {
                let current = &self.rows[best as usize];
                (entry.used_op, entry.id) < (current.used_op, current.id)
            } {
                best = row;
            }
        }
        best
    }

    fn evict(&mut self, row: u32) {
        let id = self.rows[row as usize].id;
        assert_eq!(self.map.remove(u128::from(id)), Some(row), "session {id}");
        self.rows[row as usize] = ROW_FREE;
        let start = row as usize * self.window as usize;
        self.answers[start..start + self.window as usize].fill(ANSWER_EMPTY);
        assert!(self.free.len() < self.rows.len());
        self.free.push(row);
    }

    /// Decides what request `request` (≥ 1) of session `id` gets; `fingerprint` is its
    /// command's. A session that is used is touched at `op` (eviction order).
    pub(crate) fn lookup(
        &mut self,
        id: SessionId,
        request: u64,
        fingerprint: u128,
        op: Op,
    ) -> Lookup {
        assert!(request > 0);
        let Some(row) = self.find(id) else {
            return Lookup::Refused(ResultCode::SessionEvicted);
        };
        let window = u64::from(self.window);
        let stored = self.answers[self.slot(row, request)];
        let entry = &mut self.rows[row as usize];
        if request > entry.highest {
            entry.used_op = op;
            return Lookup::Execute { row };
        }
        if stored.request == request {
            entry.used_op = op;
            return if stored.fingerprint == fingerprint {
                Lookup::Answered(stored)
            } else {
                Lookup::Refused(ResultCode::OperationConflict)
            };
        }
        // Below the highest number and not stored: inside the window it has not run yet (its
        // slot holds an older number); below the window its answer was overwritten.
        if request > entry.highest.saturating_sub(window) {
            debug_assert!(stored.request < request);
            entry.used_op = op;
            return Lookup::Execute { row };
        }
        Lookup::Refused(ResultCode::RequestStale)
    }

    /// Stores the answer of a request that [`SessionTable::lookup`] said to execute.
    pub(crate) fn record(&mut self, row: u32, answer: SessionAnswer) {
        assert!(!answer.outcome.retry, "a stored outcome is never a retry");
        let slot = self.slot(row, answer.request);
        let previous = self.answers[slot].request;
        assert!(
            previous < answer.request,
            "request {} of session {} would overwrite {previous}",
            answer.request,
            self.rows[row as usize].id
        );
        self.answers[slot] = answer;
        let entry = &mut self.rows[row as usize];
        entry.highest = entry.highest.max(answer.request);
    }

    /// Restores one session from a snapshot (rows are free, the id is new).
    pub(crate) fn restore(&mut self, session: SessionRow, answers: &[SessionAnswer]) -> u32 {
        assert!(session.id != 0 && self.find(session.id).is_none());
        let row = self.free.pop().expect("snapshot sessions fit clients_max");
        self.rows[row as usize] = session;
        self.map.insert(u128::from(session.id), row);
        for answer in answers {
            let slot = self.slot(row, answer.request);
            assert_eq!(self.answers[slot].request, 0, "two answers in one slot");
            self.answers[slot] = *answer;
        }
        row
    }

    /// Rows in use, in row order (snapshots sort them by id themselves).
    pub(crate) fn used_rows(&self) -> impl Iterator<Item = u32> + '_ {
        self.rows
            .iter()
            .enumerate()
            .filter(|(_, entry)| entry.id != 0)
            .map(|(row, _)| u32::try_from(row).expect("clients_max is a u32"))
    }
}

/// `Vec::clone` keeps only the length; a clone must keep the free stack's reserved capacity so
/// that it, too, never allocates when a session is evicted.
impl Clone for SessionTable {
    fn clone(&self) -> SessionTable {
        SessionTable {
            rows: self.rows.clone(),
            answers: self.answers.clone(),
            window: self.window,
            free: crate::fifo::clone_reserved(&self.free),
            map: self.map.clone(),
        }
    }
}
