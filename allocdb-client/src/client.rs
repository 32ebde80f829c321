//! The public handle: typed calls that become requests for the connection task.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use allocdb_core::{
    BUNDLE_SIZE_LIMIT, Bundle, Command, HolderId, LeaseId, LeaseView, Op, PoolId, PoolStats,
    Request, ResourceId, ResourceView, ResultCode, Slot,
};
use allocdb_protocol::frame::Role;
use allocdb_protocol::{ClientOperation, Query, ReadResult, ReplyBody};
use tokio::sync::{Semaphore, TryAcquireError, mpsc, oneshot};
use tokio::time::Instant;

use crate::driver::{Answer, AnswerBody, Call, Counters, Driver};
use crate::error::ClientError;
use crate::ids::IdSource;
use crate::options::{CallOptions, ClientOptions};
use crate::results::{Committed, Read};
use crate::session::{Session, SessionError};
use crate::tls::Transport;

/// A connection to an AllocDB cluster. Cheap to clone; clones share one connection task, so
/// concurrent calls from all clones are coalesced into shared frames.
///
/// ```no_run
/// use allocdb_client::{Client, ClientError, ClientOptions, Security, TlsCredentials};
///
/// # async fn example() -> Result<(), ClientError> {
/// let addresses = vec!["10.0.0.10:3000".into(), "10.0.0.11:3000".into(), "10.0.0.12:3000".into()];
/// let mut options = ClientOptions::new(addresses, 7);
/// // ca.crt, operator.crt and operator.key, as `allocdb certs` writes them.
/// let credentials = TlsCredentials::from_dir("certs".as_ref(), "operator")
///     .map_err(|reason| ClientError::Invalid { reason })?;
/// options.security = Some(Security::Tls(credentials));
/// let client = Client::connect(options).await?;
/// client.create_resource(42, None).await?;
/// let ttl_slots = client.slots_for(std::time::Duration::from_secs(30));
/// let lease = client.reserve(&[42], 7, ttl_slots).await?;
/// client.activate(lease.lease, 7, lease.epoch, None).await?;
/// let seat = client.get_resource(42, Some(lease.op)).await?;
/// assert_eq!(seat.value.lease, Some(lease.lease));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    options: ClientOptions,
    ids: IdSource,
    cluster_id: u128,
    slot_ms: u64,
    ttl_slots_max: u64,
    calls: mpsc::Sender<Box<Call>>,
    in_flight: Arc<Semaphore>,
    counters: Arc<Counters>,
}

/// Counters describing what the client has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// `ClientRequests` frames sent.
    pub frames_sent: u64,
    /// Requests sent, resends included.
    pub requests_sent: u64,
    /// Sessions opened after the first (failovers, redirects, reconnects).
    pub reconnects: u64,
    /// The highest view seen.
    pub view_max: u64,
    /// The session the client numbers its writes on, if one is registered and not evicted.
    pub session_id: Option<allocdb_core::ids::SessionId>,
    /// Sessions registered so far (one more after each eviction).
    pub registrations: u64,
    /// Sessions found evicted (answered `session_evicted`).
    pub evictions: u64,
    /// The highest op seen in any answer: application keys are issued after it.
    pub op_max_seen: Op,
}

impl Client {
    /// Connects to the first replica that answers (trying each address in turn, for up to
    /// `options.call_timeout`) and starts the connection task. Requires a tokio runtime.
    ///
    /// # Errors
    /// [`ClientError::Invalid`] for unusable options, a replica of another cluster, or a list
    /// whose every replica answers in the other transport (TLS or plaintext);
    /// [`ClientError::Unavailable`] when no replica answered in time.
    pub async fn connect(options: ClientOptions) -> Result<Client, ClientError> {
        if let Some(reason) = options.problem() {
            return Err(ClientError::Invalid { reason });
        }
        let security = options.security.as_ref().expect("problem() checked it");
        let transport =
            Transport::new(security).map_err(|reason| ClientError::Invalid { reason })?;
        let ids = match options.identity_seed {
            Some(seed) => IdSource::from_seed(seed, seed.rotate_left(32) ^ 0x5EED),
            None => IdSource::random(),
        };
        let session = open_first(&options, &transport, ids.client_id()).await?;
        let cluster_id = session.cluster_id;
        let slot_ms = session.welcome.slot_ms;
        assert!(slot_ms > 0, "the session checked the welcome");
        let ttl_slots_max = session.welcome.ttl_slots_max;
        let in_flight_max = usize::try_from(options.in_flight_max).expect("u32 fits in usize");
        let (sender, receiver) = mpsc::channel(in_flight_max);
        let counters = Arc::new(Counters::default());
        counters
            .view_max
            .store(session.welcome.view, Ordering::Relaxed);
        let driver = Driver::new(
            options.clone(),
            transport,
            ids.client_id(),
            receiver,
            session,
            Arc::clone(&counters),
        );
        tokio::spawn(driver.run());
        Ok(Client {
            inner: Arc::new(Inner {
                options,
                ids,
                cluster_id,
                slot_ms,
                ttl_slots_max,
                calls: sender,
                in_flight: Arc::new(Semaphore::new(in_flight_max)),
                counters,
            }),
        })
    }

    /// The cluster's id (learned from the first replica when the options said 0).
    pub fn cluster_id(&self) -> u128 {
        self.inner.cluster_id
    }

    /// The cluster's slot length in milliseconds: TTLs are counted in slots.
    pub fn slot_ms(&self) -> u64 {
        self.inner.slot_ms
    }

    /// The longest TTL the cluster accepts, in slots (`allocdb format --ttl-slots-max`, told
    /// in the welcome): a longer one is refused [`ResultCode::TtlOutOfRange`].
    ///
    /// [`ResultCode::TtlOutOfRange`]: crate::ResultCode::TtlOutOfRange
    pub fn ttl_slots_max(&self) -> u64 {
        self.inner.ttl_slots_max
    }

    /// The number of slots covering `duration`, rounded up; a zero duration is 0 slots, which
    /// the cluster refuses as `ttl_out_of_range`.
    pub fn slots_for(&self, duration: std::time::Duration) -> u64 {
        slots_for(duration, self.inner.slot_ms)
    }

    /// What the client has done so far.
    pub fn stats(&self) -> ClientStats {
        let counters = &self.inner.counters;
        ClientStats {
            frames_sent: counters.frames_sent.load(Ordering::Relaxed),
            requests_sent: counters.requests_sent.load(Ordering::Relaxed),
            reconnects: counters.reconnects.load(Ordering::Relaxed),
            view_max: counters.view_max.load(Ordering::Relaxed),
            session_id: match counters.session_id.load(Ordering::Relaxed) {
                0 => None,
                session => Some(session),
            },
            registrations: counters.registrations.load(Ordering::Relaxed),
            evictions: counters.evictions.load(Ordering::Relaxed),
            op_max_seen: counters.op_max_seen.load(Ordering::Relaxed),
        }
    }

    /// A fresh *application key*: an operation id to pass in [`CallOptions::operation_id`]
    /// when a write must be retried beyond this client's session (from another process,
    /// after a restart). Store it before the first submission.
    ///
    /// Layout (see [`OperationKey`](crate::OperationKey)): bit 127 clear, `issued_after_op` in
    /// bits 64..127 — the highest op this client has seen committed (when it has seen none,
    /// it registers its session first and uses at least that op) — and a nonce in bits 0..64, never repeated by this client. The
    /// cluster keeps a key's outcome for `dedupe_window_slots` (at most `operations_max`
    /// keys, oldest retired first); a retry after that is answered `operation_expired`, never
    /// executed again. So make the key just before its first submission: a key issued after
    /// an op older than every record the cluster still keeps is refused at once.
    ///
    /// # Errors
    /// When the client has seen no op yet: as [`Client::write`] if its session cannot be
    /// registered before [`ClientOptions::call_timeout`].
    pub async fn new_operation_id(&self) -> Result<allocdb_core::OperationId, ClientError> {
        let mut op = self.inner.counters.op_max_seen.load(Ordering::Relaxed);
        if op == 0 {
            // The registration is a committed write: its op is one the client saw committed.
            // (A read would do too, but a primary serves none before its view's first op.)
            let placeholder = ClientOperation::Write(Request {
                operation_id: 0,
                command: Command::RegisterSession { client: 0 },
            });
            let registered = self.submit_call(&placeholder, true, true, None).await?;
            let AnswerBody::Committed {
                op: register_op, ..
            } = registered.body
            else {
                return Err(unexpected(&registered.body.reply()));
            };
            op = register_op.max(self.inner.counters.op_max_seen.load(Ordering::Relaxed));
        }
        Ok(self.inner.ids.application_key(op))
    }

    /// Creates a resource, optionally in a pool (operator role). As
    /// [`Client::create_resource_with`] with default [`CallOptions`].
    ///
    /// # Errors
    /// `Rejected { code: AlreadyExists | ResourceTableFull | PoolTableFull, .. }`; see
    /// [`Client::write`].
    pub fn create_resource(
        &self,
        resource: ResourceId,
        pool: Option<PoolId>,
    ) -> impl Future<Output = Result<Committed, ClientError>> + '_ {
        self.create_resource_with(resource, pool, CallOptions::default())
    }

    /// [`Client::create_resource`] with per-call `options` (operation id, timeout).
    ///
    /// # Errors
    /// As [`Client::create_resource`].
    pub fn create_resource_with(
        &self,
        resource: ResourceId,
        pool: Option<PoolId>,
        options: CallOptions,
    ) -> impl Future<Output = Result<Committed, ClientError>> + '_ {
        self.write(Command::CreateResource { resource, pool }, options)
    }

    /// Reserves every resource of `resources` for `holder`, all or nothing, for `ttl_slots`
    /// (see [`Client::slots_for`]). The answer's `lease` is the new lease (also a fencing
    /// token) and `epoch` the epoch to present to [`Client::activate`], [`Client::renew`] and
    /// [`Client::release`]. As [`Client::reserve_with`] with default [`CallOptions`].
    ///
    /// # Errors
    /// [`ClientError::Invalid`] for more than [`BUNDLE_SIZE_LIMIT`] resources;
    /// `Rejected { code: ResourceBusy | ResourceNotFound | TtlOutOfRange | .., .. }`; see
    /// [`Client::write`].
    pub fn reserve<'a>(
        &'a self,
        resources: &[ResourceId],
        holder: HolderId,
        ttl_slots: u64,
    ) -> impl Future<Output = Result<Committed, ClientError>> + use<'a> {
        self.reserve_with(resources, holder, ttl_slots, CallOptions::default())
    }

    /// [`Client::reserve`] with per-call `options` (operation id, timeout).
    ///
    /// ```no_run
    /// # async fn example(client: allocdb_client::Client) -> Result<(), allocdb_client::ClientError> {
    /// use allocdb_client::CallOptions;
    /// // An application key: stored before the first submission, it can retry from anywhere.
    /// let key = client.new_operation_id().await?;
    /// let ttl = client.slots_for(std::time::Duration::from_secs(60));
    /// let options = CallOptions::new().with_operation_id(key);
    /// let grant = client.reserve_with(&[14, 15], 7, ttl, options).await?;
    /// println!("lease {}", grant.lease.0);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`Client::reserve`].
    pub fn reserve_with<'a>(
        &'a self,
        resources: &[ResourceId],
        holder: HolderId,
        ttl_slots: u64,
        options: CallOptions,
    ) -> impl Future<Output = Result<Committed, ClientError>> + use<'a> {
        let command = Bundle::from_slice(resources)
            .map(|resources| Command::Reserve {
                resources,
                holder,
                ttl_slots,
            })
            .ok_or_else(|| ClientError::Invalid {
                reason: format!(
                    "a bundle holds at most {BUNDLE_SIZE_LIMIT} resources, {} given",
                    resources.len()
                ),
            });
        self.write_checked(command, options)
    }

    /// Reserves `count` free members of `pool` for `holder`; the core picks them
    /// deterministically. Read the lease ([`Client::get_lease`] with `min_op` set to the
    /// answer's `op`) to learn which. As [`Client::reserve_any_with`] with default
    /// [`CallOptions`].
    ///
    /// # Errors
    /// `Rejected { code: PoolExhausted | PoolNotFound | .., .. }`; see [`Client::write`].
    pub fn reserve_any(
        &self,
        pool: PoolId,
        count: u32,
        holder: HolderId,
        ttl_slots: u64,
    ) -> impl Future<Output = Result<Committed, ClientError>> + '_ {
        self.reserve_any_with(pool, count, holder, ttl_slots, CallOptions::default())
    }

    /// [`Client::reserve_any`] with per-call `options` (operation id, timeout).
    ///
    /// # Errors
    /// As [`Client::reserve_any`].
    pub fn reserve_any_with(
        &self,
        pool: PoolId,
        count: u32,
        holder: HolderId,
        ttl_slots: u64,
        options: CallOptions,
    ) -> impl Future<Output = Result<Committed, ClientError>> + '_ {
        let command = Command::ReserveAny {
            pool,
            count,
            holder,
            ttl_slots,
        };
        self.write(command, options)
    }

    /// Confirms a reservation; `ttl_slots: None` holds it until released or revoked. As
    /// [`Client::activate_with`] with default [`CallOptions`].
    ///
    /// # Errors
    /// `Rejected { code: LeaseExpired | StaleEpoch | HolderMismatch | InvalidState | .., .. }`;
    /// see [`Client::write`].
    pub fn activate(
        &self,
        lease: LeaseId,
        holder: HolderId,
        epoch: u64,
        ttl_slots: Option<u64>,
    ) -> impl Future<Output = Result<Committed, ClientError>> + '_ {
        self.activate_with(lease, holder, epoch, ttl_slots, CallOptions::default())
    }

    /// [`Client::activate`] with per-call `options` (operation id, timeout).
    ///
    /// # Errors
    /// As [`Client::activate`].
    pub fn activate_with(
        &self,
        lease: LeaseId,
        holder: HolderId,
        epoch: u64,
        ttl_slots: Option<u64>,
        options: CallOptions,
    ) -> impl Future<Output = Result<Committed, ClientError>> + '_ {
        let command = Command::Activate {
            lease,
            holder,
            epoch,
            ttl_slots,
        };
        self.write(command, options)
    }

    /// Extends a reserved or active lease to `ttl_slots` from now. Renew before the deadline
    /// by your own clock, measured from when you sent the call that set it. As
    /// [`Client::renew_with`] with default [`CallOptions`].
    ///
    /// # Errors
    /// `Rejected { code: LeaseExpired | StaleEpoch | HolderMismatch | .., .. }`: the lease is
    /// no longer yours to use; see [`Client::write`].
    pub fn renew(
        &self,
        lease: LeaseId,
        holder: HolderId,
        epoch: u64,
        ttl_slots: u64,
    ) -> impl Future<Output = Result<Committed, ClientError>> + '_ {
        self.renew_with(lease, holder, epoch, ttl_slots, CallOptions::default())
    }

    /// [`Client::renew`] with per-call `options` (operation id, timeout): a keepalive loop
    /// gives each renew a timeout shorter than the time left on the lease.
    ///
    /// # Errors
    /// As [`Client::renew`].
    pub fn renew_with(
        &self,
        lease: LeaseId,
        holder: HolderId,
        epoch: u64,
        ttl_slots: u64,
        options: CallOptions,
    ) -> impl Future<Output = Result<Committed, ClientError>> + '_ {
        let command = Command::Renew {
            lease,
            holder,
            epoch,
            ttl_slots,
        };
        self.write(command, options)
    }

    /// Gives a lease's resources back. As [`Client::release_with`] with default
    /// [`CallOptions`].
    ///
    /// # Errors
    /// `Rejected { code: LeaseExpired | StaleEpoch | HolderMismatch | .., .. }`; see
    /// [`Client::write`].
    pub fn release(
        &self,
        lease: LeaseId,
        holder: HolderId,
        epoch: u64,
    ) -> impl Future<Output = Result<Committed, ClientError>> + '_ {
        self.release_with(lease, holder, epoch, CallOptions::default())
    }

    /// [`Client::release`] with per-call `options` (operation id, timeout).
    ///
    /// # Errors
    /// As [`Client::release`].
    pub fn release_with(
        &self,
        lease: LeaseId,
        holder: HolderId,
        epoch: u64,
        options: CallOptions,
    ) -> impl Future<Output = Result<Committed, ClientError>> + '_ {
        let command = Command::Release {
            lease,
            holder,
            epoch,
        };
        self.write(command, options)
    }

    /// Takes a lease away from its holder (operator role); the resources stay held until
    /// [`Client::reclaim`] (or the deadline). As [`Client::revoke_with`] with default
    /// [`CallOptions`].
    ///
    /// # Errors
    /// See [`Client::write`].
    pub fn revoke(
        &self,
        lease: LeaseId,
    ) -> impl Future<Output = Result<Committed, ClientError>> + '_ {
        self.revoke_with(lease, CallOptions::default())
    }

    /// [`Client::revoke`] with per-call `options` (operation id, timeout).
    ///
    /// # Errors
    /// As [`Client::revoke`].
    pub fn revoke_with(
        &self,
        lease: LeaseId,
        options: CallOptions,
    ) -> impl Future<Output = Result<Committed, ClientError>> + '_ {
        self.write(Command::Revoke { lease }, options)
    }

    /// Frees the resources of a revoked lease (operator role). As [`Client::reclaim_with`]
    /// with default [`CallOptions`].
    ///
    /// # Errors
    /// See [`Client::write`].
    pub fn reclaim(
        &self,
        lease: LeaseId,
    ) -> impl Future<Output = Result<Committed, ClientError>> + '_ {
        self.reclaim_with(lease, CallOptions::default())
    }

    /// [`Client::reclaim`] with per-call `options` (operation id, timeout).
    ///
    /// # Errors
    /// As [`Client::reclaim`].
    pub fn reclaim_with(
        &self,
        lease: LeaseId,
        options: CallOptions,
    ) -> impl Future<Output = Result<Committed, ClientError>> + '_ {
        self.write(Command::Reclaim { lease }, options)
    }

    /// Reads a resource, from state at least as new as `min_op` when given. As
    /// [`Client::get_resource_with`] with default [`CallOptions`].
    ///
    /// # Errors
    /// `Rejected { code: ResourceNotFound, .. }`; see [`Client::read`].
    pub async fn get_resource(
        &self,
        resource: ResourceId,
        min_op: Option<Op>,
    ) -> Result<Read<ResourceView>, ClientError> {
        self.get_resource_with(resource, min_op, CallOptions::default())
            .await
    }

    /// [`Client::get_resource`] with per-call `options` (a timeout; reads take no operation
    /// id).
    ///
    /// # Errors
    /// As [`Client::get_resource`].
    pub async fn get_resource_with(
        &self,
        resource: ResourceId,
        min_op: Option<Op>,
        options: CallOptions,
    ) -> Result<Read<ResourceView>, ClientError> {
        let read = self
            .read(Query::Resource(resource), min_op, options)
            .await?;
        match read.value {
            ReadResult::Resource(result) => into_read(read.op, read.slot, result),
            other => Err(mismatched(&other)),
        }
    }

    /// Reads a lease, from state at least as new as `min_op` when given. As
    /// [`Client::get_lease_with`] with default [`CallOptions`].
    ///
    /// # Errors
    /// `Rejected { code: LeaseNotFound | LeaseRetired, .. }`; see [`Client::read`].
    pub async fn get_lease(
        &self,
        lease: LeaseId,
        min_op: Option<Op>,
    ) -> Result<Read<LeaseView>, ClientError> {
        self.get_lease_with(lease, min_op, CallOptions::default())
            .await
    }

    /// [`Client::get_lease`] with per-call `options` (a timeout; reads take no operation id).
    ///
    /// # Errors
    /// As [`Client::get_lease`].
    pub async fn get_lease_with(
        &self,
        lease: LeaseId,
        min_op: Option<Op>,
        options: CallOptions,
    ) -> Result<Read<LeaseView>, ClientError> {
        let read = self.read(Query::Lease(lease), min_op, options).await?;
        match read.value {
            ReadResult::Lease(result) => into_read(read.op, read.slot, result),
            other => Err(mismatched(&other)),
        }
    }

    /// Reads a pool's counts, from state at least as new as `min_op` when given. As
    /// [`Client::pool_stats_with`] with default [`CallOptions`].
    ///
    /// # Errors
    /// `Rejected { code: PoolNotFound, .. }`; see [`Client::read`].
    pub async fn pool_stats(
        &self,
        pool: PoolId,
        min_op: Option<Op>,
    ) -> Result<Read<PoolStats>, ClientError> {
        self.pool_stats_with(pool, min_op, CallOptions::default())
            .await
    }

    /// [`Client::pool_stats`] with per-call `options` (a timeout; reads take no operation
    /// id).
    ///
    /// # Errors
    /// As [`Client::pool_stats`].
    pub async fn pool_stats_with(
        &self,
        pool: PoolId,
        min_op: Option<Op>,
        options: CallOptions,
    ) -> Result<Read<PoolStats>, ClientError> {
        let read = self.read(Query::Pool(pool), min_op, options).await?;
        match read.value {
            ReadResult::Pool(result) => into_read(read.op, read.slot, result),
            other => Err(mismatched(&other)),
        }
    }

    /// Submits any client command; retried with the same operation id until a definite
    /// answer or the deadline. Without [`CallOptions::operation_id`], the write is numbered on
    /// the client's session (registered first if needed; it waits while the session already
    /// has `min(session_requests_max, in_flight_max)` numbered writes past the oldest
    /// unanswered one). A write answered `session_evicted` before it could have executed is
    /// numbered on a new session and sent again; see [`ClientError::Indefinite`] otherwise.
    ///
    /// # Errors
    /// [`ClientError::Rejected`] when the core refused it (the refusal is committed too);
    /// [`ClientError::Indefinite`] when the deadline passed without a definite answer after
    /// the write was sent; [`ClientError::Unavailable`] when it provably never ran;
    /// [`ClientError::Invalid`] for an internal command or operation id 0.
    ///
    /// ```no_run
    /// # async fn example(client: allocdb_client::Client) -> Result<(), allocdb_client::ClientError> {
    /// use allocdb_client::{Bundle, CallOptions, Command};
    ///
    /// let resources = Bundle::from_slice(&[1, 2]).expect("at most BUNDLE_SIZE_LIMIT");
    /// let command = Command::Reserve { resources, holder: 7, ttl_slots: 3000 };
    /// let grant = client.write(command, CallOptions::new()).await?;
    /// println!("lease {} at op {}", grant.lease.0, grant.op);
    /// # Ok(())
    /// # }
    /// ```
    pub fn write(
        &self,
        command: Command,
        options: CallOptions,
    ) -> impl Future<Output = Result<Committed, ClientError>> + '_ {
        self.write_checked(Ok(command), options)
    }

    /// [`Client::write`] of a command that may have failed the client's own checks already.
    /// Every write method returns this future itself, never wrapped in another `async fn`:
    /// each level of wrapping copied the whole inner future (a request and its answer, over a
    /// kilobyte) when the call began (a share of the load generator's `memmove`).
    fn write_checked(
        &self,
        command: Result<Command, ClientError>,
        options: CallOptions,
    ) -> impl Future<Output = Result<Committed, ClientError>> + '_ {
        let checked = command.and_then(|command| write_operation(&command, options.operation_id));
        async move {
            let (operation, needs_key) = checked?;
            let Answer { body, operation_id } =
                self.submit(&operation, needs_key, options.timeout).await?;
            match body {
                AnswerBody::Committed { op, index, outcome } if outcome.code == ResultCode::Ok => {
                    Ok(Committed {
                        op,
                        index,
                        operation_id,
                        lease: outcome.lease,
                        epoch: outcome.epoch,
                        deadline_slot: outcome.deadline_slot,
                        retry: outcome.retry,
                    })
                }
                AnswerBody::Committed { op, outcome, .. } => Err(ClientError::Rejected {
                    code: outcome.code,
                    op,
                }),
                AnswerBody::Other(other) => Err(unexpected(&other)),
            }
        }
    }

    /// Submits any query; it is answered by the primary from state at least as new as
    /// `min_op`, and retried until answered or the deadline.
    ///
    /// # Errors
    /// [`ClientError::Timeout`] when the deadline passed; [`ClientError::Invalid`] when
    /// `options` carries an operation id; the query's own refusals are in the returned
    /// [`ReadResult`].
    ///
    /// ```no_run
    /// # async fn example(client: allocdb_client::Client) -> Result<(), allocdb_client::ClientError> {
    /// use allocdb_client::{CallOptions, Query, ReadResult};
    ///
    /// let read = client.read(Query::Pool(7), None, CallOptions::new()).await?;
    /// if let ReadResult::Pool(Ok(stats)) = read.value {
    ///     println!("{} of {} free at op {}", stats.free, stats.total, read.op);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn read(
        &self,
        query: Query,
        min_op: Option<Op>,
        options: CallOptions,
    ) -> Result<Read<ReadResult>, ClientError> {
        if options.operation_id.is_some() {
            return Err(ClientError::Invalid {
                reason: "reads take no operation id (they change nothing; just call again)".into(),
            });
        }
        let operation = ClientOperation::Read {
            query,
            min_op: min_op.unwrap_or(0),
        };
        match self
            .submit(&operation, false, options.timeout)
            .await?
            .body
            .reply()
        {
            ReplyBody::Read { op, slot, result } => Ok(Read {
                op,
                slot,
                value: result,
            }),
            other => Err(unexpected(&other)),
        }
    }

    /// Hands one request to the connection task and waits for its definite answer.
    ///
    /// Not `async`: it returns [`Client::submit_call`]'s future itself. A wrapping async fn
    /// nests that future in its own, and every level of nesting copied the whole future
    /// (over a kilobyte) when the call began (a share of the load generator's `memmove`).
    fn submit<'a>(
        &'a self,
        operation: &'a ClientOperation,
        needs_key: bool,
        timeout: Option<std::time::Duration>,
    ) -> impl Future<Output = Result<Answer, ClientError>> + 'a {
        self.submit_call(operation, needs_key, false, timeout)
    }

    /// As [`Client::submit`]; `session_only` waits for the session instead of sending
    /// anything, and is answered with the registration's position.
    async fn submit_call(
        &self,
        operation: &ClientOperation,
        needs_key: bool,
        session_only: bool,
        timeout: Option<std::time::Duration>,
    ) -> Result<Answer, ClientError> {
        let inner = &self.inner;
        let deadline = Instant::now() + timeout.unwrap_or(inner.options.call_timeout);
        // A free slot is taken at once; only a full client waits, under the deadline (the
        // timeout's timer, made per call, showed in the load generator's profile).
        let permit = match Arc::clone(&inner.in_flight).try_acquire_owned() {
            Ok(permit) => permit,
            Err(TryAcquireError::Closed) => return Err(ClientError::Closed { operation_id: None }),
            Err(TryAcquireError::NoPermits) => {
                // Boxed: the timer is large, and only a full client comes here.
                Box::pin(tokio::time::timeout_at(
                    deadline,
                    Arc::clone(&inner.in_flight).acquire_owned(),
                ))
                .await
                .map_err(|_| ClientError::Unavailable {
                    reason: "the deadline passed waiting for an in-flight slot".into(),
                })?
                .map_err(|_| ClientError::Closed { operation_id: None })?
            }
        };
        let (reply, answer) = oneshot::channel();
        // Boxed once here, so every later hand-off moves a pointer, not the call.
        let call = Box::new(Call {
            operation: *operation,
            needs_key,
            session_only,
            request_id: inner.ids.next_request_id(),
            deadline,
            reply: Some(reply),
            permit: Some(permit),
        });
        // The channel holds as many calls as there are permits, so a send never waits:
        // `try_send` spares building a waiting send (a semaphore acquire) on every call.
        match inner.calls.try_send(call) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(call)) => inner
                .calls
                .send(call)
                .await
                .map_err(|_| ClientError::Closed { operation_id: None })?,
            Err(mpsc::error::TrySendError::Closed(_)) => {
                return Err(ClientError::Closed { operation_id: None });
            }
        }
        let operation_id = match operation {
            // A write the driver numbers has no id to report until it was numbered.
            ClientOperation::Write(request) if request.operation_id != 0 => {
                Some(request.operation_id)
            }
            ClientOperation::Write(_) | ClientOperation::Read { .. } => None,
        };
        match answer.await {
            Ok(Ok(Answer {
                body: AnswerBody::Other(body),
                ..
            })) if matches!(*body, ReplyBody::Invalid) => Err(ClientError::Invalid {
                reason: "the cluster refused the request as invalid".into(),
            }),
            Ok(Ok(Answer {
                body: AnswerBody::Other(body),
                ..
            })) if matches!(*body, ReplyBody::Forbidden) => Err(ClientError::Forbidden {
                reason: "this client's role may not make this request".into(),
            }),
            Ok(result) => result,
            Err(_) => Err(ClientError::Closed { operation_id }),
        }
    }
}

/// The operation a write sends, and whether the driver numbers it (no id given): the client's
/// own checks of a write, made before anything is sent.
fn write_operation(
    command: &Command,
    operation_id: Option<allocdb_core::OperationId>,
) -> Result<(ClientOperation, bool), ClientError> {
    if command.is_internal() {
        return Err(ClientError::Invalid {
            reason: "internal commands (expire) are generated by the primary only".into(),
        });
    }
    if matches!(command, Command::RegisterSession { .. }) {
        return Err(ClientError::Invalid {
            reason: "sessions are registered by the client itself".into(),
        });
    }
    if operation_id == Some(0) {
        return Err(ClientError::Invalid {
            reason: "operation id 0 is reserved for internal commands".into(),
        });
    }
    let request = Request {
        // The driver numbers the write when the caller gave no id.
        operation_id: operation_id.unwrap_or(0),
        command: *command,
    };
    Ok((ClientOperation::Write(request), operation_id.is_none()))
}

/// The number of `slot_ms` slots covering `duration`, rounded up (1 ns is a whole slot). A
/// zero duration stays 0 slots, which the cluster answers with `ttl_out_of_range`: a TTL of
/// nothing is a mistake to report, not a 1-slot lease. [`Client::slots_for`] uses the
/// cluster's slot length.
///
/// ```
/// use std::time::Duration;
/// use allocdb_client::slots_for;
///
/// assert_eq!(slots_for(Duration::from_secs(30), 10), 3000);
/// assert_eq!(slots_for(Duration::from_millis(15), 10), 2);
/// assert_eq!(slots_for(Duration::ZERO, 10), 0);
/// ```
pub fn slots_for(duration: std::time::Duration, slot_ms: u64) -> u64 {
    assert!(slot_ms > 0, "a slot has a positive length");
    let slot_nanos = u128::from(slot_ms) * 1_000_000;
    let slots = duration.as_nanos().div_ceil(slot_nanos);
    assert!(slots > 0 || duration.is_zero());
    u64::try_from(slots).unwrap_or(u64::MAX)
}

/// Opens a session with the first replica that answers, trying each in turn until the
/// options' call timeout.
async fn open_first(
    options: &ClientOptions,
    transport: &Transport,
    client_id: u128,
) -> Result<Session, ClientError> {
    let deadline = Instant::now() + options.call_timeout;
    let mut last_error = String::new();
    let mut round: u32 = 0;
    loop {
        let mut mismatches = 0_usize;
        for (replica, address) in options.addresses.iter().enumerate() {
            match Session::open(
                transport,
                address,
                replica,
                options.cluster_id,
                client_id,
                options.connect_timeout,
            )
            .await
            {
                Ok(session) => {
                    check_replica_count(options, &session)?;
                    return Ok(prefer_primary(options, transport, client_id, session).await);
                }
                Err(error @ SessionError::AddressList { .. }) => {
                    return Err(ClientError::AddressList {
                        reason: format!(
                            "{error} (addresses given: {})",
                            options.addresses.join(",")
                        ),
                    });
                }
                Err(SessionError::Forbidden(reason)) => {
                    return Err(ClientError::Forbidden {
                        reason: format!("{address}: {reason}"),
                    });
                }
                Err(error @ SessionError::WrongCluster { .. }) => {
                    return Err(ClientError::Invalid {
                        reason: format!("{address}: {error}"),
                    });
                }
                // Not fatal at once: the bytes that say so are unauthenticated, and one
                // misconfigured replica (or another service at its address) must not keep a
                // client from the others, nor from replicas that are only restarting.
                Err(SessionError::Security(reason)) => {
                    mismatches += 1;
                    last_error = reason;
                }
                Err(error) if mismatches == 0 => last_error = format!("{address}: {error}"),
                Err(_) => {}
            }
        }
        // Every replica of the list answered in the other transport: the options are wrong.
        if mismatches == options.addresses.len() {
            return Err(ClientError::Invalid { reason: last_error });
        }
        round += 1;
        let pause = options
            .backoff_min
            .saturating_mul(1 << round.min(16))
            .min(options.backoff_max);
        if Instant::now() + pause >= deadline {
            return Err(ClientError::Unavailable { reason: last_error });
        }
        tokio::time::sleep(pause).await;
    }
}

/// Refuses a list whose length is not the cluster's replica count, as the first welcome tells
/// it: a missing replica would otherwise look like an outage, and an extra one would never
/// answer.
fn check_replica_count(options: &ClientOptions, session: &Session) -> Result<(), ClientError> {
    let replica_count = session.welcome.replica_count;
    if options.addresses.len() == usize::from(replica_count) {
        return Ok(());
    }
    Err(ClientError::AddressList {
        reason: format!(
            "address list of {} entries, but {} (replica {}) says the cluster has {replica_count} \
             replicas; list all {replica_count} addresses in replica-index order (addresses \
             given: {})",
            options.addresses.len(),
            options.addresses[session.replica],
            session.welcome.replica_index,
            options.addresses.join(",")
        ),
    })
}

/// A backup's welcome names the primary: open a session there instead, keeping the backup's
/// session if that fails (the driver then finds the primary by itself).
async fn prefer_primary(
    options: &ClientOptions,
    transport: &Transport,
    client_id: u128,
    session: Session,
) -> Session {
    let welcome = session.welcome;
    let primary = usize::from(welcome.primary_index);
    if welcome.role == Role::Primary
        || primary == session.replica
        || primary >= options.addresses.len()
    {
        return session;
    }
    match Session::open(
        transport,
        &options.addresses[primary],
        primary,
        session.cluster_id,
        client_id,
        options.connect_timeout,
    )
    .await
    {
        Ok(better) if better.welcome.role == Role::Primary => better,
        _ => session,
    }
}

fn into_read<T>(op: Op, slot: Slot, result: Result<T, ResultCode>) -> Result<Read<T>, ClientError> {
    match result {
        Ok(value) => Ok(Read { op, slot, value }),
        Err(code) => Err(ClientError::Rejected { code, op }),
    }
}

fn mismatched(result: &ReadResult) -> ClientError {
    ClientError::Invalid {
        reason: format!("the cluster answered a different query: {result:?}"),
    }
}

fn unexpected(body: &ReplyBody) -> ClientError {
    ClientError::Invalid {
        reason: format!("unexpected answer {body:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::slots_for;
    use std::time::Duration;

    #[test]
    fn durations_round_up_to_whole_slots_and_zero_stays_zero() {
        // (duration, slot_ms, slots)
        let cases: [(Duration, u64, u64); 7] = [
            (Duration::ZERO, 10, 0),
            (Duration::from_nanos(1), 10, 1),
            (Duration::from_micros(500), 1, 1),
            (Duration::from_millis(10), 10, 1),
            (Duration::from_millis(11), 10, 2),
            (Duration::from_secs(30), 100, 300),
            (Duration::MAX, 1, u64::MAX),
        ];
        for (duration, slot_ms, slots) in cases {
            assert_eq!(
                slots_for(duration, slot_ms),
                slots,
                "{duration:?} at {slot_ms} ms"
            );
        }
    }
}
