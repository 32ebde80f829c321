//! The requests a client makes and the replies it gets, as values (their bytes are in
//! [`crate::frame`]'s `ClientRequests` and `ClientReplies` bodies).
//!
//! The replica receives and answers these same types, so they are defined once here, where a
//! client can reach them without compiling the replica and the log.

use allocdb_core::{
    LeaseId, LeaseView, Op, Outcome, PoolId, PoolStats, Request, ResourceId, ResourceView,
    ResultCode, Slot, View,
};

/// A client's identity: replies are routed to it.
pub type ClientId = u128;

/// A query, answered from the primary's applied state once it is proven current.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Query {
    /// `get_resource`.
    Resource(ResourceId),
    /// `get_lease`.
    Lease(LeaseId),
    /// Pool availability counts.
    Pool(PoolId),
}

/// What a client asks for.
// Fixed-size and `Copy` on purpose: these sit in bounded, pre-sized queues and cross the
// codec without heap allocation; the size difference between variants is the price.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientOperation {
    /// A write, ordered through the log. Retries reuse the request's `operation_id`.
    Write(Request),
    /// A linearizable read, served after every op up to `min_op` is applied.
    Read {
        /// What to read.
        query: Query,
        /// Wait until at least this op is applied (read-your-writes after a reply at `op`).
        min_op: Op,
    },
}

/// A client request as the replica receives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientRequest {
    /// Who asked (replies go there).
    pub client_id: ClientId,
    /// The client's number for this request, echoed in the reply.
    pub request_id: u64,
    /// What it asks.
    pub operation: ClientOperation,
}

/// The answer to a read.
// Fixed-size and `Copy` on purpose: these sit in bounded, pre-sized queues and cross the
// codec without heap allocation; the size difference between variants is the price.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadResult {
    /// A resource, or why not.
    Resource(Result<ResourceView, ResultCode>),
    /// A lease, or why not.
    Lease(Result<LeaseView, ResultCode>),
    /// A pool's counts, or why not.
    Pool(Result<PoolStats, ResultCode>),
}

/// What the replica tells a client.
// Fixed-size and `Copy` on purpose: these sit in bounded, pre-sized queues and cross the
// codec without heap allocation; the size difference between variants is the price.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyBody {
    /// The write committed at `op`, position `index` of the batch, with this outcome.
    Committed {
        /// The op at which the write executed (for an answer from the dedupe record, a retry,
        /// the op of the original execution, not of the batch that carried the retry).
        op: Op,
        /// The write's position in that batch.
        index: u32,
        /// The core's outcome (`retry` set when this repeats an earlier execution).
        outcome: Outcome,
    },
    /// The read's answer, from the state after `op`, made at `slot`.
    Read {
        /// The applied op the answer reflects.
        op: Op,
        /// The cluster's slot when the answer was made: the primary's clock as it would stamp
        /// a prepare then, never below the slot of the state read. A lease's time left is
        /// its `deadline_slot` minus this.
        slot: Slot,
        /// The answer.
        result: ReadResult,
    },
    /// This replica is not the primary; try `primary` (which leads `view`, as far as known).
    NotPrimary {
        /// The newest view this replica knows.
        view: View,
        /// That view's primary.
        primary: u8,
    },
    /// A queue is full: retry later (same operation id).
    Overloaded,
    /// The read could not be confirmed in time: retry.
    ReadTimeout,
    /// The request can never be accepted (an internal command from a client).
    Invalid,
    /// The client's role may not make this request (an `application` certificate asking to
    /// create a resource, revoke or reclaim). Decided by the server before the request reaches
    /// the replica; nothing changed.
    Forbidden,
}

/// A reply to one client request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The client.
    pub client_id: ClientId,
    /// Echo of the request's id.
    pub request_id: u64,
    /// The answer.
    pub body: ReplyBody,
}
