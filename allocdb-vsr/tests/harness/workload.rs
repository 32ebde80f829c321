//! Simulated clients: one operation outstanding each, retried with the same operation id
//! after a timeout (to the next replica), redirected by `not_primary`.

use allocdb_core::{
    Bundle, Command, LeaseId, OperationKey, Outcome, Request, ResultCode, session_id_at,
};
use allocdb_vsr::{ClientOperation, Query};
use allocdb_wal::SplitMix64;

pub const RESOURCES: u128 = 8;
pub const POOLS: [u128; 2] = [1_000, 1_001];
pub const POOL_MEMBERS: u128 = 4;

#[derive(Clone, Copy, Debug)]
pub struct Lease {
    pub id: LeaseId,
    pub epoch: u64,
}

pub struct Client {
    pub index: usize,
    pub id: u128,
    pub target: u8,
    pub current: Option<Pending>,
    pub leases: Vec<Lease>,
    pub completed: u64,
    /// The session this client numbers its writes in; 0 until registered (and again after
    /// an eviction).
    pub session: u64,
    next_number: u64,
    next_request: u64,
}

#[derive(Clone, Copy, Debug)]
pub struct Pending {
    pub request_id: u64,
    pub operation: ClientOperation,
    pub sent_tick: u64,
    pub first_sent_tick: u64,
    /// Reads: the highest op acknowledged to anyone when the read was issued.
    pub min_required: u64,
}

impl Client {
    pub fn new(index: usize) -> Client {
        Client {
            index,
            id: 0xC000 + index as u128,
            target: 0,
            current: None,
            leases: Vec::new(),
            completed: 0,
            session: 0,
            next_number: 1,
            next_request: 1,
        }
    }

    /// The next operation: setup creates first, then a random mix over hot resources.
    pub fn next_operation(
        &mut self,
        prng: &mut SplitMix64,
        setup: Option<Command>,
    ) -> ClientOperation {
        let command = setup.unwrap_or_else(|| self.random_command(prng));
        if setup.is_none() && prng.up_to(9) == 0 {
            let query = match prng.up_to(2) {
                0 => Query::Resource(1 + u128::from(prng.up_to(RESOURCES as u64 - 1))),
                1 => Query::Pool(POOLS[usize::try_from(prng.up_to(1)).unwrap()]),
                _ => Query::Lease(self.leases.last().map_or(LeaseId(1 << 32), |l| l.id)),
            };
            return ClientOperation::Read { query, min_op: 0 };
        }
        // Numbered in the client's session, as the client library numbers them; a retry
        // resends the same number.
        assert_ne!(self.session, 0, "writes wait for a session");
        let operation_id = OperationKey::Session {
            session: self.session,
            request: self.next_number,
        }
        .id();
        self.next_number += 1;
        ClientOperation::Write(Request {
            operation_id,
            command,
        })
    }

    /// The registration to send first, while the client has no session.
    pub fn register_if_needed(&self) -> Option<ClientOperation> {
        (self.session == 0).then_some(ClientOperation::Write(Request {
            operation_id: 0,
            command: Command::RegisterSession { client: self.id },
        }))
    }

    /// Learns the session from its registration's position, or that it was evicted.
    pub fn learn_session(&mut self, command: &Command, op: u64, index: u32, outcome: &Outcome) {
        match (command, outcome.code) {
            (Command::RegisterSession { .. }, ResultCode::Ok) => {
                self.session = session_id_at(op, index);
                self.next_number = 1;
            }
            (_, ResultCode::SessionEvicted) => self.session = 0,
            _ => {}
        }
    }

    fn random_command(&mut self, prng: &mut SplitMix64) -> Command {
        let holder = self.id;
        let ttl = 5 + prng.up_to(60);
        let lease = if self.leases.is_empty() {
            None
        } else {
            let i = usize::try_from(prng.up_to(self.leases.len() as u64 - 1)).unwrap();
            Some(self.leases[i])
        };
        match (prng.up_to(9), lease) {
            (0..=2, _) | (_, None) => {
                let count = 1 + prng.up_to(2);
                let mut bundle = Bundle::EMPTY;
                for _ in 0..count {
                    bundle.push(1 + u128::from(prng.up_to(RESOURCES as u64 - 1)));
                }
                Command::Reserve {
                    resources: bundle,
                    holder,
                    ttl_slots: ttl,
                }
            }
            (3, _) => Command::ReserveAny {
                pool: POOLS[usize::try_from(prng.up_to(1)).unwrap()],
                count: 1 + u32::try_from(prng.up_to(1)).unwrap(),
                holder,
                ttl_slots: ttl,
            },
            (4, Some(l)) => Command::Activate {
                lease: l.id,
                holder,
                epoch: l.epoch,
                ttl_slots: if prng.up_to(1) == 0 { None } else { Some(ttl) },
            },
            (5, Some(l)) => Command::Renew {
                lease: l.id,
                holder,
                epoch: l.epoch,
                ttl_slots: ttl,
            },
            (6 | 7, Some(l)) => Command::Release {
                lease: l.id,
                holder,
                epoch: l.epoch,
            },
            (8, Some(l)) => Command::Revoke { lease: l.id },
            (_, Some(l)) => Command::Reclaim { lease: l.id },
        }
    }

    pub fn issue(&mut self, operation: ClientOperation, tick: u64, min_required: u64) -> Pending {
        let pending = Pending {
            request_id: self.next_request,
            operation,
            sent_tick: tick,
            first_sent_tick: tick,
            min_required,
        };
        self.next_request += 1;
        self.current = Some(pending);
        pending
    }

    /// Learns lease ids and epochs from a committed outcome.
    pub fn learn(&mut self, command: &Command, outcome: &Outcome) {
        if outcome.code != ResultCode::Ok {
            if matches!(
                outcome.code,
                ResultCode::LeaseNotFound
                    | ResultCode::LeaseRetired
                    | ResultCode::LeaseExpired
                    | ResultCode::InvalidState
            ) {
                let lease = match command {
                    Command::Activate { lease, .. }
                    | Command::Renew { lease, .. }
                    | Command::Release { lease, .. }
                    | Command::Revoke { lease }
                    | Command::Reclaim { lease } => Some(*lease),
                    _ => None,
                };
                if let Some(lease) = lease {
                    self.leases.retain(|l| l.id != lease);
                }
            }
            return;
        }
        match command {
            Command::Reserve { .. } | Command::ReserveAny { .. } => {
                if self.leases.len() >= 6 {
                    self.leases.remove(0);
                }
                self.leases.push(Lease {
                    id: outcome.lease,
                    epoch: outcome.epoch,
                });
            }
            _ => {
                for lease in &mut self.leases {
                    if lease.id == outcome.lease {
                        lease.epoch = outcome.epoch;
                    }
                }
            }
        }
    }
}

/// The setup commands: every hot resource, then the pools' members.
pub fn setup_commands() -> Vec<Command> {
    let mut commands: Vec<Command> = (1..=RESOURCES)
        .map(|resource| Command::CreateResource {
            resource,
            pool: None,
        })
        .collect();
    for pool in POOLS {
        for member in 0..POOL_MEMBERS {
            commands.push(Command::CreateResource {
                resource: pool * 100 + member,
                pool: Some(pool),
            });
        }
    }
    commands
}
