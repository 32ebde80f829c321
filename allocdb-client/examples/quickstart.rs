//! Reserve a seat, renew the lease, release it. Against `deploy/local/cluster.sh start`:
//! `ALLOCDB_ADDRESSES=$(deploy/local/cluster.sh addresses) ALLOCDB_CERTS=allocdb-cluster/certs
//! cargo run -p allocdb-client --example quickstart`
use std::time::Duration;

use allocdb_client::{Client, ClientError, ClientOptions, ClientRole, ResultCode};

#[tokio::main]
async fn main() -> Result<(), ClientError> {
    // ALLOCDB_ADDRESSES, ALLOCDB_CLUSTER, ALLOCDB_CERTS (or ALLOCDB_INSECURE=1).
    let client = Client::connect(ClientOptions::from_env(ClientRole::Operator)?).await?;
    let (seat, holder) = (101, 42);
    if let Err(error) = client.create_resource(seat, None).await {
        if error.code() != Some(ResultCode::AlreadyExists) {
            return Err(error);
        }
    }
    let ttl = client.slots_for(Duration::from_secs(30));
    let grant = client.reserve(&[seat], holder, ttl).await?;
    println!(
        "seat {seat}: lease {} (a fencing token), epoch {}",
        grant.lease.0, grant.epoch
    );
    let renewed = client.renew(grant.lease, holder, grant.epoch, ttl).await?;
    println!("renewed: held through slot {}", renewed.deadline_slot);
    let released = client.release(grant.lease, holder, renewed.epoch).await?;
    println!("released at op {}", released.op);
    Ok(())
}
