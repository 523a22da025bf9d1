//! UTC instants between Rust (`SystemTime`) and Python (aware `datetime`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// `t` as an aware `datetime` in UTC, to the microsecond.
pub(crate) fn to_datetime<'py>(py: Python<'py>, t: SystemTime) -> PyResult<Bound<'py, PyAny>> {
    let us = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros()) as i64;
    let dt = py.import("datetime")?;
    let utc = dt.getattr("timezone")?.getattr("utc")?;
    let epoch = dt
        .getattr("datetime")?
        .call1((1970, 1, 1, 0, 0, 0, 0, utc))?;
    let delta = dt
        .getattr("timedelta")?
        .call1((0, us / 1_000_000, us % 1_000_000))?;
    epoch.call_method1("__add__", (delta,))
}

/// Epoch milliseconds as an aware UTC `datetime`.
pub(crate) fn ms_to_datetime<'py>(py: Python<'py>, ms: u64) -> PyResult<Bound<'py, PyAny>> {
    to_datetime(py, UNIX_EPOCH + Duration::from_millis(ms))
}

/// Optional epoch milliseconds as an optional aware UTC `datetime`.
pub(crate) fn ms_to_datetime_opt<'py>(
    py: Python<'py>,
    ms: Option<u64>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    ms.map(|ms| ms_to_datetime(py, ms)).transpose()
}

/// An aware `datetime` (any zone) as a UTC instant. A naive one is refused:
/// it names no instant.
pub(crate) fn from_datetime(obj: &Bound<'_, PyAny>) -> PyResult<SystemTime> {
    if !obj.hasattr("tzinfo")? || !obj.hasattr("utcoffset")? {
        return Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "expected an aware datetime, not {}",
            obj.get_type().name()?
        )));
    }
    if obj.getattr("tzinfo")?.is_none() {
        return Err(PyValueError::new_err(
            "the datetime has no time zone; give an aware one, e.g. datetime.now(timezone.utc)",
        ));
    }
    // Whole microseconds from the epoch (timedelta's own integers):
    // `timestamp()`'s float can land a microsecond off, and a millisecond
    // boundary with it.
    let dt = obj.py().import("datetime")?;
    let utc = dt.getattr("timezone")?.getattr("utc")?;
    let epoch = dt
        .getattr("datetime")?
        .call1((1970, 1, 1, 0, 0, 0, 0, utc))?;
    let delta = obj.call_method1("__sub__", (epoch,))?;
    let days: i64 = delta.getattr("days")?.extract()?;
    let secs: i64 = delta.getattr("seconds")?.extract()?;
    let micros: i64 = delta.getattr("microseconds")?.extract()?;
    let us = days * 86_400_000_000 + secs * 1_000_000 + micros;
    u64::try_from(us)
        .map(|us| UNIX_EPOCH + Duration::from_micros(us))
        .map_err(|_| PyValueError::new_err(format!("{obj} is before 1970-01-01 UTC")))
}

/// Epoch seconds as a UTC instant (not before the epoch).
pub(crate) fn seconds_since_epoch(s: f64) -> PyResult<SystemTime> {
    Duration::try_from_secs_f64(s)
        .map(|d| UNIX_EPOCH + d)
        .map_err(|_| PyValueError::new_err(format!("{s} is not a time after 1970-01-01 UTC")))
}

/// Seconds (a Python float) as a duration, refusing negative and
/// non-finite values.
pub(crate) fn seconds(what: &str, s: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(s).map_err(|_| {
        PyValueError::new_err(format!(
            "{what} must be a finite number of seconds ≥ 0, not {s}"
        ))
    })
}
