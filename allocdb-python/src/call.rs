//! One Python call as a Rust value: what to ask the client, and what came back.
//!
//! A [`Call`] is built from the Python arguments on the interpreter's thread (with the GIL),
//! run without the GIL on the runtime, and its [`Outcome`] is turned back into Python objects
//! on the interpreter's thread again. Nothing here touches Python.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use allocdb_client::{CallOptions, Client, ClientError, ClientOptions, Committed};
use allocdb_core::{Command, LeaseView, Op, OperationId, PoolStats, ResourceView};
use allocdb_protocol::{Query, ReadResult};

/// Where a connected client is kept: set by a successful [`Call::Connect`], emptied by close.
pub(crate) type ClientSlot = Arc<Mutex<Option<Client>>>;

/// A call ready to run.
pub(crate) enum Call {
    /// Connect with these options and keep the client in the slot.
    Connect {
        options: ClientOptions,
        slot: ClientSlot,
    },
    /// Any client command.
    Write {
        client: Client,
        command: Command,
        options: CallOptions,
    },
    /// Any query, from state at least as new as `min_op`.
    Read {
        client: Client,
        query: Query,
        min_op: Option<Op>,
        options: CallOptions,
    },
    /// A fresh application key.
    NewOperationId { client: Client },
}

/// What a call returned.
pub(crate) enum Outcome {
    Connected,
    Committed(Committed),
    Resource(Op, ResourceView),
    /// Boxed: a lease view (a bundle of ids) is three times the size of the other answers.
    Lease(Op, Box<LeaseView>),
    Pool(Op, PoolStats),
    OperationId(OperationId),
}

/// A started call: boxed per kind, so each holds only its own kind's state (a connect's
/// future is kilobytes larger than a write's) and is copied once, into the box.
pub(crate) type Running = Pin<Box<dyn Future<Output = Result<Outcome, ClientError>> + Send>>;

impl Call {
    /// The call as a future that runs it to its end (the client retries and keeps the
    /// deadline).
    pub(crate) fn start(self) -> Running {
        match self {
            Call::Connect { options, slot } => Box::pin(async move {
                let client = Client::connect(options).await?;
                *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(client);
                Ok(Outcome::Connected)
            }),
            Call::Write {
                client,
                command,
                options,
            } => Box::pin(
                async move { client.write(command, options).await.map(Outcome::Committed) },
            ),
            Call::Read {
                client,
                query,
                min_op,
                options,
            } => Box::pin(read(client, query, min_op, options)),
            Call::NewOperationId { client } => {
                Box::pin(async move { client.new_operation_id().await.map(Outcome::OperationId) })
            }
        }
    }
}

async fn read(
    client: Client,
    query: Query,
    min_op: Option<Op>,
    options: CallOptions,
) -> Result<Outcome, ClientError> {
    let read = client.read(query, min_op, options).await?;
    let op = read.op;
    // A query's own refusal (not found, retired) is a definite answer: `Rejected`, as the
    // Rust client's typed reads report it.
    let rejected = |code| ClientError::Rejected { code, op };
    match (query, read.value) {
        (Query::Resource(_), ReadResult::Resource(result)) => result
            .map(|view| Outcome::Resource(op, view))
            .map_err(rejected),
        (Query::Lease(_), ReadResult::Lease(result)) => result
            .map(|view| Outcome::Lease(op, Box::new(view)))
            .map_err(rejected),
        (Query::Pool(_), ReadResult::Pool(result)) => result
            .map(|stats| Outcome::Pool(op, stats))
            .map_err(rejected),
        (_, other) => Err(ClientError::Invalid {
            reason: format!("the cluster answered a different query: {other:?}"),
        }),
    }
}
