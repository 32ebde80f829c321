//! A seat booking service: customers ask for a block of adjacent seats; the service reserves
//! the whole block at once (a bundle: all seats or none), takes the payment, then confirms the
//! booking (`activate`) or gives the seats back (`release`). Calls that end without a definite
//! answer are retried with the same operation id, so a retry never books twice.
//!
//! Run it against a local cluster (`deploy/local/cluster.sh format && deploy/local/cluster.sh start`):
//!
//! ```sh
//! ALLOCDB_ADDRESSES=$(deploy/local/cluster.sh addresses) ALLOCDB_CLUSTER=1 \
//! ALLOCDB_CERTS=allocdb-cluster/certs cargo run -p allocdb-client --example seat_booking
//! ```
//!
//! (`ALLOCDB_INSECURE=1` instead of `ALLOCDB_CERTS` for a plaintext cluster.) Each run books
//! its own row of seats, with ids made from the time, so runs never collide. It exits 1 if the
//! final seat map disagrees with the bookings the service confirmed.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use allocdb_client::{
    CallOptions, Client, ClientError, ClientOptions, ClientRole, Committed, HolderId, LeaseId,
    ResourceId, ResourceState, ResultCode,
};

/// Seats in the row.
const SEATS: u32 = 20;
/// Customers booking at the same time.
const CUSTOMERS: u32 = 12;
/// How long a reserved block is held while the customer pays.
const PAYMENT_HOLD: Duration = Duration::from_secs(30);
/// Attempts of one call before the service gives up on it.
const ATTEMPTS_MAX: u32 = 5;
/// The deadline of one attempt.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// A confirmed booking.
#[derive(Debug, Clone)]
struct Booking {
    customer: HolderId,
    seats: Vec<ResourceId>,
    lease: LeaseId,
    epoch: u64,
}

/// Why a customer got no seats.
#[derive(Debug)]
enum Refusal {
    /// Every block of the size asked for was taken.
    SoldOut,
    /// The payment failed; the seats were given back.
    PaymentDeclined,
    /// The cluster could not be asked (or answered something unexpected).
    Failed(ClientError),
}

/// The booking service: one shared client (calls from all customers share its connection).
struct BookingService {
    client: Client,
    row: Vec<ResourceId>,
    hold_slots: u64,
}

impl BookingService {
    /// Books `count` adjacent seats for `customer`: tries each block from the front of the row
    /// until one is free, all of it or nothing.
    async fn book(&self, customer: HolderId, count: usize) -> Result<Booking, Refusal> {
        for block in self.row.windows(count) {
            let reserve = |options| {
                self.client
                    .reserve_with(block, customer, self.hold_slots, options)
            };
            let grant = match with_retries(reserve).await {
                Ok(grant) => grant,
                // Somebody holds at least one seat of this block: try the next block.
                Err(ClientError::Rejected {
                    code: ResultCode::ResourceBusy,
                    ..
                }) => continue,
                Err(error) => return Err(Refusal::Failed(error)),
            };
            if !take_payment(customer) {
                let release = |options| {
                    self.client
                        .release_with(grant.lease, customer, grant.epoch, options)
                };
                with_retries(release).await.map_err(Refusal::Failed)?;
                return Err(Refusal::PaymentDeclined);
            }
            // Paid: hold the seats until released (no deadline).
            let activate = |options| {
                self.client
                    .activate_with(grant.lease, customer, grant.epoch, None, options)
            };
            let active = with_retries(activate).await.map_err(Refusal::Failed)?;
            return Ok(Booking {
                customer,
                seats: block.to_vec(),
                lease: grant.lease,
                epoch: active.epoch,
            });
        }
        Err(Refusal::SoldOut)
    }
}

/// Runs a write until it has a definite answer, at most [`ATTEMPTS_MAX`] times. An
/// `Indefinite` answer may hide a write that executed: the next attempt carries the same
/// operation id, so the cluster answers it with the stored outcome instead of executing it
/// again. `Unavailable` means it never ran: the next attempt is a fresh one.
async fn with_retries<F, Fut>(mut call: F) -> Result<Committed, ClientError>
where
    F: FnMut(CallOptions) -> Fut,
    Fut: Future<Output = Result<Committed, ClientError>>,
{
    let mut options = CallOptions::new().with_timeout(ATTEMPT_TIMEOUT);
    let mut attempt = 1;
    loop {
        let error = match call(options).await {
            Err(error) if attempt < ATTEMPTS_MAX => error,
            outcome => return outcome,
        };
        match error {
            ClientError::Indefinite { operation_id } => {
                eprintln!("  outcome unknown; asking again with operation id {operation_id}");
                options = options.with_operation_id(operation_id);
            }
            ClientError::Unavailable { reason } => {
                eprintln!("  not executed ({reason}); trying again");
            }
            definite => return Err(definite),
        }
        tokio::time::sleep(Duration::from_millis(100) * attempt).await;
        attempt += 1;
    }
}

/// The payment provider: every fifth customer's card is declined.
fn take_payment(customer: HolderId) -> bool {
    customer % 5 != 0
}

/// Ids for this run's seats: the time in microseconds, shifted, so runs never collide.
fn run_base() -> u128 {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |elapsed| elapsed.as_micros());
    micros << 16
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(error) => {
            eprintln!("seat_booking: {error}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn run() -> Result<bool, ClientError> {
    // Creating seats is an operator's job; booking them is the application's.
    let operator = Client::connect(ClientOptions::from_env(ClientRole::Operator)?).await?;
    let client = Client::connect(ClientOptions::from_env(ClientRole::Application)?).await?;
    let base = run_base();
    let row: Vec<ResourceId> = (1..=SEATS).map(|seat| base + u128::from(seat)).collect();
    for seat in &row {
        operator.create_resource(*seat, None).await?;
    }
    println!(
        "row of {SEATS} seats created (ids {}..={}); {CUSTOMERS} customers book at once",
        row[0],
        row[row.len() - 1]
    );
    let service = std::sync::Arc::new(BookingService {
        hold_slots: client.slots_for(PAYMENT_HOLD),
        client,
        row,
    });
    let mut tasks = Vec::new();
    for customer in 1..=HolderId::from(CUSTOMERS) {
        let service = std::sync::Arc::clone(&service);
        // Parties of 2, 3 and 4.
        let count = 2 + usize::try_from(customer % 3).expect("small");
        tasks.push(tokio::spawn(async move {
            (customer, count, service.book(customer, count).await)
        }));
    }
    let mut bookings = Vec::new();
    for task in tasks {
        let (customer, count, outcome) = task.await.expect("a booking task panicked");
        match outcome {
            Ok(booking) => {
                println!(
                    "customer {customer:>2}: {count} seats {:?}, lease {}",
                    seat_numbers(base, &booking.seats),
                    booking.lease.0
                );
                bookings.push(booking);
            }
            Err(Refusal::SoldOut) => println!("customer {customer:>2}: no block of {count} left"),
            Err(Refusal::PaymentDeclined) => {
                println!("customer {customer:>2}: payment declined, {count} seats given back");
            }
            Err(Refusal::Failed(error)) => return Err(error),
        }
    }
    let consistent = check_seat_map(&service, base, &bookings).await?;
    // The show is over: give every seat back.
    for booking in &bookings {
        let release = |options| {
            service
                .client
                .release_with(booking.lease, booking.customer, booking.epoch, options)
        };
        with_retries(release).await?;
    }
    println!(
        "{} bookings confirmed and released afterwards",
        bookings.len()
    );
    Ok(consistent)
}

/// Reads every seat and compares it with the confirmed bookings: each booked seat is held by
/// its booking's lease, every other seat is free.
async fn check_seat_map(
    service: &BookingService,
    base: u128,
    bookings: &[Booking],
) -> Result<bool, ClientError> {
    let mut expected: BTreeMap<ResourceId, LeaseId> = BTreeMap::new();
    for booking in bookings {
        for seat in &booking.seats {
            if let Some(other) = expected.insert(*seat, booking.lease) {
                println!(
                    "seat {} booked twice: leases {} and {}",
                    seat - base,
                    other.0,
                    booking.lease.0
                );
                return Ok(false);
            }
        }
    }
    let mut map = String::new();
    let mut consistent = true;
    for seat in &service.row {
        let view = service.client.get_resource(*seat, None).await?.value;
        let booked = expected.get(seat).copied();
        consistent &= view.lease == booked;
        consistent &= (view.state == ResourceState::Active) == booked.is_some();
        map.push(if booked.is_some() { '#' } else { '.' });
    }
    println!("seat map: {map}  (# booked, . free)");
    if !consistent {
        println!("the seat map disagrees with the confirmed bookings");
    }
    Ok(consistent)
}

/// Seat numbers (1..=SEATS) of seat ids.
fn seat_numbers(base: u128, seats: &[ResourceId]) -> Vec<u128> {
    seats.iter().map(|seat| seat - base).collect()
}
