//! Exactly-once across an indefinite answer and a restart, with an application key.
//!
//! A write whose answer never arrives (a deadline, a dropped connection, a crash) may or may
//! not have executed. The fix is to give the write an *application key* from
//! [`Client::new_operation_id`], store the key before the first submission, and retry with
//! the same key — from this process or any other — until the answer is definite. The cluster
//! answers a retry with the stored outcome (`retry: true`) instead of executing it again.
//!
//! This program makes a key, "stores" it, and submits a reservation through a little TCP relay
//! that then loses every answer on its way back (as a failing network would): the client
//! reports [`ClientError::Indefinite`]. A restarted process (a new `Client`, connected
//! directly) retries with the stored key and learns that the reservation had executed, once.
//! It also shows that the key cannot be reused for a different command (`operation_conflict`).
//!
//! Run it against a local cluster (`deploy/local/cluster.sh format && deploy/local/cluster.sh start`):
//!
//! ```sh
//! ALLOCDB_ADDRESSES=$(deploy/local/cluster.sh addresses) ALLOCDB_CLUSTER=1 \
//! ALLOCDB_CERTS=allocdb-cluster/certs cargo run -p allocdb-client --example exactly_once
//! ```
//!
//! (`ALLOCDB_INSECURE=1` instead of `ALLOCDB_CERTS` for a plaintext cluster.) It exits 1 if
//! the outcomes disagree.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use allocdb_client::{
    CallOptions, Client, ClientError, ClientOptions, ClientRole, OperationId, OperationKey,
    ResultCode,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The first attempt's deadline: its answers are lost, so it ends indefinite after this.
const FIRST_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);
/// Retries after that, each with a normal deadline.
const RETRIES_MAX: u32 = 5;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(error) => {
            eprintln!("exactly_once: {error}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn run() -> Result<bool, ClientError> {
    let operator = Client::connect(ClientOptions::from_env(ClientRole::Operator)?).await?;
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |elapsed| elapsed.as_micros());
    let (room, holder) = (micros << 16, 7);
    operator.create_resource(room, None).await?;

    // Process A reaches the cluster through relays that can lose the answers.
    let lose_answers = Arc::new(AtomicBool::new(false));
    let mut options = ClientOptions::from_env(ClientRole::Application)?;
    let mut relays = Vec::new();
    for address in &options.addresses {
        relays.push(relay(address.clone(), Arc::clone(&lose_answers)).await?);
    }
    options.addresses = relays;
    let client = Client::connect(options).await?;
    // Make the key and store it (a database row, a file) before submitting.
    let key: OperationId = client.new_operation_id().await?;
    if let OperationKey::Application {
        issued_after_op, ..
    } = OperationKey::of(key)
    {
        println!("stored application key {key} (issued after op {issued_after_op})");
    }
    let ttl = client.slots_for(Duration::from_secs(60));
    lose_answers.store(true, Ordering::SeqCst);
    let first = CallOptions::new()
        .with_operation_id(key)
        .with_timeout(FIRST_ATTEMPT_TIMEOUT);
    match client.reserve_with(&[room], holder, ttl, first).await {
        Ok(grant) => println!("first attempt: answered after all, lease {}", grant.lease.0),
        Err(error @ ClientError::Indefinite { .. }) => println!("first attempt: {error}"),
        Err(error @ ClientError::Unavailable { .. }) => {
            println!("first attempt: {error} (a retry will execute it)");
        }
        Err(error) => return Err(error),
    }
    // The process dies here, knowing only the stored key.
    drop(client);

    // Process B (a restart: a new client, a new session) finds the stored key and retries.
    let client = Client::connect(ClientOptions::from_env(ClientRole::Application)?).await?;
    let grant = retry_until_definite(&client, room, holder, ttl, key).await?;
    println!(
        "retry with the stored key: lease {} at op {}, retry: {} ({})",
        grant.lease.0,
        grant.op,
        grant.retry,
        if grant.retry {
            "the first attempt had executed; this is its stored answer"
        } else {
            "the first attempt had not executed; this retry did"
        }
    );

    // Asking again, any number of times, returns the same lease: it never executes twice.
    let again = client
        .reserve_with(
            &[room],
            holder,
            ttl,
            CallOptions::new().with_operation_id(key),
        )
        .await?;
    println!("once more: lease {}, retry: {}", again.lease.0, again.retry);
    let mut ok = again.lease == grant.lease && again.retry && again.op == grant.op;

    // The key names that one reservation: another command with it is refused.
    let other = client
        .reserve_with(
            &[room],
            holder + 1,
            ttl,
            CallOptions::new().with_operation_id(key),
        )
        .await;
    match other {
        Err(ClientError::Rejected {
            code: ResultCode::OperationConflict,
            ..
        }) => println!("the same key with another command: operation_conflict"),
        unexpected => {
            println!("the same key with another command was not refused: {unexpected:?}");
            ok = false;
        }
    }

    // The room is held by exactly that lease.
    let view = client.get_resource(room, Some(again.op)).await?.value;
    ok &= view.lease == Some(grant.lease);
    println!(
        "room {room} is held by lease {:?}: {}",
        view.lease.map(|lease| lease.0),
        if ok { "exactly once" } else { "MISMATCH" }
    );
    client.release(grant.lease, holder, grant.epoch).await?;
    Ok(ok)
}

/// Retries the reservation with the stored key until the answer is definite.
async fn retry_until_definite(
    client: &Client,
    room: u128,
    holder: u128,
    ttl: u64,
    key: OperationId,
) -> Result<allocdb_client::Committed, ClientError> {
    let options = CallOptions::new()
        .with_operation_id(key)
        .with_timeout(Duration::from_secs(5));
    let mut attempt = 1;
    loop {
        match client.reserve_with(&[room], holder, ttl, options).await {
            Err(ClientError::Indefinite { .. } | ClientError::Unavailable { .. })
                if attempt < RETRIES_MAX =>
            {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            outcome => return outcome,
        }
    }
}

/// A TCP relay on a free loopback port to `target`: it passes requests on, and passes answers
/// back until `lose_answers` is set, then drops them (the connection stays open, silent). Its
/// address.
async fn relay(target: String, lose_answers: Arc<AtomicBool>) -> Result<String, ClientError> {
    let failed = |error: std::io::Error| ClientError::Unavailable {
        reason: format!("relay: {error}"),
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.map_err(failed)?;
    let address = listener.local_addr().map_err(failed)?.to_string();
    tokio::spawn(async move {
        while let Ok((client_side, _)) = listener.accept().await {
            let Ok(replica_side) = TcpStream::connect(&target).await else {
                continue;
            };
            let (client_read, client_write) = client_side.into_split();
            let (replica_read, replica_write) = replica_side.into_split();
            tokio::spawn(pass(client_read, replica_write, None));
            tokio::spawn(pass(
                replica_read,
                client_write,
                Some(Arc::clone(&lose_answers)),
            ));
        }
    });
    Ok(address)
}

/// Copies bytes from `from` to `to`, dropping them instead while `lose` is set.
async fn pass(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    lose: Option<Arc<AtomicBool>>,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        if lose
            .as_ref()
            .is_some_and(|lose| lose.load(Ordering::SeqCst))
        {
            continue;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}
