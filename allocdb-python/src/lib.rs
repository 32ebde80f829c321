//! `allocdb._allocdb`: the native module of the `allocdb` Python package.
//!
//! A thin layer over `allocdb-client`: every call of the Python `Client` and `AsyncClient`
//! becomes one call of the Rust [`allocdb_client::Client`] on a tokio runtime shared by the
//! process, so Python gets the same leader discovery, session numbering, batching and retries
//! as Rust code, not a second implementation of the protocol. The typed Python API, its
//! docstrings and the exception classes live in `python/allocdb/`; this crate holds the
//! handle ([`core::Core`]), the result classes and the conversions.
//!
//! It must never block the asyncio event loop, nor take the GIL on a tokio thread: a blocking
//! call releases the GIL while it waits, and an asyncio call's answer is handed to the loop's
//! thread through [`bridge::Bridge`] (a queue plus a socket the loop watches).

mod bridge;
mod call;
mod convert;
mod core;
mod results;
mod runtime;

use pyo3::prelude::*;

/// The native module. Besides the classes it exports the tables the Python enums are checked
/// against at import, so a result code added to the core cannot silently go missing in Python.
#[pymodule]
fn _allocdb(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<core::Core>()?;
    module.add_class::<results::Committed>()?;
    module.add_class::<results::Resource>()?;
    module.add_class::<results::Lease>()?;
    module.add_class::<results::PoolStats>()?;
    module.add_class::<results::ClientStats>()?;
    module.add("RESULT_CODES", results::result_code_table())?;
    module.add("RESOURCE_STATES", results::resource_state_table())?;
    module.add("LEASE_STATES", results::lease_state_table())?;
    module.add("BUNDLE_SIZE_LIMIT", allocdb_core::BUNDLE_SIZE_LIMIT)?;
    Ok(())
}
