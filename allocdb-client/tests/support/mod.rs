//! An in-process fake cluster speaking the real client protocol, for the client's tests.
//!
//! All fake replicas share one real `allocdb_core::Allocator` (as if replication were
//! perfect), so a write executed by one is visible to the next; each replica has a scripted
//! behaviour that a test may change at any time to stage failovers, silence and overload.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use allocdb_core::ids::OperationKey;
use allocdb_core::{Allocator, Config, Outcome, Request, ResultCode};
use allocdb_protocol::frame::{
    self, ClientHello, FrameKind, FrameLimits, FrameReply, FrameRequest, Role, Welcome,
};
use allocdb_protocol::{ClientOperation, Query, ReadResult, ReplyBody};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The cluster id every fake replica serves.
pub const CLUSTER_ID: u128 = 77;
/// The slot length the fake welcomes announce.
pub const SLOT_MS: u64 = 10;

/// What one fake replica does with a request frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Executes every request against the shared allocator.
    Primary,
    /// Answers `not_primary` naming another replica.
    NotPrimary { view: u64, primary: u8 },
    /// Welcomes as a primary, then never answers.
    Silent,
    /// Answers `overloaded` to everything.
    Overloaded,
    /// Executes the frame's writes, then closes the connection without answering; becomes
    /// `NotPrimary { view: 1, primary: next }` afterwards.
    ExecuteThenDrop,
    /// Closes every connection after its hello, and on its next frame: no session ever works.
    HangUp,
}

/// Everything the fake replicas share.
pub struct State {
    pub allocator: Allocator,
    pub op: u64,
    pub behaviours: Vec<Behaviour>,
    /// (replica, requests in the frame) for every request frame received.
    pub frames: Vec<(usize, usize)>,
    /// (replica, `operation_id`) of every write received.
    pub writes_seen: Vec<(usize, u128)>,
    /// Requests received and not yet answered, and the most there ever were.
    pub in_flight: usize,
    pub in_flight_peak: usize,
    /// How long a primary waits before answering a frame.
    pub answer_delay: Duration,
    /// Sessions this fake answers `session_evicted` for, whatever the allocator keeps (so a
    /// test can evict a session at a chosen moment).
    pub evicted: Vec<u64>,
    /// `ExecuteThenDrop` also evicts every session whose writes it executed.
    pub evict_on_drop: bool,
    /// Sessions whose writes this fake answers `request_stale` (as if their answers were gone).
    pub stale: Vec<u64>,
}

/// A running fake cluster.
pub struct FakeCluster {
    pub addresses: Vec<String>,
    pub state: Arc<Mutex<State>>,
}

impl FakeCluster {
    /// Starts one fake replica per behaviour on 127.0.0.1.
    pub async fn start(behaviours: &[Behaviour]) -> FakeCluster {
        let state = Arc::new(Mutex::new(State {
            allocator: Allocator::new(Config::small()).expect("small config is valid"),
            op: 0,
            behaviours: behaviours.to_vec(),
            frames: Vec::new(),
            writes_seen: Vec::new(),
            in_flight: 0,
            in_flight_peak: 0,
            answer_delay: Duration::ZERO,
            evicted: Vec::new(),
            evict_on_drop: false,
            stale: Vec::new(),
        }));
        let mut addresses = Vec::new();
        for replica in 0..behaviours.len() {
            let listener = TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind loopback");
            addresses.push(listener.local_addr().expect("bound").to_string());
            let state = Arc::clone(&state);
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(serve(replica, stream, Arc::clone(&state)));
                }
            });
        }
        FakeCluster { addresses, state }
    }

    /// Changes replica `replica`'s behaviour.
    pub fn set(&self, replica: usize, behaviour: Behaviour) {
        self.state.lock().unwrap().behaviours[replica] = behaviour;
    }

    /// Locks the shared state.
    pub fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }
}

async fn serve(replica: usize, mut stream: TcpStream, state: Arc<Mutex<State>>) {
    let Some((header, body)) = read_frame(&mut stream).await else {
        return;
    };
    assert_eq!(
        header,
        FrameKind::ClientHello,
        "the client says hello first"
    );
    ClientHello::decode(&body).expect("hello decodes");
    let behaviour = state.lock().unwrap().behaviours[replica];
    if behaviour == Behaviour::HangUp {
        return;
    }
    let (role, view, primary_index) = if let Behaviour::NotPrimary { view, primary } = behaviour {
        (Role::Backup, view, primary)
    } else {
        {
            // A primary leads the newest view any fake replica talks about.
            let view = state
                .lock()
                .unwrap()
                .behaviours
                .iter()
                .map(|b| match b {
                    Behaviour::NotPrimary { view, .. } => *view,
                    _ => 0,
                })
                .max()
                .unwrap_or(0);
            (Role::Primary, view, u8::try_from(replica).unwrap())
        }
    };
    let replica_count = u8::try_from(state.lock().unwrap().behaviours.len()).unwrap();
    let welcome = Welcome {
        replica_index: u8::try_from(replica).unwrap(),
        replica_count,
        role,
        view,
        primary_index,
        slot_ms: SLOT_MS,
        requests_per_frame_max: frame::REQUESTS_PER_FRAME_MAX,
        clients_max: 16,
        session_requests_max: 64,
        operations_max: 4096,
        dedupe_window_slots: 10_000,
        ttl_slots_max: 1_000_000,
    };
    let mut out = Vec::new();
    frame::write_frame(&mut out, FrameKind::ClientWelcome, CLUSTER_ID, |b| {
        welcome.encode(b);
    });
    if stream.write_all(&out).await.is_err() {
        return;
    }
    let mut requests = Vec::new();
    while let Some((kind, body)) = read_frame(&mut stream).await {
        assert_eq!(kind, FrameKind::ClientRequests);
        frame::decode_requests(&body, &mut requests).expect("requests decode");
        let Some(replies) = answer(replica, &requests, &state).await else {
            return; // drop the connection without answering
        };
        out.clear();
        frame::write_frame(&mut out, FrameKind::ClientReplies, CLUSTER_ID, |b| {
            frame::encode_replies(&replies, b);
        });
        state.lock().unwrap().in_flight -= replies.len();
        if stream.write_all(&out).await.is_err() {
            return;
        }
    }
}

/// The replies to one frame; `None` to hang up instead.
async fn answer(
    replica: usize,
    requests: &[FrameRequest],
    state: &Arc<Mutex<State>>,
) -> Option<Vec<FrameReply>> {
    let (behaviour, delay) = {
        let mut s = state.lock().unwrap();
        s.frames.push((replica, requests.len()));
        for request in requests {
            if let ClientOperation::Write(write) = request.operation {
                s.writes_seen.push((replica, write.operation_id));
            }
        }
        s.in_flight += requests.len();
        s.in_flight_peak = s.in_flight_peak.max(s.in_flight);
        (s.behaviours[replica], s.answer_delay)
    };
    let reply_all = |body: ReplyBody| {
        requests
            .iter()
            .map(|r| FrameReply {
                request_id: r.request_id,
                body,
            })
            .collect::<Vec<_>>()
    };
    match behaviour {
        Behaviour::Primary => {
            tokio::time::sleep(delay).await;
            Some(execute(requests, &mut state.lock().unwrap()))
        }
        Behaviour::NotPrimary { view, primary } => {
            Some(reply_all(ReplyBody::NotPrimary { view, primary }))
        }
        Behaviour::Overloaded => Some(reply_all(ReplyBody::Overloaded)),
        Behaviour::HangUp => {
            state.lock().unwrap().in_flight -= requests.len();
            None
        }
        Behaviour::Silent => {
            std::future::pending::<()>().await;
            None
        }
        Behaviour::ExecuteThenDrop => {
            let mut s = state.lock().unwrap();
            execute(requests, &mut s);
            if s.evict_on_drop {
                for request in requests {
                    if let ClientOperation::Write(write) = request.operation
                        && let OperationKey::Session { session, .. } =
                            OperationKey::of(write.operation_id)
                    {
                        s.evicted.push(session);
                    }
                }
            }
            s.in_flight -= requests.len();
            let primary = u8::try_from((replica + 1) % s.behaviours.len()).unwrap();
            s.behaviours[replica] = Behaviour::NotPrimary { view: 1, primary };
            None
        }
    }
}

/// The refusal the fake gives `request` instead of executing it, if any.
fn refusal(s: &State, request: &Request) -> Option<ResultCode> {
    match OperationKey::of(request.operation_id) {
        OperationKey::Session { session, .. } if s.evicted.contains(&session) => {
            Some(ResultCode::SessionEvicted)
        }
        OperationKey::Session { session, .. } if s.stale.contains(&session) => {
            Some(ResultCode::RequestStale)
        }
        _ => None,
    }
}

/// Applies the frame's writes as one batch and answers its reads.
fn execute(requests: &[FrameRequest], s: &mut State) -> Vec<FrameReply> {
    let writes: Vec<Request> = requests
        .iter()
        .filter_map(|r| match r.operation {
            ClientOperation::Write(w) if refusal(s, &w).is_none() => Some(w),
            ClientOperation::Write(_) | ClientOperation::Read { .. } => None,
        })
        .collect();
    let mut outcomes = vec![Outcome::code(ResultCode::Ok); writes.len()];
    if !writes.is_empty() {
        s.op += 1;
        let op = s.op;
        s.allocator.apply_batch(op, op, &writes, &mut outcomes);
    }
    let mut index = 0;
    requests
        .iter()
        .map(|r| {
            let body = match r.operation {
                ClientOperation::Write(w) if let Some(code) = refusal(s, &w) => {
                    ReplyBody::Committed {
                        op: s.op,
                        index: 0,
                        outcome: Outcome::code(code),
                    }
                }
                ClientOperation::Write(_) => {
                    index += 1;
                    // As the replica does: the position where the write executed (for a
                    // retry, its first execution).
                    let (op, position) = s
                        .allocator
                        .executed_position(u32::try_from(index - 1).unwrap());
                    ReplyBody::Committed {
                        op,
                        index: position,
                        outcome: outcomes[index - 1],
                    }
                }
                ClientOperation::Read { query, .. } => ReplyBody::Read {
                    op: s.op,
                    slot: s.allocator.last_slot(),
                    result: match query {
                        Query::Resource(id) => ReadResult::Resource(s.allocator.get_resource(id)),
                        Query::Lease(id) => ReadResult::Lease(s.allocator.get_lease(id)),
                        Query::Pool(id) => ReadResult::Pool(s.allocator.pool_stats(id)),
                    },
                },
            };
            FrameReply {
                request_id: r.request_id,
                body,
            }
        })
        .collect()
}

async fn read_frame(stream: &mut TcpStream) -> Option<(FrameKind, Vec<u8>)> {
    let mut head = [0u8; frame::HEADER_BYTES];
    stream.read_exact(&mut head).await.ok()?;
    let limits = FrameLimits::client(0);
    let header = frame::decode_header(&head, &limits).expect("the client sends valid headers");
    let mut body = vec![0; usize::try_from(header.body_len).unwrap()];
    stream.read_exact(&mut body).await.ok()?;
    frame::check_body(&header, &body).expect("body checksum");
    Some((header.kind, body))
}
