//! A deterministic in-process cluster: real `Replica`s over `SimStorage`, a simulated bus
//! that loses, duplicates, delays and reorders messages and honours (one-way) partitions,
//! crashes and restarts, clients that retry — all driven by one seed.

#![allow(dead_code, clippy::pedantic)]

pub mod checker;
pub mod workload;

use allocdb_core::{Command, Config as CoreConfig};
use allocdb_vsr::{
    ClientOperation, ClientRequest, Message, Outbox, Replica, ReplicaConfig, Reply, ReplyBody,
    Status, decode_message, encode_message,
};
use allocdb_wal::{
    CheckpointWrite, SimConfig, SimStorage, SimSyncer, SimWriter, SplitMix64, TailSync,
};

use checker::Checker;
use workload::Client;

/// Fault rates and sizes of one run.
#[derive(Clone, Debug)]
pub struct Options {
    pub seed: u64,
    pub replica_count: u8,
    pub clients: usize,
    /// Ticks of the fault phase.
    pub fault_ticks: u64,
    /// Ticks the heal phase may take before liveness (f) fails.
    pub heal_ticks_max: u64,
    pub loss_percent: u64,
    pub duplicate_percent: u64,
    pub delay_ticks_max: u64,
    /// Per-tick chance (per mille) of a new partition.
    pub partition_per_mille: u64,
    /// Per-tick chance (per mille) of a crash.
    pub crash_per_mille: u64,
    /// Chance (percent) a crash happens in the middle of a storage operation.
    pub crash_mid_write_percent: u64,
    pub client_timeout_ticks: u64,
    /// `ReplicaConfig::view_change_fetch_ops_max` (0: a lagging new primary does not fetch).
    pub view_change_fetch_ops_max: u32,
    /// Chance (percent) a crash also rots one bit of a record inside the replica's log.
    pub corrupt_percent: u64,
    /// Chance (percent) a crash loses the replica's whole disk: it comes back formatted
    /// again (fresh), as the deployment recipes do with an empty volume.
    pub reformat_percent: u64,
    /// Replicas refusing peer messages is expected (planted bugs: the checkers, not the
    /// replicas' own refusals, must catch them); otherwise a refusal is a violation.
    pub peer_refusals_expected: bool,
    /// Per-tick chance (per mille) of a storm: for 50..=200 ticks up to all but one replica
    /// may be down at once (more than f). Safety must hold throughout; liveness only after
    /// the heal. Disks are lost (rot, reformat) only while fewer than f replicas lack data.
    pub storm_per_mille: u64,
    /// Changes every replica's configuration after the harness defaults (scenarios).
    pub replica_tweak: Option<fn(&mut ReplicaConfig)>,
}

impl Options {
    pub fn faulty(seed: u64) -> Options {
        Options {
            seed,
            replica_count: match seed % 8 {
                0 => 5,
                1 => 1,
                _ => 3,
            },
            clients: 6,
            fault_ticks: 2_000,
            heal_ticks_max: 1_500,
            loss_percent: 5,
            duplicate_percent: 3,
            delay_ticks_max: 4,
            partition_per_mille: 8,
            crash_per_mille: 5,
            crash_mid_write_percent: 30,
            client_timeout_ticks: 50,
            view_change_fetch_ops_max: 1024,
            corrupt_percent: 20,
            reformat_percent: 10,
            storm_per_mille: 1,
            peer_refusals_expected: false,
            replica_tweak: None,
        }
    }

    pub fn calm(seed: u64, replica_count: u8) -> Options {
        Options {
            replica_count,
            loss_percent: 0,
            duplicate_percent: 0,
            partition_per_mille: 0,
            crash_per_mille: 0,
            storm_per_mille: 0,
            ..Options::faulty(seed)
        }
    }
}

pub const CLUSTER_ID: u128 = 0xA110C;

pub fn core_config() -> CoreConfig {
    CoreConfig {
        resources_max: 64,
        pools_max: 4,
        leases_max: 256,
        lease_members_max: 512,
        bundle_size_max: 4,
        operations_max: 8_192,
        // Fewer sessions than the six clients: registrations evict, and evicted clients are
        // told so and register again, under every fault the harness injects.
        clients_max: 5,
        session_requests_max: 4,
        ttl_slots_max: 10_000,
        dedupe_window_slots: 1 << 40,
        lease_history_slots: 40,
        expirations_per_batch_max: 16,
        batch_requests_max: 128,
    }
}

fn options_config(options: &Options, index: u8, seed: u64) -> ReplicaConfig {
    let mut config = replica_config(index, options.replica_count, seed);
    config.view_change_fetch_ops_max = options.view_change_fetch_ops_max;
    if let Some(tweak) = options.replica_tweak {
        tweak(&mut config);
    }
    config
}

pub fn replica_config(index: u8, count: u8, seed: u64) -> ReplicaConfig {
    let mut config = ReplicaConfig::new(CLUSTER_ID, index, count);
    config.core = core_config();
    config.batch_requests_max = 32;
    config.batch_bytes_max = 8 * 1024;
    config.wal.body_bytes_max = 8 * 1024;
    config.pipeline_prepares_max = 4;
    config.suffix_ops_max = 16;
    config.headers_max = 32;
    config.repair_ops_max = 8;
    // Small, so random runs exercise state transfer by distance (forced checkpoints).
    config.repair_state_transfer_ops_min = 96;
    config.checkpoint_interval_ops = 48;
    config.request_queue_max = 64;
    config.read_queue_max = 16;
    config.wal.segment_bytes_max = 16 * 1024;
    config.wal.log_ops_max = 512;
    config.seed = seed ^ (u64::from(index) << 56);
    config.applied_trace_max = 4_096;
    config
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Node {
    Replica(u8),
    Client(usize),
}

#[derive(Clone, Debug)]
enum Payload {
    Peer(Message),
    Request(ClientRequest),
    Reply(Reply),
}

struct InFlight {
    deliver_tick: u64,
    sequence: u64,
    from: Node,
    to: Node,
    payload: Payload,
}

pub struct Node_ {
    pub replica: Option<Replica<SimStorage>>,
    pub storage: SimStorage,
    pub down_until: u64,
    /// Its disk was lost: the next restart formats a new one.
    pub wiped: bool,
    /// Its disk lost data (rot or a wipe) and it has not caught up since.
    pub lacks_data: bool,
    pub clock_offset: u64,
    applied_cursor: u64,
    digest_op: u64,
    /// A log sync its driver began and has not handed back yet (it may have run already):
    /// the replica goes on meanwhile, as with the server's sync thread.
    sync: Option<TailSync<SimSyncer>>,
    /// The tick that sync began.
    sync_began: u64,
    /// A checkpoint its driver began writing and has not handed back yet (it may have been
    /// written already), as with the server's checkpoint thread.
    checkpoint: Option<CheckpointWrite<SimWriter>>,
}

pub struct Cluster {
    pub options: Options,
    pub prng: SplitMix64,
    pub tick: u64,
    pub nodes: Vec<Node_>,
    pub clients: Vec<Client>,
    pub checker: Checker,
    network: Vec<InFlight>,
    sequence: u64,
    /// blocked[a][b]: messages from replica a to replica b are dropped.
    pub blocked: [[bool; 5]; 5],
    partition_until: u64,
    pub faults_on: bool,
    pub clients_active: bool,
    setup: Vec<Command>,
    pub trace_digest: u64,
    pub crashes: u64,
    /// Every halt: (replica, why).
    pub halts: Vec<(u8, String)>,
    /// A test tampered with a replica's digests on purpose (its digest halts are expected).
    pub digests_tampered: bool,
    /// A test injects forged peer messages (their refusals are expected).
    pub forged_messages: bool,
    pub corruptions: u64,
    pub reformats: u64,
    pub storms: u64,
    storm_until: u64,
    pub partitions: u64,
    pub messages_delivered: u64,
    outbox: Outbox,
    pub tracing: bool,
    /// Keep halted replicas down (for whole-cluster crash scenarios) instead of restarting
    /// them at once while faults are off.
    pub hold_halted: bool,
    /// Replicas whose driver never calls `sync_log` (a test holds a primary's own sync back
    /// to crash it between sending a prepare and syncing it).
    pub sync_held: [bool; 5],
    /// Ticks a begun sync of replica i stays out before it runs and is handed back (a slow
    /// disk; 0: the usual random schedule).
    pub sync_delay_ticks: [u64; 5],
    /// Replicas whose checkpoint parts stay out until the replica says the log is held back
    /// (`Replica::checkpoint_overdue`): a disk on which a checkpoint takes forever.
    pub checkpoint_slow: [bool; 5],
    /// Highest view any replica has entered.
    view_seen: u64,
    /// A failover in progress: (first new view, tick it appeared).
    failover_start: Option<(u64, u64)>,
    /// Ticks from a replica first entering a new view to the first commit of an op prepared
    /// in that view or a later one (view-change-to-first-commit), one entry per failover.
    pub failover_ticks: Vec<u64>,
    /// What became of the detached checkpoint writes.
    pub checkpoint_writes: CheckpointWrites,
}

/// What became of a run's detached checkpoint writes: begun, lost with a crash while out, and
/// ended without effect (a state transfer or truncation came first).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckpointWrites {
    pub begun: u64,
    pub crashed: u64,
    pub outdated: u64,
}

/// Whether replica `index` of the run with `seed` writes its checkpoints off its task (as the
/// server does) rather than inline: three replicas in four, so runs mix both.
fn checkpoints_detached(seed: u64, index: u8) -> bool {
    (seed + u64::from(index)) % 4 != 0
}

fn mix(digest: u64, value: u64) -> u64 {
    let mut z = digest ^ value.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z ^ (z >> 31)
}

impl Cluster {
    pub fn new(options: Options) -> Cluster {
        let mut prng = SplitMix64::new(options.seed);
        let count = options.replica_count;
        let nodes = (0..count)
            .map(|index| {
                let storage =
                    SimStorage::new(SimConfig::new(options.seed ^ 0x5EED ^ u64::from(index)));
                let mut replica = Replica::format(
                    storage.clone(),
                    options_config(&options, index, options.seed),
                )
                .expect("format");
                if checkpoints_detached(options.seed, index) {
                    replica.detach_checkpoints();
                }
                Node_ {
                    replica: Some(replica),
                    storage,
                    down_until: 0,
                    wiped: false,
                    // Fresh until it has taken its place in the new cluster.
                    lacks_data: count > 1,
                    clock_offset: prng.up_to(1_000_000),
                    applied_cursor: 0,
                    digest_op: 0,
                    sync: None,
                    sync_began: 0,
                    checkpoint: None,
                }
            })
            .collect();
        let clients = (0..options.clients).map(Client::new).collect();
        let mut setup = workload::setup_commands();
        setup.reverse();
        Cluster {
            checker: Checker::new(core_config()),
            prng,
            tick: 0,
            nodes,
            clients,
            network: Vec::new(),
            sequence: 0,
            blocked: [[false; 5]; 5],
            partition_until: 0,
            faults_on: false,
            clients_active: true,
            setup,
            trace_digest: options.seed,
            crashes: 0,
            corruptions: 0,
            halts: Vec::new(),
            digests_tampered: false,
            forged_messages: false,
            reformats: 0,
            storms: 0,
            storm_until: 0,
            partitions: 0,
            messages_delivered: 0,
            outbox: Outbox::new(4_096, 4_096),
            tracing: std::env::var("VSR_TRACE").is_ok(),
            hold_halted: false,
            sync_held: [false; 5],
            sync_delay_ticks: [0; 5],
            checkpoint_slow: [false; 5],
            view_seen: 0,
            failover_start: None,
            failover_ticks: Vec::new(),
            checkpoint_writes: CheckpointWrites::default(),
            options,
        }
    }

    fn count(&self) -> u8 {
        self.options.replica_count
    }

    // ---- network ----

    fn send(&mut self, from: Node, to: Node, payload: Payload) {
        let faulty = self.faults_on;
        if faulty && self.prng.up_to(99) < self.options.loss_percent {
            return;
        }
        let copies = if faulty && self.prng.up_to(99) < self.options.duplicate_percent {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = 1 + self.prng.up_to(self.options.delay_ticks_max.max(1) - 1);
            self.sequence += 1;
            self.network.push(InFlight {
                deliver_tick: self.tick + delay,
                sequence: self.sequence,
                from,
                to,
                payload: payload.clone(),
            });
        }
    }

    fn link_up(&self, from: Node, to: Node) -> bool {
        match (from, to) {
            (Node::Replica(a), Node::Replica(b)) => !self.blocked[usize::from(a)][usize::from(b)],
            _ => true,
        }
    }

    fn drain_outbox(&mut self, from: u8) {
        let mut outbox = std::mem::replace(&mut self.outbox, Outbox::new(0, 0));
        for envelope in outbox.messages.drain(..) {
            // Every peer message goes through the codec, as it will on TCP.
            let mut bytes = Vec::new();
            encode_message(&envelope.message, &mut bytes);
            let limits = self.nodes[0].replica.as_ref().map(|r| r.message_limits());
            let decoded = match limits {
                Some(limits) => decode_message(&bytes, &limits).expect("own encoding decodes"),
                None => envelope.message,
            };
            self.send(
                Node::Replica(from),
                Node::Replica(envelope.to),
                Payload::Peer(decoded),
            );
        }
        for reply in outbox.replies.drain(..) {
            let client = usize::try_from(reply.client_id - 0xC000).expect("client id");
            self.observe_reply_sent(client, &reply);
            self.send(
                Node::Replica(from),
                Node::Client(client),
                Payload::Reply(reply),
            );
        }
        self.outbox = outbox;
    }

    /// Registers read checks at the moment the replica produced the reply (the model may
    /// move past its op before delivery).
    fn observe_reply_sent(&mut self, client: usize, reply: &Reply) {
        if let ReplyBody::Read { op, result, .. } = reply.body {
            let pending = self.clients[client].current;
            if let Some(pending) = pending.filter(|p| p.request_id == reply.request_id) {
                if let ClientOperation::Read { query, .. } = pending.operation {
                    self.checker.observe_read_reply(
                        client,
                        op,
                        pending.min_required,
                        query,
                        result,
                    );
                }
            }
        }
    }

    fn deliver_due(&mut self) {
        let tick = self.tick;
        let mut due: Vec<InFlight> = Vec::new();
        let mut index = 0;
        while index < self.network.len() {
            if self.network[index].deliver_tick <= tick {
                due.push(self.network.swap_remove(index));
            } else {
                index += 1;
            }
        }
        due.sort_by_key(|m| (m.deliver_tick, m.sequence));
        for message in due {
            if !self.link_up(message.from, message.to) {
                continue;
            }
            self.messages_delivered += 1;
            if self.tracing {
                let what = match &message.payload {
                    Payload::Peer(Message::Prepare {
                        view,
                        commit,
                        entry,
                    }) => format!(
                        "prepare v{view} c{commit} op{} lv{} {:x}",
                        entry.header.op,
                        entry.header.view,
                        entry.header.checksum & 0xffff
                    ),
                    Payload::Peer(Message::StartView {
                        view,
                        op,
                        commit,
                        suffix,
                        ..
                    }) => format!(
                        "start_view v{view} op{op} c{commit} from {:?}",
                        suffix.first().map(|e| e.header.op)
                    ),
                    Payload::Peer(Message::DoViewChange {
                        view,
                        log_view,
                        op,
                        commit,
                        suffix,
                        ..
                    }) => format!(
                        "dvc v{view} lv{log_view} op{op} c{commit} from {:?}",
                        suffix.first().map(|e| e.header.op)
                    ),
                    Payload::Peer(Message::Commit { .. })
                    | Payload::Peer(Message::CommitAck { .. }) => String::new(),
                    Payload::Peer(m) => format!("{m:?}").chars().take(120).collect(),
                    _ => String::new(),
                };
                if !what.is_empty() {
                    println!("t{} {:?}->{:?} {what}", self.tick, message.from, message.to);
                }
            }
            match (message.to, message.payload) {
                (Node::Replica(to), Payload::Peer(peer)) => {
                    let Node::Replica(from) = message.from else {
                        unreachable!()
                    };
                    self.trace_digest = mix(
                        self.trace_digest,
                        (u64::from(from) << 56)
                            ^ (u64::from(to) << 48)
                            ^ peer.view()
                            ^ (peer.name().len() as u64) << 32,
                    );
                    if self.nodes[usize::from(to)].replica.is_some() {
                        let mut outbox = std::mem::replace(&mut self.outbox, Outbox::new(0, 0));
                        self.maybe_arm_mid_write_crash(to);
                        let replica = self.nodes[usize::from(to)].replica.as_mut().unwrap();
                        replica.on_message(from, &peer, &mut outbox);
                        self.outbox = outbox;
                        self.drain_outbox(to);
                        self.maybe_sync(to);
                    }
                }
                (Node::Replica(to), Payload::Request(request)) => {
                    if self.nodes[usize::from(to)].replica.is_some() {
                        let mut outbox = std::mem::replace(&mut self.outbox, Outbox::new(0, 0));
                        self.nodes[usize::from(to)]
                            .replica
                            .as_mut()
                            .unwrap()
                            .on_request(request, &mut outbox);
                        self.outbox = outbox;
                        self.drain_outbox(to);
                        self.maybe_sync(to);
                    }
                }
                (Node::Client(client), Payload::Reply(reply)) => self.client_receive(client, reply),
                _ => unreachable!("payload kind matches destination"),
            }
        }
    }

    // ---- clients ----

    fn client_receive(&mut self, index: usize, reply: Reply) {
        let tick = self.tick;
        let count = self.count();
        let client = &mut self.clients[index];
        let Some(pending) = client.current else {
            return;
        };
        if pending.request_id != reply.request_id {
            return;
        }
        self.trace_digest = mix(self.trace_digest, reply.request_id ^ ((index as u64) << 40));
        match reply.body {
            ReplyBody::Committed {
                op,
                index: at,
                outcome,
            } => {
                let ClientOperation::Write(request) = pending.operation else {
                    return;
                };
                client.learn(&request.command, &outcome);
                client.learn_session(&request.command, op, at, &outcome);
                client.current = None;
                client.completed += 1;
                self.checker
                    .observe_write_reply(index, request.operation_id, op, at, outcome);
            }
            ReplyBody::Read { .. } => {
                client.current = None;
                client.completed += 1;
            }
            ReplyBody::NotPrimary { primary, .. } => {
                // Follow the hint now (same operation id); a stale hint is retried round-robin.
                client.target = if primary == client.target {
                    (primary + 1) % count
                } else {
                    primary
                };
                let request = ClientRequest {
                    client_id: client.id,
                    request_id: pending.request_id,
                    operation: pending.operation,
                };
                let target = client.target;
                if let Some(p) = client.current.as_mut() {
                    p.sent_tick = tick;
                }
                self.send(
                    Node::Client(index),
                    Node::Replica(target),
                    Payload::Request(request),
                );
            }
            ReplyBody::Overloaded | ReplyBody::ReadTimeout => {
                if let Some(p) = client.current.as_mut() {
                    p.sent_tick = tick.saturating_sub(self.options.client_timeout_ticks) + 5;
                }
            }
            ReplyBody::Invalid => panic!("the workload never sends internal commands"),
            ReplyBody::Forbidden => panic!("the harness has no roles"),
        }
    }

    fn clients_tick(&mut self) {
        let tick = self.tick;
        for index in 0..self.clients.len() {
            let mut send = None;
            let client = &mut self.clients[index];
            match client.current.as_mut() {
                None if self.clients_active => {
                    let operation = if let Some(register) = client.register_if_needed() {
                        register
                    } else {
                        let setup = if index == 0 { self.setup.pop() } else { None };
                        if index != 0 && !self.setup.is_empty() {
                            continue;
                        }
                        client.next_operation(&mut self.prng, setup)
                    };
                    let pending = client.issue(operation, tick, self.checker.acknowledged_op_max);
                    send = Some(pending);
                }
                Some(pending) if tick - pending.sent_tick >= self.options.client_timeout_ticks => {
                    pending.sent_tick = tick;
                    client.target = (client.target + 1) % self.options.replica_count;
                    send = Some(*pending);
                }
                _ => {}
            }
            if let Some(pending) = send {
                let client = &self.clients[index];
                let request = ClientRequest {
                    client_id: client.id,
                    request_id: pending.request_id,
                    operation: pending.operation,
                };
                let target = client.target;
                self.send(
                    Node::Client(index),
                    Node::Replica(target),
                    Payload::Request(request),
                );
            }
        }
    }

    pub fn pending_operations(&self) -> usize {
        self.clients.iter().filter(|c| c.current.is_some()).count()
    }

    // ---- faults ----

    fn faulty_count(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| {
                n.replica
                    .as_ref()
                    .is_none_or(|r| r.status() == Status::Recovering)
            })
            .count()
    }

    pub fn crash(&mut self, index: u8) {
        self.observe_applied(index);
        let node = &mut self.nodes[usize::from(index)];
        // A sync or checkpoint write in flight dies with its process (if it ran, its data is
        // on the disk anyway).
        node.sync = None;
        if node.checkpoint.take().is_some() {
            self.checkpoint_writes.crashed += 1;
        }
        if node.replica.take().is_some() {
            if self.tracing {
                println!("t{} crash {index}", self.tick);
            }
            node.storage.fail_mutations_after(None);
            node.storage.crash();
            self.crashes += 1;
        }
    }

    /// Crashes replica `index` and throws its disk away: it restarts (now, or at its next
    /// restart when it is down) from a newly formatted one.
    pub fn wipe(&mut self, index: u8) {
        self.crash(index);
        let node = &mut self.nodes[usize::from(index)];
        node.wiped = true;
        node.lacks_data = true;
        self.reformats += 1;
    }

    /// Replicas whose disk lost data (rot or a wipe) and that have not caught up since.
    fn lacking_count(&self) -> usize {
        self.nodes.iter().filter(|n| n.lacks_data).count()
    }

    pub fn restart(&mut self, index: u8) {
        let seed = self.options.seed ^ self.tick;
        let offset = self.prng.up_to(1_000_000);
        let node = &mut self.nodes[usize::from(index)];
        if node.replica.is_some() {
            return;
        }
        node.storage.fail_mutations_after(None);
        let config = options_config(&self.options, index, seed);
        let node = &mut self.nodes[usize::from(index)];
        let opened = if std::mem::take(&mut node.wiped) {
            // A new disk, formatted exactly as `allocdb format` does it.
            node.storage = SimStorage::new(SimConfig::new(seed ^ 0xD15C));
            Replica::format(node.storage.clone(), config)
        } else {
            Replica::open(node.storage.clone(), config)
        };
        match opened {
            Ok(mut replica) => {
                if checkpoints_detached(self.options.seed, index) {
                    replica.detach_checkpoints();
                }
                if self.tracing {
                    println!(
                        "t{} restart {index}: v{} lv{} {:?} commit {} op {}",
                        self.tick,
                        replica.view(),
                        replica.log_view(),
                        replica.status(),
                        replica.commit_min(),
                        replica.last_op()
                    );
                }
                node.replica = Some(replica);
                node.applied_cursor = 0;
                node.digest_op = u64::MAX;
                node.clock_offset = offset;
            }
            Err(error) => {
                let text = format!("replica {index} failed to reopen after a crash: {error}");
                self.checker.violation(text);
            }
        }
    }

    fn maybe_arm_mid_write_crash(&mut self, index: u8) {
        if !self.faults_on || self.options.crash_per_mille == 0 {
            return;
        }
        if self.prng.up_to(999) < self.options.crash_per_mille / 2
            && self.prng.up_to(99) < self.options.crash_mid_write_percent
            && self.faulty_count() < self.f()
        {
            let budget = self.prng.up_to(3);
            self.nodes[usize::from(index)]
                .storage
                .fail_mutations_after(Some(budget));
        }
    }

    /// A random record of a live replica's log other than its last: (segment file, offset of
    /// a byte inside its header or the start of its body).
    fn random_record(&mut self, index: u8) -> Option<(String, u64)> {
        let replica = self.nodes[usize::from(index)].replica.as_ref()?;
        let first = replica.commit_min().saturating_sub(64).max(1);
        let last = replica.last_op();
        if last < 2 || replica.header(first).is_none() || first >= last {
            return None;
        }
        let op = first + self.prng.up_to(last - 1 - first);
        let storage = self.nodes[usize::from(index)].storage.clone();
        let mut names = allocdb_wal::Storage::list(&mut storage.clone()).ok()?;
        names.retain(|n| n.starts_with("log-"));
        let (segment_first, name) = names
            .iter()
            .filter_map(|n| n["log-".len()..].parse::<u64>().ok().map(|f| (f, n)))
            .filter(|(f, _)| *f <= op)
            .max()?;
        let mut offset = 0;
        for o in segment_first..op {
            let header = replica.header(o)?;
            offset += u64::from(allocdb_wal::RECORD_HEADER_SIZE) + u64::from(header.body_len);
        }
        Some((name.clone(), offset))
    }

    fn f(&self) -> usize {
        usize::from((self.count() - 1) / 2)
    }

    fn primary(&self) -> Option<u8> {
        self.nodes
            .iter()
            .filter_map(|n| n.replica.as_ref())
            .filter(|r| r.is_primary())
            .max_by_key(|r| r.view())
            .map(|r| r.index())
    }

    fn faults_tick(&mut self) {
        let count = self.count();
        // Partitions come and go.
        if self.tick >= self.partition_until && self.blocked.iter().flatten().any(|b| *b) {
            self.blocked = [[false; 5]; 5];
        }
        if count > 1
            && self.tick >= self.partition_until
            && self.prng.up_to(999) < self.options.partition_per_mille
        {
            self.partitions += 1;
            self.partition_until = self.tick + 20 + self.prng.up_to(150);
            let victim = if self.prng.up_to(1) == 0 {
                self.primary().unwrap_or(0)
            } else {
                u8::try_from(self.prng.up_to(u64::from(count) - 1)).unwrap()
            };
            match self.prng.up_to(2) {
                0 => {
                    for other in 0..count {
                        if other != victim {
                            self.blocked[usize::from(victim)][usize::from(other)] = true;
                            self.blocked[usize::from(other)][usize::from(victim)] = true;
                        }
                    }
                }
                1 => {
                    // One-way: the victim can send but not receive (or the reverse).
                    let outgoing = self.prng.up_to(1) == 0;
                    for other in 0..count {
                        if other != victim {
                            let (a, b) = if outgoing {
                                (victim, other)
                            } else {
                                (other, victim)
                            };
                            self.blocked[usize::from(a)][usize::from(b)] = true;
                        }
                    }
                }
                _ => {
                    for a in 0..count {
                        for b in 0..count {
                            if a != b && self.prng.up_to(2) == 0 {
                                self.blocked[usize::from(a)][usize::from(b)] = true;
                            }
                        }
                    }
                }
            }
        }
        // Crashes (at most f replicas down or recovering at once) and restarts.
        for index in 0..count {
            let node = &self.nodes[usize::from(index)];
            if node.replica.is_none() && self.tick >= node.down_until {
                self.restart(index);
            }
        }
        if count > 1
            && self.tick >= self.storm_until
            && self.prng.up_to(999) < self.options.storm_per_mille
        {
            self.storms += 1;
            self.storm_until = self.tick + 50 + self.prng.up_to(150);
        }
        let down_max = if self.tick < self.storm_until {
            usize::from(count) - 1
        } else {
            self.f()
        };
        if count > 1
            && self.prng.up_to(999) < self.options.crash_per_mille
            && self.faulty_count() < down_max
        {
            self.random_crash(count);
        }
    }

    /// Crashes a replica (the primary half the time); while fewer than f replicas lack data,
    /// the crash may also rot a record or lose the whole disk.
    fn random_crash(&mut self, count: u8) {
        let victim = if self.prng.up_to(1) == 0 {
            self.primary().unwrap_or(0)
        } else {
            u8::try_from(self.prng.up_to(u64::from(count) - 1)).unwrap()
        };
        let may_lose = self.lacking_count() < self.f()
            && !self.nodes[usize::from(victim)].lacks_data
            && self.nodes[usize::from(victim)].replica.is_some();
        let wipe = may_lose && self.prng.up_to(99) < self.options.reformat_percent;
        let rot = may_lose && !wipe && self.prng.up_to(99) < self.options.corrupt_percent;
        let location = if rot {
            self.random_record(victim)
        } else {
            None
        };
        if wipe {
            self.wipe(victim);
        } else {
            self.crash(victim);
        }
        if let Some((name, offset)) = location {
            // Disk rot inside the log (never in the last record, which would look like a
            // torn write): the replica must notice, recover, and not vote meanwhile.
            let bit = self.prng.up_to(8 * 64);
            assert!(
                self.nodes[usize::from(victim)]
                    .storage
                    .flip_bit(&name, offset * 8 + bit)
            );
            self.corruptions += 1;
            self.nodes[usize::from(victim)].lacks_data = true;
        }
        let downtime = 5 + self.prng.up_to(100);
        self.nodes[usize::from(victim)].down_until = self.tick + downtime;
    }

    // ---- the loop ----

    pub fn step(&mut self) {
        self.tick += 1;
        if self.faults_on {
            self.faults_tick();
        }
        self.clients_tick();
        self.deliver_due();
        for index in 0..self.count() {
            let tick = self.tick;
            let node = &mut self.nodes[usize::from(index)];
            let clock_slot = tick + node.clock_offset;
            if let Some(replica) = node.replica.as_mut() {
                let mut outbox = std::mem::replace(&mut self.outbox, Outbox::new(0, 0));
                replica.on_tick(clock_slot, &mut outbox);
                self.outbox = outbox;
                self.drain_outbox(index);
            }
        }
        self.sync_logs();
        self.handle_halts();
        for node in &mut self.nodes {
            if node
                .replica
                .as_ref()
                .is_some_and(|r| r.status() != Status::Recovering)
            {
                node.lacks_data = false;
            }
        }
        if self.tracing {
            println!("t{} {}", self.tick, self.describe());
        }
        self.check();
    }

    /// Plays the driver's part after every step: a replica's unsynced appends are synced and
    /// a due checkpoint is written.
    fn sync_logs(&mut self) {
        for index in 0..self.count() {
            self.maybe_sync(index);
            self.maybe_write_checkpoint(index);
        }
    }

    /// Plays the checkpoint thread's part for a replica whose checkpoints are detached: one
    /// write out at a time, begun after a round. With faults on, a write often stays out
    /// across later steps — begun but not written, or written but not handed back — so
    /// crashes, state transfers, truncations and more commits land while it is out.
    fn maybe_write_checkpoint(&mut self, index: u8) {
        let i = usize::from(index);
        if self.nodes[i].replica.is_none() {
            return;
        }
        if self.nodes[i].checkpoint.is_none() {
            let Some(write) = self.nodes[i].replica.as_mut().unwrap().checkpoint_begin() else {
                return;
            };
            self.checkpoint_writes.begun += 1;
            self.nodes[i].checkpoint = Some(write);
        }
        // Each part (the file, then the removal of covered segments) may stay out for steps,
        // until the log would be held back: then the driver waits for it.
        while self.nodes[i].checkpoint.is_some() {
            let overdue = self.nodes[i]
                .replica
                .as_ref()
                .is_some_and(Replica::checkpoint_overdue);
            if !overdue && self.checkpoint_slow[i] {
                return;
            }
            if !overdue && self.faults_on && self.prng.up_to(15) != 0 {
                return;
            }
            if !self.nodes[i]
                .checkpoint
                .as_ref()
                .is_some_and(CheckpointWrite::has_run)
            {
                self.maybe_arm_mid_write_crash(index);
                self.nodes[i].checkpoint.as_mut().unwrap().run();
                if self.faults_on && self.prng.up_to(1) == 0 {
                    return;
                }
            }
            let write = self.nodes[i].checkpoint.take().unwrap();
            self.end_checkpoint(index, write);
        }
    }

    fn end_checkpoint(&mut self, index: u8, write: CheckpointWrite<SimWriter>) {
        let (op, file) = (write.op(), !write.is_reclaim());
        let replica = self.nodes[usize::from(index)].replica.as_mut().unwrap();
        let next = replica.checkpoint_end(write);
        if file && replica.halted().is_none() && replica.checkpoint_op() != op {
            self.checkpoint_writes.outdated += 1;
        }
        // The second part (removing covered segments) is out like the first.
        self.nodes[usize::from(index)].checkpoint = next;
    }

    /// Plays the driver's part after a round (one input here): the replica's messages are
    /// already sent, then its unsynced appends (a primary's prepares, a streaming backup's
    /// group) are synced, one sync in flight at a time, as the server's sync thread does.
    /// With faults on, a sync is often left in flight across later inputs and steps — begun
    /// but not run, or run but not handed back — so crashes land between sending a prepare
    /// and syncing it (send before sync), between a sync and its outcome, and appends and
    /// view changes happen while a sync is out.
    fn maybe_sync(&mut self, index: u8) {
        let i = usize::from(index);
        if self.nodes[i].replica.is_none() || self.sync_held[i] {
            return;
        }
        let delay = self.sync_delay_ticks[i];
        if delay > 0 {
            if self.nodes[i].sync.is_some() {
                if self.tick < self.nodes[i].sync_began + delay {
                    return;
                }
                let mut sync = self.nodes[i].sync.take().unwrap();
                sync.run();
                self.end_sync(index, sync);
            }
            if let Some(sync) = self.nodes[i].replica.as_mut().unwrap().sync_log_begin() {
                self.nodes[i].sync = Some(sync);
                self.nodes[i].sync_began = self.tick;
            }
            return;
        }
        if self.nodes[i].sync.is_some() {
            if self.faults_on && self.prng.up_to(2) == 0 {
                return;
            }
            if !self.nodes[i].sync.as_ref().is_some_and(TailSync::has_run) {
                self.maybe_arm_mid_write_crash(index);
                self.nodes[i].sync.as_mut().unwrap().run();
                if self.faults_on && self.prng.up_to(2) == 0 {
                    return;
                }
            }
            let sync = self.nodes[i].sync.take().unwrap();
            self.end_sync(index, sync);
        }
        if !self.nodes[i]
            .replica
            .as_ref()
            .is_some_and(Replica::log_unsynced)
        {
            return;
        }
        let Some(mut sync) = self.nodes[i].replica.as_mut().unwrap().sync_log_begin() else {
            return;
        };
        if self.faults_on && self.prng.up_to(1) == 0 {
            self.nodes[i].sync = Some(sync);
            return;
        }
        self.maybe_arm_mid_write_crash(index);
        sync.run();
        self.end_sync(index, sync);
    }

    fn end_sync(&mut self, index: u8, sync: TailSync<SimSyncer>) {
        let mut outbox = std::mem::replace(&mut self.outbox, Outbox::new(0, 0));
        let replica = self.nodes[usize::from(index)].replica.as_mut().unwrap();
        replica.sync_log_end(sync, &mut outbox);
        self.outbox = outbox;
        self.drain_outbox(index);
    }

    fn handle_halts(&mut self) {
        for index in 0..self.count() {
            let halted = self.nodes[usize::from(index)]
                .replica
                .as_ref()
                .and_then(|r| r.halted().map(str::to_string));
            if let Some(text) = halted {
                if text.contains("states diverged") && !self.digests_tampered {
                    // Equal logs must give equal states: a digest halt is a real divergence.
                    self.checker.violations.push(format!("(c) {text}"));
                }
                if text.contains("closed or stale handle") {
                    // A live replica never uses a handle it closed, and a sync begun before a
                    // crash dies with it: a stale handle is a bug in the log, not a fault.
                    self.checker
                        .violations
                        .push(format!("(storage) replica {index}: {text}"));
                }
                self.halts.push((index, text));
                self.crash(index);
                let downtime = 1 + self.prng.up_to(40);
                self.nodes[usize::from(index)].down_until = self.tick + downtime;
                if self.hold_halted {
                    self.nodes[usize::from(index)].down_until = u64::MAX;
                } else if !self.faults_on {
                    self.restart(index);
                }
            }
        }
    }

    /// Hands the ops replica `index` applied since the last look to the checker. Also called
    /// just before a crash: an op applied and then lost with its process in the same step
    /// (a lone replica that commits, checkpoints and dies) was still committed.
    fn observe_applied(&mut self, index: u8) {
        let node = &mut self.nodes[usize::from(index)];
        let Some(replica) = node.replica.as_ref() else {
            return;
        };
        let mut last = node.applied_cursor;
        for applied in replica.applied_since(node.applied_cursor) {
            let h = &applied.header;
            if let Some((view, start)) = self.failover_start {
                if h.view >= view {
                    self.failover_ticks.push(self.tick - start);
                    self.failover_start = None;
                }
            }
            self.checker
                .observe_commit(index, h.op, h.checksum, h.slot, &applied.body);
            last = h.op;
        }
        node.applied_cursor = last.max(replica.commit_min().min(last));
    }

    /// Runs every checker over the replicas' new state.
    pub fn check(&mut self) {
        let view_max = self
            .nodes
            .iter()
            .filter_map(|n| n.replica.as_ref().map(|r| r.view()))
            .max()
            .unwrap_or(0);
        if view_max > self.view_seen {
            self.view_seen = view_max;
            if self.failover_start.is_none() {
                self.failover_start = Some((view_max, self.tick));
            }
        }
        for index in 0..self.count() {
            let node = &mut self.nodes[usize::from(index)];
            let Some(replica) = node.replica.as_ref() else {
                continue;
            };
            if let Some((from, reason)) = replica.last_refusal() {
                // Honest replicas never send a message that breaks the protocol's rules: a
                // refusal here is a protocol bug (it replaced the replicas' own assertions).
                if !self.forged_messages && !self.options.peer_refusals_expected {
                    self.checker.violations.push(format!(
                        "(peer) replica {index} refused a message from replica {from}: {reason}"
                    ));
                }
            }
            self.observe_applied(index);
            let node = &mut self.nodes[usize::from(index)];
            let replica = node.replica.as_ref().expect("checked above");
            if replica.commit_min() != node.digest_op {
                node.digest_op = replica.commit_min();
                if replica.commit_min() > 0 {
                    self.checker.observe_digest(
                        index,
                        replica.commit_min(),
                        replica.allocator().state_digest(),
                    );
                }
                self.checker.observe_invariants(index, replica.allocator());
            }
        }
        self.checker.advance_model();
    }

    pub fn violations(&self) -> &[String] {
        &self.checker.violations
    }

    /// Runs the fault phase, then heals everything and measures ticks until every pending
    /// request completed and every replica applied the whole history.
    pub fn run(&mut self) -> Result<Report, String> {
        self.faults_on = self.options.crash_per_mille > 0
            || self.options.partition_per_mille > 0
            || self.options.loss_percent > 0;
        for _ in 0..self.options.fault_ticks {
            self.step();
            if !self.checker.violations.is_empty() {
                return Err(self.checker.violations.join("\n"));
            }
        }
        self.heal();
        let heal_start = self.tick;
        loop {
            self.step();
            if !self.checker.violations.is_empty() {
                return Err(self.checker.violations.join("\n"));
            }
            if self.converged() {
                break;
            }
            if self.tick - heal_start > self.options.heal_ticks_max {
                let pending: Vec<String> = self
                    .clients
                    .iter()
                    .filter_map(|c| {
                        c.current
                            .map(|p| format!("client {} -> {}: {:?}", c.index, c.target, p))
                    })
                    .collect();
                return Err(format!(
                    "(f) not recovered {} ticks after healing: {} operations pending; replicas {}; \
                     pending {pending:?}; committed history up to op {}, the model applied up to op {}",
                    self.options.heal_ticks_max,
                    self.pending_operations(),
                    self.describe(),
                    self.checker.history_op_max(),
                    self.checker.model_op()
                ));
            }
        }
        Ok(Report {
            ticks_to_recovery: self.tick - heal_start,
            ops_committed: self.checker.history_op_max(),
            operations_completed: self.clients.iter().map(|c| c.completed).sum(),
            crashes: self.crashes,
            corruptions: self.corruptions,
            reformats: self.reformats,
            storms: self.storms,
            partitions: self.partitions,
            trace_digest: self.trace_digest,
            writes_checked: self.checker.writes_checked,
            reads_checked: self.checker.reads_checked,
            failover_ticks: self.failover_ticks.clone(),
            checkpoint_writes: self.checkpoint_writes,
        })
    }

    pub fn heal(&mut self) {
        self.faults_on = false;
        self.clients_active = false;
        self.blocked = [[false; 5]; 5];
        for index in 0..self.count() {
            self.nodes[usize::from(index)]
                .storage
                .fail_mutations_after(None);
            self.restart(index);
        }
    }

    pub fn converged(&self) -> bool {
        let history = self.checker.history_op_max();
        self.pending_operations() == 0
            && self.nodes.iter().all(|n| {
                n.replica
                    .as_ref()
                    .is_some_and(|r| r.status() == Status::Normal && r.commit_min() >= history)
            })
            && self.checker.model_op() >= history
    }

    pub fn describe(&self) -> String {
        self.nodes
            .iter()
            .map(|n| match n.replica.as_ref() {
                Some(r) => format!(
                    "[{} v{} lv{} {:?} commit {}/{} op {}]",
                    r.index(),
                    r.view(),
                    r.log_view(),
                    r.status(),
                    r.commit_min(),
                    r.commit_max(),
                    r.last_op()
                ),
                None => "[down]".to_string(),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub ticks_to_recovery: u64,
    pub ops_committed: u64,
    pub operations_completed: u64,
    pub crashes: u64,
    pub corruptions: u64,
    pub reformats: u64,
    pub storms: u64,
    pub partitions: u64,
    pub trace_digest: u64,
    pub writes_checked: u64,
    pub reads_checked: u64,
    pub failover_ticks: Vec<u64>,
    pub checkpoint_writes: CheckpointWrites,
}

/// Runs one seed, converting a replica panic (an assertion catching a broken invariant)
/// into a reported violation.
pub fn run_seed(options: Options) -> Result<Report, String> {
    let seed = options.seed;
    let result =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Cluster::new(options).run()));
    match result {
        Ok(result) => result,
        Err(panic) => {
            let text = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
                .unwrap_or_else(|| "non-string panic".to_string());
            Err(format!("seed {seed}: replica panicked: {text}"))
        }
    }
}
