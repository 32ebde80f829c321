//! The one place the client names a socket type. Production uses the OS's network through
//! tokio; with the `simulation` feature the same code runs on turmoil's simulated network, so
//! the simulator exercises the real client.
//!
//! Under the feature the types are switches chosen when a connection is made: turmoil's inside
//! a turmoil simulation, tokio's outside one. Cargo unifies features across a workspace build,
//! so `cargo test --workspace` compiles this crate with the feature on (the simulator asks for
//! it); the switch keeps every other test and program on the OS's network.

#[cfg(not(feature = "simulation"))]
pub use tokio::net::TcpStream;
#[cfg(not(feature = "simulation"))]
pub use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

#[cfg(feature = "simulation")]
pub use switch::{OwnedReadHalf, OwnedWriteHalf, TcpStream};

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

#[cfg(feature = "simulation")]
mod switch {
    use std::io;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

    /// A TCP stream on the OS's network or on turmoil's simulated one.
    #[derive(Debug)]
    pub enum TcpStream {
        /// tokio's (outside a simulation).
        Os(tokio::net::TcpStream),
        /// turmoil's (inside a simulation).
        Sim(turmoil::net::TcpStream),
    }

    /// The reading half of a [`TcpStream`].
    #[derive(Debug)]
    pub enum OwnedReadHalf {
        /// tokio's.
        Os(tokio::net::tcp::OwnedReadHalf),
        /// turmoil's.
        Sim(turmoil::net::tcp::OwnedReadHalf),
    }

    /// The writing half of a [`TcpStream`].
    #[derive(Debug)]
    pub enum OwnedWriteHalf {
        /// tokio's.
        Os(tokio::net::tcp::OwnedWriteHalf),
        /// turmoil's.
        Sim(turmoil::net::tcp::OwnedWriteHalf),
    }

    impl TcpStream {
        /// Connects on turmoil's network inside a simulation, on the OS's otherwise.
        ///
        /// # Errors
        /// The connection could not be opened.
        pub async fn connect(address: &str) -> io::Result<TcpStream> {
            if turmoil::in_simulation() {
                Ok(TcpStream::Sim(
                    turmoil::net::TcpStream::connect(address).await?,
                ))
            } else {
                Ok(TcpStream::Os(
                    tokio::net::TcpStream::connect(address).await?,
                ))
            }
        }

        /// Sets `TCP_NODELAY`.
        ///
        /// # Errors
        /// The socket option could not be set.
        pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
            match self {
                TcpStream::Os(stream) => stream.set_nodelay(nodelay),
                TcpStream::Sim(stream) => stream.set_nodelay(nodelay),
            }
        }

        /// Splits the stream into halves that can be used independently.
        pub fn into_split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
            match self {
                TcpStream::Os(stream) => {
                    let (read, write) = stream.into_split();
                    (OwnedReadHalf::Os(read), OwnedWriteHalf::Os(write))
                }
                TcpStream::Sim(stream) => {
                    let (read, write) = stream.into_split();
                    (OwnedReadHalf::Sim(read), OwnedWriteHalf::Sim(write))
                }
            }
        }
    }

    /// Delegates one `AsyncRead` call to whichever network the value is on.
    macro_rules! read_via {
        ($self:ident, $cx:ident, $buf:ident) => {
            match $self.get_mut() {
                Self::Os(inner) => Pin::new(inner).poll_read($cx, $buf),
                Self::Sim(inner) => Pin::new(inner).poll_read($cx, $buf),
            }
        };
    }

    /// Delegates one `AsyncWrite` call to whichever network the value is on.
    macro_rules! write_via {
        ($self:ident, $method:ident $(, $arg:ident)*) => {
            match $self.get_mut() {
                Self::Os(inner) => Pin::new(inner).$method($($arg),*),
                Self::Sim(inner) => Pin::new(inner).$method($($arg),*),
            }
        };
    }

    impl AsyncRead for TcpStream {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            read_via!(self, cx, buf)
        }
    }

    impl AsyncRead for OwnedReadHalf {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            read_via!(self, cx, buf)
        }
    }

    impl AsyncWrite for TcpStream {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            write_via!(self, poll_write, cx, buf)
        }

        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            write_via!(self, poll_flush, cx)
        }

        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            write_via!(self, poll_shutdown, cx)
        }
    }

    impl AsyncWrite for OwnedWriteHalf {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            write_via!(self, poll_write, cx, buf)
        }

        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            write_via!(self, poll_flush, cx)
        }

        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            write_via!(self, poll_shutdown, cx)
        }
    }
}
