//! Hands asyncio calls' answers from the runtime's threads to the event loop's thread.
//!
//! The loop watches a socket (`loop.add_reader(bridge_fd, drain)`). A finished call pushes its
//! future and outcome onto a queue and, only when the queue was empty, writes one byte to wake
//! the loop; `drain`, on the loop's thread with the GIL, empties the socket, then the queue,
//! and sets every future's result. So the runtime's threads never take the GIL, and a frame of
//! a thousand answers costs one wake-up, not a thousand `call_soon_threadsafe` calls.
//!
//! Why no answer is stranded: `drain` reads the socket before it takes the queue. A push that
//! lands after the take finds the queue empty and writes a byte, which wakes the loop again; a
//! push that lands before it is taken with the rest.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use allocdb_client::ClientError;
use pyo3::prelude::*;

use crate::call::Outcome;

/// A future and what to set on it.
type Completion = (Py<PyAny>, Result<Outcome, ClientError>);

/// Wake-up bytes read per `read` call while emptying the socket.
const WAKE_BUFFER_BYTES: usize = 64;

/// One event loop's side of an `AsyncClient`.
pub(crate) struct Bridge {
    queue: Mutex<Vec<Completion>>,
    /// Watched by the loop.
    reader: UnixStream,
    /// Written by the runtime's threads.
    writer: UnixStream,
    /// Calls started and not yet delivered to their futures.
    pending: AtomicUsize,
}

impl Bridge {
    /// A bridge with its own non-blocking socket pair.
    pub(crate) fn new() -> std::io::Result<Bridge> {
        let (reader, writer) = UnixStream::pair()?;
        reader.set_nonblocking(true)?;
        writer.set_nonblocking(true)?;
        Ok(Bridge {
            queue: Mutex::new(Vec::new()),
            reader,
            writer,
            pending: AtomicUsize::new(0),
        })
    }

    /// The descriptor the loop watches for readability.
    pub(crate) fn fileno(&self) -> RawFd {
        self.reader.as_raw_fd()
    }

    /// Calls started and not yet delivered.
    pub(crate) fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    /// Counts a call about to run.
    pub(crate) fn started(&self) {
        self.pending.fetch_add(1, Ordering::AcqRel);
    }

    /// Queues a finished call (any thread, no GIL) and wakes the loop if it may be asleep.
    pub(crate) fn complete(&self, future: Py<PyAny>, outcome: Result<Outcome, ClientError>) {
        let was_empty = {
            let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            queue.push((future, outcome));
            queue.len() == 1
        };
        if was_empty {
            // WouldBlock means the socket is full of unread wake-ups: the loop will drain
            // anyway. Any other error means the reader is gone (the client was closed and
            // dropped): nobody is left to wake.
            let _ = (&self.writer).write(&[1]);
        }
    }

    /// Empties the socket, then takes every queued completion (loop thread).
    pub(crate) fn take(&self) -> Vec<Completion> {
        let mut buffer = [0u8; WAKE_BUFFER_BYTES];
        loop {
            match (&self.reader).read(&mut buffer) {
                Ok(0) => break,
                Ok(_) => {}
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                // WouldBlock: empty. Anything else: nothing more to read either.
                Err(_) => break,
            }
        }
        let taken = std::mem::take(&mut *self.queue.lock().unwrap_or_else(PoisonError::into_inner));
        self.pending.fetch_sub(taken.len(), Ordering::AcqRel);
        taken
    }
}
