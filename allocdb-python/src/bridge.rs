//! Hands asyncio calls from the event loop's thread to the runtime, and their answers back.
//!
//! Calls: the loop's thread queues each started call; the first one of a loop iteration
//! schedules a flush (`loop.call_soon`), which hands the whole queue to the runtime in one task.
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
use std::sync::{Arc, Mutex, PoisonError};

use allocdb_client::ClientError;
use pyo3::prelude::*;

use crate::call::{Outcome, Running};

/// A future and what to set on it.
type Completion = (Py<PyAny>, Result<Outcome, ClientError>);

/// Wake-up bytes read per `read` call while emptying the socket.
const WAKE_BUFFER_BYTES: usize = 64;

/// One event loop's side of an `AsyncClient`.
pub(crate) struct Bridge {
    /// Calls made on the loop's thread, not yet handed to the runtime: they go together, at
    /// the end of the loop's iteration (`flush`), so a burst of calls costs one wake-up of
    /// the runtime's thread instead of up to one each (measured: a quarter of all calls paid
    /// a syscall and two context switches when each was spawned on its own).
    submissions: Mutex<Vec<(Running, Py<PyAny>)>>,
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
            submissions: Mutex::new(Vec::new()),
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

    /// Queues a started call (loop thread); true when it is the first since the last flush,
    /// so the caller schedules one.
    pub(crate) fn submit(&self, work: Running, future: Py<PyAny>) -> bool {
        self.pending.fetch_add(1, Ordering::AcqRel);
        let mut submissions = self
            .submissions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        submissions.push((work, future));
        submissions.len() == 1
    }

    /// Hands every queued call to the runtime: one task, which spawns each call on the
    /// runtime's own thread (no further wake-ups).
    pub(crate) fn flush(self: &Arc<Self>, runtime: &tokio::runtime::Runtime) {
        let batch = std::mem::take(
            &mut *self
                .submissions
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        if batch.is_empty() {
            return;
        }
        let bridge = Arc::clone(self);
        runtime.spawn(async move {
            for (work, future) in batch {
                let bridge = Arc::clone(&bridge);
                tokio::spawn(async move {
                    let outcome = work.await;
                    bridge.complete(future, outcome);
                });
            }
        });
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

/// The callable the loop runs (`loop.call_soon(flusher)`) to flush a bridge. It holds the
/// bridge, not the client handle, so scheduling it makes no reference cycle.
#[pyclass(module = "allocdb._allocdb", frozen)]
pub(crate) struct Flusher {
    pub(crate) bridge: Arc<Bridge>,
}

#[pymethods]
impl Flusher {
    fn __call__(&self) -> PyResult<()> {
        self.bridge.flush(crate::runtime::runtime()?);
        Ok(())
    }
}
