//! The one place the client names a socket type. Production uses the OS's network through
//! tokio; with the `simulation` feature the same code runs on turmoil's simulated network, so
//! the simulator exercises the real client.

#[cfg(not(feature = "simulation"))]
pub use tokio::net::TcpStream;
#[cfg(not(feature = "simulation"))]
pub use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

#[cfg(feature = "simulation")]
pub use turmoil::net::TcpStream;
#[cfg(feature = "simulation")]
pub use turmoil::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// Opens a connection to `address` with Nagle's algorithm off: a client frame is a whole
/// batch already, and waiting to coalesce more only adds latency.
///
/// # Errors
/// The connection could not be opened or the socket option set.
pub async fn connect(address: &str) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}
