//! `Core`: the handle behind `allocdb.Client` and `allocdb.AsyncClient`.
//!
//! Every call method takes the call's arguments and an optional asyncio future. Without one it
//! blocks the calling thread until the answer (releasing the GIL, so other Python threads run
//! and their calls are batched with this one) and returns the result or raises. With one it
//! returns at once; the answer is set on the future by `drain`, which the event loop calls
//! when the bridge's descriptor is readable (see `bridge.rs`).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use allocdb_client::{CallOptions, Client, ClientOptions, ClientRole, Security, TlsCredentials};
use allocdb_core::{BUNDLE_SIZE_LIMIT, Bundle, Command, LeaseId};
use allocdb_protocol::Query;
use pyo3::intern;
use pyo3::prelude::*;

use crate::bridge::{Bridge, Flusher};
use crate::call::{Call, ClientSlot};
use crate::convert::{closed, duration, invalid, optional_duration};
use crate::results::{ClientStats, outcome_into_py};
use crate::runtime::runtime;

/// How often a blocking call wakes up to let Python run its signal handlers (Ctrl-C).
const SIGNAL_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// A client handle: its options, the connected client (once connected, until closed) and, for
/// asyncio use, its bridge to one event loop.
#[pyclass(module = "allocdb._allocdb", frozen)]
pub(crate) struct Core {
    options: ClientOptions,
    slot: ClientSlot,
    bridge: OnceLock<Arc<Bridge>>,
    /// The event loop's `call_soon` and the bridge's flusher, while a loop is attached.
    scheduler: Mutex<Option<(Py<PyAny>, Py<Flusher>)>>,
    /// Resolved (set to `None`) by `drain` once no call is pending; see `wait_idle`.
    idle: Mutex<Option<Py<PyAny>>>,
}

impl Core {
    /// The connected client, or `allocdb.Closed`.
    fn client(&self, py: Python<'_>) -> PyResult<Client> {
        self.slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| {
                closed(
                    py,
                    "the client is not connected (connect it, or use it in a `with` block) or was closed",
                )
            })
    }

    fn bridge(&self, py: Python<'_>) -> PyResult<&Arc<Bridge>> {
        self.bridge.get().ok_or_else(|| {
            closed(
                py,
                "this handle has no event loop bridge: use allocdb.AsyncClient for asyncio",
            )
        })
    }

    /// Runs `call`: blocking without `future`, else in the background with its answer set on
    /// `future` by `drain`.
    fn dispatch(
        &self,
        py: Python<'_>,
        call: Call,
        future: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let runtime = runtime()?;
        match future {
            None => {
                let mut work = call.start();
                loop {
                    let step = py.detach(|| {
                        // The timer must be made inside the runtime.
                        runtime.block_on(async {
                            tokio::time::timeout(SIGNAL_CHECK_INTERVAL, &mut work).await
                        })
                    });
                    match step {
                        Ok(outcome) => return outcome_into_py(py, outcome),
                        // Ctrl-C (KeyboardInterrupt) and other signal handlers run here. An
                        // interrupted write's outcome is unknown, as after any interrupted I/O.
                        Err(_) => py.check_signals()?,
                    }
                }
            }
            Some(future) => {
                let bridge = self.bridge(py)?;
                // The call's future (a command and the client's nested call futures, over a
                // kilobyte) is boxed once by `start`, so the task that runs it stays small and
                // tokio does not copy it again (measured: copying an unboxed 3.5 KB future took
                // a third of the runtime thread's time).
                if bridge.submit(call.start(), future) {
                    self.schedule_flush(py, bridge, runtime)?;
                }
                Ok(py.None())
            }
        }
    }

    /// Flushes the bridge at the end of the loop's iteration (`loop.call_soon`), or at once
    /// when no loop is attached.
    fn schedule_flush(
        &self,
        py: Python<'_>,
        bridge: &Arc<Bridge>,
        runtime: &tokio::runtime::Runtime,
    ) -> PyResult<()> {
        let scheduler = self
            .scheduler
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|(call_soon, flusher)| (call_soon.clone_ref(py), flusher.clone_ref(py)));
        match scheduler {
            Some((call_soon, flusher)) => {
                call_soon.bind(py).call1((flusher,))?;
            }
            None => bridge.flush(runtime),
        }
        Ok(())
    }

    fn write(
        &self,
        py: Python<'_>,
        command: &Command,
        operation_id: Option<u128>,
        timeout: Option<&Bound<'_, PyAny>>,
        future: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let options = CallOptions {
            operation_id,
            timeout: optional_duration(timeout, "timeout")?,
        };
        let call = Call::Write {
            client: self.client(py)?,
            command: *command,
            options,
        };
        self.dispatch(py, call, future)
    }

    fn read(
        &self,
        py: Python<'_>,
        query: Query,
        min_op: Option<u64>,
        timeout: Option<&Bound<'_, PyAny>>,
        future: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let options = CallOptions {
            operation_id: None,
            timeout: optional_duration(timeout, "timeout")?,
        };
        let call = Call::Read {
            client: self.client(py)?,
            query,
            min_op,
            options,
        };
        self.dispatch(py, call, future)
    }

    /// Slots covering a TTL, with the cluster's slot length (the Rust client's conversion).
    fn ttl_slots(&self, py: Python<'_>, ttl: &Bound<'_, PyAny>) -> PyResult<u64> {
        let ttl = duration(ttl, "ttl")?;
        Ok(self.client(py)?.slots_for(ttl))
    }
}

#[pymethods]
impl Core {
    #[new]
    #[pyo3(signature = (
        addresses, cluster_id=0, insecure=false, certs=None, role="application",
        call_timeout=None, request_timeout=None, connect_timeout=None,
        in_flight_max=None, batch_requests_max=None, frames_in_flight_max=None,
    ))]
    fn new(
        py: Python<'_>,
        addresses: Vec<String>,
        cluster_id: u128,
        insecure: bool,
        certs: Option<PathBuf>,
        role: &str,
        call_timeout: Option<&Bound<'_, PyAny>>,
        request_timeout: Option<&Bound<'_, PyAny>>,
        connect_timeout: Option<&Bound<'_, PyAny>>,
        in_flight_max: Option<u32>,
        batch_requests_max: Option<u32>,
        frames_in_flight_max: Option<u32>,
    ) -> PyResult<Core> {
        let mut options = ClientOptions::new(addresses, cluster_id);
        let role = ClientRole::from_name(role).ok_or_else(|| {
            invalid(
                py,
                format!("role: {role:?} is not a client role (application or operator)"),
            )
        })?;
        options.security = match (insecure, certs) {
            (true, Some(_)) => {
                return Err(invalid(
                    py,
                    "security: give either certs=<dir> or insecure=True, not both".into(),
                ));
            }
            (true, None) => Some(Security::Insecure),
            (false, Some(dir)) => Some(Security::Tls(
                TlsCredentials::from_dir(&dir, role.name())
                    .map_err(|reason| invalid(py, reason))?,
            )),
            // `ClientOptions::problem` explains.
            (false, None) => None,
        };
        if let Some(timeout) = optional_duration(call_timeout, "call_timeout")? {
            options.call_timeout = timeout;
        }
        if let Some(timeout) = optional_duration(request_timeout, "request_timeout")? {
            options.request_timeout = timeout;
        }
        if let Some(timeout) = optional_duration(connect_timeout, "connect_timeout")? {
            options.connect_timeout = timeout;
        }
        options.in_flight_max = in_flight_max.unwrap_or(options.in_flight_max);
        options.batch_requests_max = batch_requests_max.unwrap_or(options.batch_requests_max);
        options.frames_in_flight_max = frames_in_flight_max.unwrap_or(options.frames_in_flight_max);
        if let Some(reason) = options.problem() {
            return Err(invalid(py, reason));
        }
        Ok(Core {
            options,
            slot: Arc::new(Mutex::new(None)),
            bridge: OnceLock::new(),
            scheduler: Mutex::new(None),
            idle: Mutex::new(None),
        })
    }

    /// Connects (blocking without `future`).
    #[pyo3(signature = (future=None))]
    fn connect(&self, py: Python<'_>, future: Option<Py<PyAny>>) -> PyResult<Py<PyAny>> {
        let call = Call::Connect {
            options: self.options.clone(),
            slot: Arc::clone(&self.slot),
        };
        self.dispatch(py, call, future)
    }

    /// Drops the connected client: later calls raise `Closed`. Calls already running finish
    /// (their deadlines bound them); the connection task ends after the last one.
    fn close(&self) {
        self.slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }

    /// Whether a client is connected and not closed.
    #[getter]
    fn connected(&self) -> bool {
        self.slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// The cluster's id.
    #[getter]
    fn cluster_id(&self, py: Python<'_>) -> PyResult<u128> {
        Ok(self.client(py)?.cluster_id())
    }

    /// The cluster's slot length in milliseconds.
    #[getter]
    fn slot_ms(&self, py: Python<'_>) -> PyResult<u64> {
        Ok(self.client(py)?.slot_ms())
    }

    /// The longest TTL the cluster accepts, in slots (told in the welcome).
    #[getter]
    fn ttl_slots_max(&self, py: Python<'_>) -> PyResult<u64> {
        Ok(self.client(py)?.ttl_slots_max())
    }

    /// Slots covering `ttl`, rounded up (0 for a zero duration).
    fn slots_for(&self, py: Python<'_>, ttl: &Bound<'_, PyAny>) -> PyResult<u64> {
        self.ttl_slots(py, ttl)
    }

    /// The client's counters.
    fn stats(&self, py: Python<'_>) -> PyResult<ClientStats> {
        Ok(ClientStats::from(self.client(py)?.stats()))
    }

    /// Creates the asyncio bridge (once), attaches the loop whose `call_soon` is given, and
    /// returns the descriptor to watch.
    fn open_bridge(&self, py: Python<'_>, call_soon: Py<PyAny>) -> PyResult<i32> {
        let bridge = if let Some(bridge) = self.bridge.get() {
            bridge
        } else {
            let bridge = Bridge::new().map_err(|error| {
                pyo3::exceptions::PyOSError::new_err(format!(
                    "cannot open the event loop bridge: {error}"
                ))
            })?;
            self.bridge.get_or_init(|| Arc::new(bridge))
        };
        let flusher = Py::new(
            py,
            Flusher {
                bridge: Arc::clone(bridge),
            },
        )?;
        *self
            .scheduler
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some((call_soon, flusher));
        Ok(bridge.fileno())
    }

    /// Detaches the event loop (after the last call's answer was delivered).
    fn close_bridge(&self) {
        self.scheduler
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }

    /// Calls started on the bridge whose answers are not yet set.
    fn pending(&self) -> usize {
        self.bridge.get().map_or(0, |bridge| bridge.pending())
    }

    /// Sets every finished call's answer on its future (the event loop's reader callback).
    /// A future already done (cancelled) is left alone.
    fn drain(&self, py: Python<'_>) -> PyResult<()> {
        let Some(bridge) = self.bridge.get() else {
            return Ok(());
        };
        let mut first_error = None;
        for (future, outcome) in bridge.take() {
            if let Err(error) = deliver(py, future.bind(py), outcome) {
                first_error.get_or_insert(error);
            }
        }
        if bridge.pending() == 0 {
            let idle = self
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(idle) = idle {
                resolve_idle(py, idle.bind(py))?;
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Resolves `future` (to `None`) once no call is pending on the bridge.
    fn wait_idle(&self, py: Python<'_>, future: Py<PyAny>) -> PyResult<()> {
        if self.pending() == 0 {
            return resolve_idle(py, future.bind(py));
        }
        *self.idle.lock().unwrap_or_else(PoisonError::into_inner) = Some(future);
        Ok(())
    }

    #[pyo3(signature = (resource, pool=None, operation_id=None, timeout=None, future=None))]
    fn create_resource(
        &self,
        py: Python<'_>,
        resource: u128,
        pool: Option<u128>,
        operation_id: Option<u128>,
        timeout: Option<&Bound<'_, PyAny>>,
        future: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let command = Command::CreateResource { resource, pool };
        self.write(py, &command, operation_id, timeout, future)
    }

    #[pyo3(signature = (resources, holder, ttl, operation_id=None, timeout=None, future=None))]
    fn reserve(
        &self,
        py: Python<'_>,
        resources: Vec<u128>,
        holder: u128,
        ttl: &Bound<'_, PyAny>,
        operation_id: Option<u128>,
        timeout: Option<&Bound<'_, PyAny>>,
        future: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let bundle = Bundle::from_slice(&resources).ok_or_else(|| {
            invalid(
                py,
                format!(
                    "a bundle holds at most {BUNDLE_SIZE_LIMIT} resources, {} given",
                    resources.len()
                ),
            )
        })?;
        let command = Command::Reserve {
            resources: bundle,
            holder,
            ttl_slots: self.ttl_slots(py, ttl)?,
        };
        self.write(py, &command, operation_id, timeout, future)
    }

    #[pyo3(signature = (pool, count, holder, ttl, operation_id=None, timeout=None, future=None))]
    fn reserve_any(
        &self,
        py: Python<'_>,
        pool: u128,
        count: u32,
        holder: u128,
        ttl: &Bound<'_, PyAny>,
        operation_id: Option<u128>,
        timeout: Option<&Bound<'_, PyAny>>,
        future: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let command = Command::ReserveAny {
            pool,
            count,
            holder,
            ttl_slots: self.ttl_slots(py, ttl)?,
        };
        self.write(py, &command, operation_id, timeout, future)
    }

    #[pyo3(signature = (lease, holder, epoch, ttl=None, operation_id=None, timeout=None, future=None))]
    fn activate(
        &self,
        py: Python<'_>,
        lease: u128,
        holder: u128,
        epoch: u64,
        ttl: Option<&Bound<'_, PyAny>>,
        operation_id: Option<u128>,
        timeout: Option<&Bound<'_, PyAny>>,
        future: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let ttl_slots = match ttl {
            Some(ttl) if !ttl.is_none() => Some(self.ttl_slots(py, ttl)?),
            _ => None,
        };
        let command = Command::Activate {
            lease: LeaseId(lease),
            holder,
            epoch,
            ttl_slots,
        };
        self.write(py, &command, operation_id, timeout, future)
    }

    #[pyo3(signature = (lease, holder, epoch, ttl, operation_id=None, timeout=None, future=None))]
    fn renew(
        &self,
        py: Python<'_>,
        lease: u128,
        holder: u128,
        epoch: u64,
        ttl: &Bound<'_, PyAny>,
        operation_id: Option<u128>,
        timeout: Option<&Bound<'_, PyAny>>,
        future: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let command = Command::Renew {
            lease: LeaseId(lease),
            holder,
            epoch,
            ttl_slots: self.ttl_slots(py, ttl)?,
        };
        self.write(py, &command, operation_id, timeout, future)
    }

    #[pyo3(signature = (lease, holder, epoch, operation_id=None, timeout=None, future=None))]
    fn release(
        &self,
        py: Python<'_>,
        lease: u128,
        holder: u128,
        epoch: u64,
        operation_id: Option<u128>,
        timeout: Option<&Bound<'_, PyAny>>,
        future: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let command = Command::Release {
            lease: LeaseId(lease),
            holder,
            epoch,
        };
        self.write(py, &command, operation_id, timeout, future)
    }

    #[pyo3(signature = (lease, operation_id=None, timeout=None, future=None))]
    fn revoke(
        &self,
        py: Python<'_>,
        lease: u128,
        operation_id: Option<u128>,
        timeout: Option<&Bound<'_, PyAny>>,
        future: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        self.write(
            py,
            &Command::Revoke {
                lease: LeaseId(lease),
            },
            operation_id,
            timeout,
            future,
        )
    }

    #[pyo3(signature = (lease, operation_id=None, timeout=None, future=None))]
    fn reclaim(
        &self,
        py: Python<'_>,
        lease: u128,
        operation_id: Option<u128>,
        timeout: Option<&Bound<'_, PyAny>>,
        future: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        self.write(
            py,
            &Command::Reclaim {
                lease: LeaseId(lease),
            },
            operation_id,
            timeout,
            future,
        )
    }

    #[pyo3(signature = (resource, min_op=None, timeout=None, future=None))]
    fn get_resource(
        &self,
        py: Python<'_>,
        resource: u128,
        min_op: Option<u64>,
        timeout: Option<&Bound<'_, PyAny>>,
        future: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        self.read(py, Query::Resource(resource), min_op, timeout, future)
    }

    #[pyo3(signature = (lease, min_op=None, timeout=None, future=None))]
    fn get_lease(
        &self,
        py: Python<'_>,
        lease: u128,
        min_op: Option<u64>,
        timeout: Option<&Bound<'_, PyAny>>,
        future: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        self.read(py, Query::Lease(LeaseId(lease)), min_op, timeout, future)
    }

    #[pyo3(signature = (pool, min_op=None, timeout=None, future=None))]
    fn pool_stats(
        &self,
        py: Python<'_>,
        pool: u128,
        min_op: Option<u64>,
        timeout: Option<&Bound<'_, PyAny>>,
        future: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        self.read(py, Query::Pool(pool), min_op, timeout, future)
    }

    #[pyo3(signature = (future=None))]
    fn new_operation_id(&self, py: Python<'_>, future: Option<Py<PyAny>>) -> PyResult<Py<PyAny>> {
        let call = Call::NewOperationId {
            client: self.client(py)?,
        };
        self.dispatch(py, call, future)
    }
}

/// Sets one outcome on its future unless the future is already done (cancelled).
fn deliver(
    py: Python<'_>,
    future: &Bound<'_, PyAny>,
    outcome: Result<crate::call::Outcome, allocdb_client::ClientError>,
) -> PyResult<()> {
    let set = match outcome_into_py(py, outcome) {
        Ok(value) => future.call_method1(intern!(py, "set_result"), (value,)),
        Err(error) => future.call_method1(intern!(py, "set_exception"), (error.into_value(py),)),
    };
    match set {
        Ok(_) => Ok(()),
        // Setting fails only on a future already done: a caller that was cancelled. Asking
        // first would cost a call per answer; asking after a failure costs nothing normally.
        Err(_) if future.call_method0(intern!(py, "done"))?.is_truthy()? => Ok(()),
        Err(error) => Err(error),
    }
}

fn resolve_idle(py: Python<'_>, future: &Bound<'_, PyAny>) -> PyResult<()> {
    if !future.call_method0(intern!(py, "done"))?.is_truthy()? {
        future.call_method1(intern!(py, "set_result"), (py.None(),))?;
    }
    Ok(())
}
