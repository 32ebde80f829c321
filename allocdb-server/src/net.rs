//! The one place the server names a socket type.
//!
//! Production builds use `tokio::net`; with the `simulation` feature the same code runs over
//! `turmoil::net`, so the simulator exercises the shipped bus (timeouts, reconnects, stalled
//! streams) rather than a model of it. Every other module imports sockets from here only.
//!
//! Under the feature the types are switches chosen when a socket is made: turmoil's inside a
//! turmoil simulation, tokio's outside one (Cargo unifies features across a workspace build,
//! so every other test and program must keep working with the feature on). The stream is the
//! client's switch ([`allocdb_client::net::TcpStream`]): one implementation for both.

#[cfg(not(feature = "simulation"))]
pub use tokio::net::{TcpListener, TcpStream};

#[cfg(feature = "simulation")]
pub use allocdb_client::net::TcpStream;

/// The pause after a failed accept (out of file descriptors, say) before the next: retrying at
/// once would spin on the thread the replica may share with its listeners.
pub const ACCEPT_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);

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

/// A listener on the OS's network or on turmoil's simulated one.
#[cfg(feature = "simulation")]
pub enum TcpListener {
    /// tokio's (outside a simulation).
    Os(tokio::net::TcpListener),
    /// turmoil's (inside a simulation).
    Sim(turmoil::net::TcpListener),
}

#[cfg(feature = "simulation")]
impl TcpListener {
    /// Binds on turmoil's network inside a simulation, on the OS's otherwise.
    ///
    /// # Errors
    /// The address is invalid or in use.
    pub async fn bind(address: &str) -> std::io::Result<TcpListener> {
        if turmoil::in_simulation() {
            Ok(TcpListener::Sim(
                turmoil::net::TcpListener::bind(address).await?,
            ))
        } else {
            Ok(TcpListener::Os(
                tokio::net::TcpListener::bind(address).await?,
            ))
        }
    }

    /// Accepts the next connection.
    ///
    /// # Errors
    /// The accept failed.
    pub async fn accept(&self) -> std::io::Result<(TcpStream, std::net::SocketAddr)> {
        match self {
            TcpListener::Os(listener) => {
                let (stream, from) = listener.accept().await?;
                Ok((TcpStream::Os(stream), from))
            }
            TcpListener::Sim(listener) => {
                let (stream, from) = listener.accept().await?;
                Ok((TcpStream::Sim(stream), from))
            }
        }
    }
}
