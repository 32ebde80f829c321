//! The one tokio runtime every client of the process runs on.

use std::sync::OnceLock;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

/// Worker threads of the runtime. One is enough: a client's connection task and its calls are
/// cheap per request (the client batches), and a Python process already has the interpreter's
/// thread competing for the cores. Blocking calls run on the caller's thread (`block_on`).
const WORKER_THREADS: usize = 1;

/// The runtime and the process that started it: a forked child inherits the memory but not the
/// runtime's threads, so it must not use it.
static RUNTIME: OnceLock<(u32, tokio::runtime::Runtime)> = OnceLock::new();

/// The shared runtime, started on first use.
///
/// # Errors
/// `RuntimeError` when it cannot be started, or when this process is a fork of the one that
/// started it (its threads did not survive the fork).
pub(crate) fn runtime() -> PyResult<&'static tokio::runtime::Runtime> {
    let (owner, runtime) = if let Some(entry) = RUNTIME.get() {
        entry
    } else {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKER_THREADS)
            .thread_name("allocdb-client")
            .enable_all()
            .build()
            .map_err(|error| {
                PyRuntimeError::new_err(format!("cannot start the client runtime: {error}"))
            })?;
        // Two threads racing here (only possible without the GIL) keep the first runtime;
        // the other is dropped unused.
        RUNTIME.get_or_init(|| (std::process::id(), runtime))
    };
    if *owner != std::process::id() {
        return Err(PyRuntimeError::new_err(
            "allocdb clients do not survive fork(): create them in the process that uses them",
        ));
    }
    Ok(runtime)
}
