//! The typed result classes Python sees, and the tables its enums are checked against.
//!
//! Every class is frozen (immutable, hashable) with a `repr` that reads like a dataclass's.
//! Ids are Python ints of any size (128-bit safe). Slots that mean "none" on the wire
//! (`DEADLINE_NONE`, or 0 where not applicable) are `None` here.

use allocdb_client::{ClientError, ClientStats as RustClientStats, Committed as RustCommitted};
use allocdb_core::{
    DEADLINE_NONE, LeaseState, LeaseView, PoolStats as RustPoolStats, ResourceState, ResourceView,
    ResultCode,
};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyTuple, PyType};

use crate::call::Outcome;
use crate::convert::client_error;

/// The Python module that defines the enums.
const TYPES_MODULE: &str = "allocdb._types";

/// Resource states: Python names (lowercase) and their values.
const RESOURCE_STATES: [(&str, ResourceState); 4] = [
    ("available", ResourceState::Available),
    ("reserved", ResourceState::Reserved),
    ("active", ResourceState::Active),
    ("revoking", ResourceState::Revoking),
];

/// Lease states: Python names (lowercase) and their values.
const LEASE_STATES: [(&str, LeaseState); 6] = [
    ("reserved", LeaseState::Reserved),
    ("active", LeaseState::Active),
    ("revoking", LeaseState::Revoking),
    ("released", LeaseState::Released),
    ("expired", LeaseState::Expired),
    ("revoked", LeaseState::Revoked),
];

static RESOURCE_STATE_CLASS: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static LEASE_STATE_CLASS: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// `[(name, value)]` of every result code, in numeric order.
pub(crate) fn result_code_table() -> Vec<(&'static str, u8)> {
    ResultCode::ALL
        .iter()
        .map(|code| (code.name(), *code as u8))
        .collect()
}

/// `[(name, value)]` of every resource state.
pub(crate) fn resource_state_table() -> Vec<(&'static str, u8)> {
    RESOURCE_STATES
        .iter()
        .map(|(name, state)| (*name, *state as u8))
        .collect()
}

/// `[(name, value)]` of every lease state.
pub(crate) fn lease_state_table() -> Vec<(&'static str, u8)> {
    LEASE_STATES
        .iter()
        .map(|(name, state)| (*name, *state as u8))
        .collect()
}

fn resource_state_name(state: ResourceState) -> &'static str {
    RESOURCE_STATES
        .iter()
        .find(|(_, known)| *known == state)
        .map_or("?", |(name, _)| name)
}

fn lease_state_name(state: LeaseState) -> &'static str {
    LEASE_STATES
        .iter()
        .find(|(_, known)| *known == state)
        .map_or("?", |(name, _)| name)
}

/// The member of enum `class_name` (in `allocdb._types`) with `value`.
fn enum_member<'py>(
    py: Python<'py>,
    class: &'static PyOnceLock<Py<PyType>>,
    class_name: &str,
    value: u8,
) -> PyResult<Bound<'py, PyAny>> {
    class.import(py, TYPES_MODULE, class_name)?.call1((value,))
}

/// `None` or the number, as Python prints it.
fn show<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "None".to_string(), |value| value.to_string())
}

fn show_bool(value: bool) -> &'static str {
    if value { "True" } else { "False" }
}

/// A slot that may mean "no deadline" or "not applicable".
fn slot(value: u64) -> Option<u64> {
    (value != DEADLINE_NONE && value != 0).then_some(value)
}

/// A write that committed with result `ok`.
#[pyclass(module = "allocdb", frozen, eq, hash)]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Committed {
    /// The op at which the write executed: pass it as `min_op` to read your own write.
    #[pyo3(get)]
    op: u64,
    /// Its position inside that op's batch; `(op, index)` orders every write in the log.
    #[pyo3(get)]
    index: u32,
    /// The operation id it carried (a session key, or the application key given).
    #[pyo3(get)]
    operation_id: u128,
    /// The lease created or touched (also a fencing token); 0 for `create_resource`.
    #[pyo3(get)]
    lease: u128,
    /// The lease's epoch afterwards: pass it to `activate`, `renew` and `release`.
    #[pyo3(get)]
    epoch: u64,
    /// The lease's deadline slot afterwards; `None` when it has none (held until released)
    /// or the command has no lease.
    #[pyo3(get)]
    deadline_slot: Option<u64>,
    /// True when the cluster had already executed this operation id and answered with the
    /// stored outcome.
    #[pyo3(get)]
    retry: bool,
}

#[pymethods]
impl Committed {
    fn __repr__(&self) -> String {
        format!(
            "Committed(op={}, index={}, operation_id={}, lease={}, epoch={}, deadline_slot={}, retry={})",
            self.op,
            self.index,
            self.operation_id,
            self.lease,
            self.epoch,
            show(self.deadline_slot),
            show_bool(self.retry)
        )
    }
}

impl From<RustCommitted> for Committed {
    fn from(committed: RustCommitted) -> Committed {
        Committed {
            op: committed.op,
            index: committed.index,
            operation_id: committed.operation_id,
            lease: committed.lease.0,
            epoch: committed.epoch,
            deadline_slot: slot(committed.deadline_slot),
            retry: committed.retry,
        }
    }
}

/// One resource, as read at `op`.
#[pyclass(module = "allocdb", frozen, eq, hash)]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Resource {
    /// Its id.
    #[pyo3(get)]
    id: u128,
    /// Its pool, if any.
    #[pyo3(get)]
    pool: Option<u128>,
    state: ResourceState,
    /// The live lease holding it; `None` when available.
    #[pyo3(get)]
    lease: Option<u128>,
    /// Starts at 1 and grows by one on every change of state or holder.
    #[pyo3(get)]
    version: u64,
    /// The applied op this answer reflects.
    #[pyo3(get)]
    op: u64,
}

#[pymethods]
impl Resource {
    /// Its state, an `allocdb.ResourceState`.
    #[getter]
    fn state<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        enum_member(py, &RESOURCE_STATE_CLASS, "ResourceState", self.state as u8)
    }

    fn __repr__(&self) -> String {
        format!(
            "Resource(id={}, pool={}, state=ResourceState.{}, lease={}, version={}, op={})",
            self.id,
            show(self.pool),
            resource_state_name(self.state).to_uppercase(),
            show(self.lease),
            self.version,
            self.op
        )
    }
}

impl Resource {
    fn new(op: u64, view: ResourceView) -> Resource {
        Resource {
            id: view.id,
            pool: view.pool,
            state: view.state,
            lease: view.lease.map(|lease| lease.0),
            version: view.version,
            op,
        }
    }
}

/// One lease, as read at `op`.
#[pyclass(module = "allocdb", frozen, eq, hash)]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Lease {
    /// Its id: also its fencing token (ids grow with the log).
    #[pyo3(get)]
    id: u128,
    /// Who holds it.
    #[pyo3(get)]
    holder: u128,
    state: LeaseState,
    /// Starts at 1; `release`, `revoke` and expiry add one.
    #[pyo3(get)]
    epoch: u64,
    resources: Vec<u128>,
    /// Live: its deadline slot, or `None` when held until released. Terminal: `None`.
    #[pyo3(get)]
    deadline_slot: Option<u64>,
    /// Terminal: the slot from which it is retired (then `get_lease` answers `lease_retired`).
    /// Live: `None`.
    #[pyo3(get)]
    retire_slot: Option<u64>,
    /// The applied op this answer reflects.
    #[pyo3(get)]
    op: u64,
}

#[pymethods]
impl Lease {
    /// Its state, an `allocdb.LeaseState`.
    #[getter]
    fn state<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        enum_member(py, &LEASE_STATE_CLASS, "LeaseState", self.state as u8)
    }

    /// Its resources, in the order reserved.
    #[getter]
    fn resources<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, &self.resources)
    }

    /// Whether it still holds its resources (reserved, active or revoking).
    #[getter]
    fn live(&self) -> bool {
        self.state.is_live()
    }

    fn __repr__(&self) -> String {
        let resources: Vec<String> = self.resources.iter().map(u128::to_string).collect();
        let resources = if resources.len() == 1 {
            format!("({},)", resources[0])
        } else {
            format!("({})", resources.join(", "))
        };
        format!(
            "Lease(id={}, holder={}, state=LeaseState.{}, epoch={}, resources={resources}, deadline_slot={}, retire_slot={}, op={})",
            self.id,
            self.holder,
            lease_state_name(self.state).to_uppercase(),
            self.epoch,
            show(self.deadline_slot),
            show(self.retire_slot),
            self.op
        )
    }
}

impl Lease {
    fn new(op: u64, view: &LeaseView) -> Lease {
        Lease {
            id: view.id.0,
            holder: view.holder,
            state: view.state,
            epoch: view.epoch,
            resources: view.resources.as_slice().to_vec(),
            deadline_slot: slot(view.deadline_slot),
            retire_slot: slot(view.retire_slot),
            op,
        }
    }
}

/// A pool's size and availability, as read at `op`.
#[pyclass(module = "allocdb", name = "PoolStats", frozen, eq, hash)]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PoolStats {
    /// Its id.
    #[pyo3(get)]
    pool: u128,
    /// Members ever created in it.
    #[pyo3(get)]
    total: u32,
    /// Members currently available.
    #[pyo3(get)]
    free: u32,
    /// The applied op this answer reflects.
    #[pyo3(get)]
    op: u64,
}

#[pymethods]
impl PoolStats {
    fn __repr__(&self) -> String {
        format!(
            "PoolStats(pool={}, total={}, free={}, op={})",
            self.pool, self.total, self.free, self.op
        )
    }
}

/// What a client has done so far.
#[pyclass(module = "allocdb", frozen, eq)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ClientStats {
    /// Request frames sent.
    #[pyo3(get)]
    frames_sent: u64,
    /// Requests sent, resends included: `requests_sent / frames_sent` is the mean batch.
    #[pyo3(get)]
    requests_sent: u64,
    /// Sessions opened after the first (failovers, redirects, reconnects).
    #[pyo3(get)]
    reconnects: u64,
    /// The highest view seen.
    #[pyo3(get)]
    view_max: u64,
    /// The session the client numbers its writes on, if one is registered.
    #[pyo3(get)]
    session_id: Option<u64>,
    /// Sessions registered so far.
    #[pyo3(get)]
    registrations: u64,
    /// Sessions found evicted.
    #[pyo3(get)]
    evictions: u64,
    /// The highest op seen in any answer.
    #[pyo3(get)]
    op_max_seen: u64,
}

#[pymethods]
impl ClientStats {
    fn __repr__(&self) -> String {
        format!(
            "ClientStats(frames_sent={}, requests_sent={}, reconnects={}, view_max={}, session_id={}, registrations={}, evictions={}, op_max_seen={})",
            self.frames_sent,
            self.requests_sent,
            self.reconnects,
            self.view_max,
            show(self.session_id),
            self.registrations,
            self.evictions,
            self.op_max_seen
        )
    }
}

impl From<RustClientStats> for ClientStats {
    fn from(stats: RustClientStats) -> ClientStats {
        ClientStats {
            frames_sent: stats.frames_sent,
            requests_sent: stats.requests_sent,
            reconnects: stats.reconnects,
            view_max: stats.view_max,
            session_id: stats.session_id,
            registrations: stats.registrations,
            evictions: stats.evictions,
            op_max_seen: stats.op_max_seen,
        }
    }
}

/// The Python value of a call's outcome, or its exception.
pub(crate) fn outcome_into_py(
    py: Python<'_>,
    outcome: Result<Outcome, ClientError>,
) -> PyResult<Py<PyAny>> {
    match outcome {
        Err(error) => Err(client_error(py, &error)),
        Ok(Outcome::Connected) => Ok(py.None()),
        Ok(Outcome::Committed(committed)) => {
            Ok(Py::new(py, Committed::from(committed))?.into_any())
        }
        Ok(Outcome::Resource(op, view)) => Ok(Py::new(py, Resource::new(op, view))?.into_any()),
        Ok(Outcome::Lease(op, view)) => Ok(Py::new(py, Lease::new(op, &view))?.into_any()),
        Ok(Outcome::Pool(op, stats)) => Ok(Py::new(py, pool_stats(op, stats))?.into_any()),
        Ok(Outcome::OperationId(id)) => Ok(id.into_pyobject(py)?.into_any().unbind()),
    }
}

fn pool_stats(op: u64, stats: RustPoolStats) -> PoolStats {
    PoolStats {
        pool: stats.pool,
        total: stats.total,
        free: stats.free,
        op,
    }
}
