//! Python values in (durations), Python exceptions out.

use std::time::Duration;

use allocdb_client::ClientError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyFloat, PyInt, PyType};

/// The Python module that defines the exception classes.
const ERRORS_MODULE: &str = "allocdb._errors";

/// The exception classes of `allocdb._errors`, looked up once.
struct ErrorClasses {
    rejected: Py<PyAny>,
    invalid: Py<PyAny>,
    indefinite: Py<PyAny>,
    timeout: Py<PyAny>,
    unavailable: Py<PyAny>,
    forbidden: Py<PyAny>,
    closed: Py<PyAny>,
}

static ERROR_CLASSES: PyOnceLock<ErrorClasses> = PyOnceLock::new();
static TIMEDELTA: PyOnceLock<Py<PyType>> = PyOnceLock::new();

fn error_classes(py: Python<'_>) -> PyResult<&ErrorClasses> {
    ERROR_CLASSES.get_or_try_init(py, || {
        let module = py.import(ERRORS_MODULE)?;
        let class = |name: &str| module.getattr(name).map(Bound::unbind);
        Ok(ErrorClasses {
            rejected: class("Rejected")?,
            invalid: class("Invalid")?,
            indefinite: class("Indefinite")?,
            timeout: class("Timeout")?,
            unavailable: class("Unavailable")?,
            forbidden: class("Forbidden")?,
            closed: class("Closed")?,
        })
    })
}

/// The Python exception for a client error: `Rejected(message, code, op)`,
/// `Indefinite(message, operation_id)`, `Closed(message, operation_id)`, or one of the others
/// with the message alone. The message is the Rust client's own text.
pub(crate) fn client_error(py: Python<'_>, error: &ClientError) -> PyErr {
    let built = error_classes(py).and_then(|classes| {
        let message = error.to_string();
        let instance = match error {
            ClientError::Rejected { code, op } => {
                classes.rejected.bind(py).call1((message, *code as u8, *op))
            }
            ClientError::Invalid { .. } | ClientError::AddressList { .. } => {
                classes.invalid.bind(py).call1((message,))
            }
            ClientError::Indefinite { operation_id } => {
                classes.indefinite.bind(py).call1((message, *operation_id))
            }
            ClientError::Timeout => classes.timeout.bind(py).call1((message,)),
            ClientError::Unavailable { .. } => classes.unavailable.bind(py).call1((message,)),
            ClientError::Forbidden { .. } => classes.forbidden.bind(py).call1((message,)),
            ClientError::Closed { operation_id } => {
                classes.closed.bind(py).call1((message, *operation_id))
            }
        }?;
        Ok(PyErr::from_value(instance))
    });
    // Failing to build the exception (the package is broken) is reported as that failure.
    built.unwrap_or_else(|failure| failure)
}

/// `allocdb.Invalid` for a request this binding refuses before sending.
pub(crate) fn invalid(py: Python<'_>, reason: String) -> PyErr {
    client_error(py, &ClientError::Invalid { reason })
}

/// A duration given as a `datetime.timedelta` or a number of seconds (`int` or `float`),
/// exactly to the microsecond. Negative, non-finite or out-of-range values are `Invalid`
/// (a `ValueError`); `bool` and other types are `TypeError`s.
pub(crate) fn duration(value: &Bound<'_, PyAny>, what: &str) -> PyResult<Duration> {
    let py = value.py();
    let out_of_range = |shown: String| {
        invalid(
            py,
            format!("{what}: {shown} is not a duration (it must be at least 0 and finite)"),
        )
    };
    if value.is_instance_of::<PyBool>() {
        return Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "{what}: expected a datetime.timedelta or a number of seconds, got a bool"
        )));
    }
    if value.is_instance_of::<PyInt>() {
        let seconds: u64 = value
            .extract()
            .map_err(|_| out_of_range(format!("{value} s")))?;
        return Ok(Duration::from_secs(seconds));
    }
    if value.is_instance_of::<PyFloat>() {
        let seconds: f64 = value.extract()?;
        return Duration::try_from_secs_f64(seconds)
            .map_err(|_| out_of_range(format!("{seconds} s")));
    }
    let timedelta = TIMEDELTA.import(py, "datetime", "timedelta")?;
    if value.is_instance(timedelta.as_any())? {
        // A timedelta is normalised: 0 <= seconds < 86400, 0 <= microseconds < 10**6, and
        // the sign is in `days` alone.
        let days: i64 = value.getattr("days")?.extract()?;
        let seconds: u64 = value.getattr("seconds")?.extract()?;
        let micros: u64 = value.getattr("microseconds")?.extract()?;
        let days = u64::try_from(days).map_err(|_| out_of_range(value.to_string()))?;
        // |days| <= 999,999,999, so this cannot overflow.
        let whole = days * 86_400 + seconds;
        return Ok(Duration::from_secs(whole) + Duration::from_micros(micros));
    }
    Err(pyo3::exceptions::PyTypeError::new_err(format!(
        "{what}: expected a datetime.timedelta or a number of seconds, got {}",
        value.get_type().name()?
    )))
}

/// An optional duration (`None` stays `None`).
pub(crate) fn optional_duration(
    value: Option<&Bound<'_, PyAny>>,
    what: &str,
) -> PyResult<Option<Duration>> {
    match value {
        Some(value) if !value.is_none() => duration(value, what).map(Some),
        _ => Ok(None),
    }
}

/// `allocdb.Closed` with a message of this binding's own (no write was sent).
pub(crate) fn closed(py: Python<'_>, message: &str) -> PyErr {
    let built = error_classes(py).and_then(|classes| {
        let instance = classes
            .closed
            .bind(py)
            .call1((message, Option::<u128>::None))?;
        Ok(PyErr::from_value(instance))
    });
    built.unwrap_or_else(|failure| failure)
}
