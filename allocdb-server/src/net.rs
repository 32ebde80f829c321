//! The one place the server names a socket type.
//!
//! Production builds use `tokio::net`; with the `simulation` feature the same code runs over
//! `turmoil::net`, so the simulator exercises the shipped bus (timeouts, reconnects, stalled
//! streams) rather than a model of it. Every other module imports sockets from here only.

#[cfg(not(feature = "simulation"))]
pub use tokio::net::{TcpListener, TcpStream};

#[cfg(feature = "simulation")]
pub use turmoil::net::{TcpListener, TcpStream};

/// Connects to `address` (`host:port`) with `TCP_NODELAY` set: frames are already batched,
/// so Nagle's algorithm would only add latency.
///
/// # Errors
/// The connection or the socket option failed.
pub async fn connect(address: &str) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Binds a listener on `address` (`host:port`).
///
/// # Errors
/// The address is invalid or in use.
pub async fn listen(address: &str) -> std::io::Result<TcpListener> {
    TcpListener::bind(address).await
}
