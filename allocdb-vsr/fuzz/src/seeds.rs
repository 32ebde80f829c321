//! The seed corpus: valid encodings made by the real encoders (a short run of an in-process
//! three-replica cluster provides the peer messages, client replies and snapshots), plus edge
//! cases. `cargo run --example write_corpus` writes them under `corpus/<target>/`.

use std::collections::VecDeque;

use allocdb_core::{Allocator, Bundle, Command, Request};
use allocdb_vsr::frame::{
    self, ClientHello, ErrorCode, FrameKind, FrameReply, FrameRequest, Welcome,
};
use allocdb_vsr::{
    ClientOperation, ClientRequest, Message, Outbox, Query, Replica, encode_message,
};
use allocdb_wal::{ReplicaIdentity, SimConfig, SimStorage, Wal, segment_file_name};

use crate::CLUSTER_ID;
use crate::peer_message::{REPLICA_COUNT, TARGET_INDEX, new_replica, push_record};

/// Named seed inputs for one target.
pub type Seeds = Vec<(String, Vec<u8>)>;

/// What a short cluster run produced.
pub struct Trace {
    /// Messages replica [`TARGET_INDEX`] received: (sender, ticks before it, message).
    pub received: Vec<(u8, u32, Message)>,
    /// Replies the primaries sent to clients.
    pub replies: Vec<FrameReply>,
    /// The requests the clients sent.
    pub requests: Vec<FrameRequest>,
    /// Snapshots of the replicas' state at the end.
    pub snapshots: Vec<Vec<u8>>,
}

fn command(n: u64) -> Command {
    let resource = u128::from(n % 24) + 1;
    match n % 4 {
        0 | 1 => Command::CreateResource {
            resource,
            pool: (n % 3 == 0).then_some(7),
        },
        2 => Command::Reserve {
            resources: Bundle::from_slice(&[resource, resource + 1]).expect("two ids"),
            holder: u128::from(n),
            ttl_slots: 50,
        },
        _ => Command::ReserveAny {
            pool: 7,
            count: 1,
            holder: u128::from(n) + 1000,
            ttl_slots: 30,
        },
    }
}

/// Runs three replicas over perfect links for `ticks` ticks with a steady trickle of writes
/// and reads, recording what replica [`TARGET_INDEX`] receives.
pub fn cluster_trace(ticks: u64) -> Trace {
    let mut replicas: Vec<Replica<SimStorage>> = (0..REPLICA_COUNT).map(new_replica).collect();
    let mut trace = Trace {
        received: Vec::new(),
        replies: Vec::new(),
        requests: Vec::new(),
        snapshots: Vec::new(),
    };
    let mut queue: VecDeque<(u8, u8, Message)> = VecDeque::new();
    let mut out = Outbox::new(4096, 4096);
    let mut ticks_since = 0_u32;
    let mut request_id = 0_u64;
    for slot in 1..=ticks {
        ticks_since += 1;
        for (index, replica) in (0..).zip(replicas.iter_mut()) {
            // The driver's part: last slot's prepares went out before this sync.
            replica.sync_log(&mut out);
            replica.on_tick(slot, &mut out);
            queue.extend(out.messages.drain(..).map(|e| (index, e.to, e.message)));
            trace
                .replies
                .extend(out.replies.drain(..).map(|r| FrameReply {
                    request_id: r.request_id,
                    body: r.body,
                }));
        }
        if slot % 3 == 0 {
            if let Some(primary) = replicas.iter_mut().position(|r| r.is_primary()) {
                request_id += 1;
                let operation = if request_id % 5 == 0 {
                    ClientOperation::Read {
                        query: Query::Resource(u128::from(request_id % 24) + 1),
                        min_op: 0,
                    }
                } else {
                    ClientOperation::Write(Request {
                        operation_id: u128::from(request_id),
                        command: command(request_id),
                    })
                };
                trace.requests.push(FrameRequest {
                    request_id,
                    operation,
                });
                let request = ClientRequest {
                    client_id: 9,
                    request_id,
                    operation,
                };
                let from = u8::try_from(primary).expect("few replicas");
                replicas[primary].on_request(request, &mut out);
                queue.extend(out.messages.drain(..).map(|e| (from, e.to, e.message)));
            }
        }
        while let Some((from, to, message)) = queue.pop_front() {
            if to == TARGET_INDEX {
                trace.received.push((from, ticks_since, message.clone()));
                ticks_since = 0;
            }
            let replica = &mut replicas[usize::from(to)];
            replica.on_message(from, &message, &mut out);
            queue.extend(out.messages.drain(..).map(|e| (to, e.to, e.message)));
            trace
                .replies
                .extend(out.replies.drain(..).map(|r| FrameReply {
                    request_id: r.request_id,
                    body: r.body,
                }));
        }
    }
    for replica in &replicas {
        let mut snapshot = Vec::new();
        replica.allocator().encode_snapshot(&mut snapshot);
        trace.snapshots.push(snapshot);
    }
    trace
}

fn encode(message: &Message) -> Vec<u8> {
    let mut bytes = Vec::new();
    encode_message(message, &mut bytes);
    bytes
}

fn peer_input(records: &[(u8, u32, Message)], extra: &[Message]) -> Vec<u8> {
    let mut input = vec![0];
    for (from, ticks, message) in records {
        let mut ticks = *ticks;
        while ticks > 31 {
            push_record(&mut input, 0, false, 31, &[]);
            ticks -= 31;
        }
        push_record(
            &mut input,
            *from,
            false,
            u8::try_from(ticks).expect("below 32"),
            &encode(message),
        );
    }
    for message in extra {
        push_record(&mut input, 0, true, 0, &encode(message));
    }
    input
}

/// Seeds for `peer_message`.
pub fn peer_message(trace: &Trace) -> Seeds {
    let mut seeds = Seeds::new();
    let received = &trace.received;
    let mut end = received.len();
    while end > 0 && peer_input(&received[..end], &[]).len() > 48 * 1024 {
        end -= end / 4 + 1;
    }
    seeds.push(("trace".into(), peer_input(&received[..end], &[])));
    let early = received.len().min(24);
    seeds.push(("trace-early".into(), peer_input(&received[..early], &[])));
    let mut kinds = Vec::new();
    for (index, (_, _, message)) in received.iter().enumerate() {
        if !kinds.contains(&message.name()) {
            kinds.push(message.name());
            let name = format!("upto-first-{}", message.name());
            seeds.push((
                name,
                peer_input(&received[..=index.min(end.saturating_sub(1))], &[]),
            ));
        }
    }
    // Edge cases after a live prefix: the forged messages of issue 12.
    let prefix = &received[..end.min(received.len() / 2)];
    let prepare = received.iter().find_map(|(_, _, m)| match m {
        Message::Prepare { .. } => Some(m.clone()),
        _ => None,
    });
    let mut forged = vec![
        Message::StartViewChange { view: u64::MAX },
        Message::StartViewChange { view: 1 << 62 },
        Message::DoViewChange {
            view: 5,
            log_view: 0,
            op: 1,
            checksum: 0,
            commit: 9,
            suffix: Vec::new(),
            damaged: false,
        },
        Message::RequestPrepares {
            view: 0,
            op_min: 9,
            op_max: 1,
        },
        Message::Commit {
            view: 0,
            commit: u64::MAX,
            head_op: u64::MAX,
            heartbeat: 1,
            digest_op: 0,
            digest: 0,
        },
    ];
    if let Some(Message::Prepare {
        view,
        commit,
        entry,
    }) = prepare
    {
        for op in [0, 1, u64::MAX] {
            let mut entry = entry.clone();
            entry.header.op = op;
            forged.push(Message::Prepare {
                view,
                commit,
                entry,
            });
        }
    }
    for (index, message) in forged.iter().enumerate() {
        seeds.push((
            format!("forged-{index}-{}", message.name()),
            peer_input(prefix, std::slice::from_ref(message)),
        ));
    }
    seeds
}

/// Seeds for `snapshot`: real snapshots raw (mode 0) and as bodies (mode 1), and edge cases.
pub fn snapshot(trace: &Trace) -> Seeds {
    let mut seeds = Seeds::new();
    let empty = Allocator::new(crate::snapshot::core_config()).expect("valid config");
    let mut snapshots = vec![Vec::new()];
    empty.encode_snapshot(&mut snapshots[0]);
    snapshots.extend(trace.snapshots.iter().take(1).cloned());
    for (index, snapshot) in snapshots.iter().enumerate() {
        seeds.push((format!("raw-{index}"), [&[0][..], snapshot].concat()));
        seeds.push((
            format!("body-{index}"),
            [&[1][..], &snapshot[24..]].concat(),
        ));
    }
    let full = snapshots.last().expect("one snapshot");
    seeds.push((
        "truncated".into(),
        [&[0][..], &full[..full.len() / 2]].concat(),
    ));
    seeds.push((
        "body-truncated".into(),
        [&[1][..], &full[24..full.len() / 2]].concat(),
    ));
    seeds
}

/// Seeds for `client_frame`: every client-facing body kind, alone and as one stream.
pub fn client_frame(trace: &Trace) -> Seeds {
    let mut seeds = Seeds::new();
    let mut bodies: Vec<(&str, FrameKind, Vec<u8>)> = Vec::new();
    let mut body = Vec::new();
    ClientHello {
        client_id: 0x00C1_1E17,
    }
    .encode(&mut body);
    bodies.push(("hello", FrameKind::ClientHello, std::mem::take(&mut body)));
    let requests = &trace.requests[..trace.requests.len().min(64)];
    frame::encode_requests(requests, &mut body);
    bodies.push((
        "requests",
        FrameKind::ClientRequests,
        std::mem::take(&mut body),
    ));
    let replies = &trace.replies[..trace.replies.len().min(64)];
    frame::encode_replies(replies, &mut body);
    bodies.push((
        "replies",
        FrameKind::ClientReplies,
        std::mem::take(&mut body),
    ));
    Welcome {
        replica_index: 0,
        replica_count: 3,
        role: allocdb_vsr::frame::Role::Primary,
        view: 4,
        primary_index: 1,
        slot_ms: 10,
        requests_per_frame_max: frame::REQUESTS_PER_FRAME_MAX,
        clients_max: 16,
        session_requests_max: 64,
        operations_max: 4096,
        dedupe_window_slots: 10_000,
        ttl_slots_max: 1_000_000,
    }
    .encode(&mut body);
    bodies.push((
        "welcome",
        FrameKind::ClientWelcome,
        std::mem::take(&mut body),
    ));
    frame::ErrorBody::new(ErrorCode::Forbidden, "not allowed").encode(&mut body);
    bodies.push(("error", FrameKind::Error, std::mem::take(&mut body)));
    let mut stream = vec![0];
    for (name, kind, body) in &bodies {
        let mut framed = vec![0];
        frame::write_frame(&mut framed, *kind, CLUSTER_ID, |out| {
            out.extend_from_slice(body);
        });
        stream.extend_from_slice(&framed[1..]);
        seeds.push((format!("frame-{name}"), framed));
        let index = FrameKind::ALL
            .iter()
            .position(|k| k == kind)
            .expect("a kind");
        let index = u8::try_from(index).expect("few kinds");
        seeds.push((format!("body-{name}"), [&[1, index][..], body].concat()));
    }
    seeds.push(("stream".into(), stream));
    let mut any = vec![0];
    frame::write_frame(&mut any, FrameKind::ClientHello, 0, |out| {
        out.extend_from_slice(&[0; 16]);
    });
    seeds.push(("hello-any-cluster".into(), any));
    seeds.push((
        "bad-magic".into(),
        [&[0][..], b"GET / HTTP/1.1\r\n\r\n"].concat(),
    ));
    seeds
}

/// Seeds for `wal_segment`: a real segment written by the log (raw, fail closed and repair),
/// and structured inputs that tear, flip, skip and split.
pub fn wal_segment() -> Seeds {
    let disk = SimStorage::new(SimConfig::new(0));
    let identity = ReplicaIdentity {
        replica_index: 0,
        replica_count: 1,
    };
    let mut wal =
        Wal::format(disk.clone(), crate::wal_segment::config(), identity).expect("format");
    for op in 1..=6_u64 {
        let body: Vec<u8> = (0..op * 11).map(|i| (i * op).to_le_bytes()[0]).collect();
        wal.append(op / 3, op, op * 2, &body).expect("append");
    }
    wal.sync().expect("sync");
    drop(wal);
    let segment = disk
        .file_bytes(&segment_file_name(1))
        .expect("the first segment");
    let mut seeds = Seeds::new();
    for mode in [0_u8, 2] {
        seeds.push((
            format!("segment-mode{mode}"),
            [&[mode][..], &segment].concat(),
        ));
        let torn = &segment[..segment.len() - 40];
        seeds.push((
            format!("segment-torn-mode{mode}"),
            [&[mode][..], torn].concat(),
        ));
    }
    let records = |flags: &[u8]| {
        let mut input = Vec::new();
        for (index, flag) in flags.iter().enumerate() {
            input.extend_from_slice(&[*flag, 9]);
            input.extend((0..9).map(|i| (i + index).to_le_bytes()[0]));
            if flag & 64 != 0 {
                input.push(100);
            }
        }
        input
    };
    let cases: [(&str, &[u8]); 7] = [
        ("valid", &[0, 0, 0, 0]),
        ("skip", &[0, 0, 1, 0]),
        ("repeat", &[0, 2, 0]),
        ("view-down-parent", &[0, 4, 8, 0]),
        ("other-cluster", &[0, 16, 0]),
        ("split-flip", &[0, 32, 0, 64, 0]),
        ("tear", &[0, 0, 128 | 5]),
    ];
    for (name, flags) in cases {
        for mode in [1_u8, 3] {
            seeds.push((
                format!("records-{name}-mode{mode}"),
                [&[mode][..], &records(flags)].concat(),
            ));
        }
    }
    seeds
}

/// Every target's seeds, by target name.
pub fn all() -> Vec<(&'static str, Seeds)> {
    let trace = cluster_trace(300);
    vec![
        ("client_frame", client_frame(&trace)),
        ("peer_message", peer_message(&trace)),
        ("snapshot", snapshot(&trace)),
        ("wal_segment", wal_segment()),
    ]
}
