//! Frame bytes for Python without a copy: a read-only buffer over the
//! `Bytes` the parser sliced out of the received data (`memoryview(data)`,
//! `numpy.frombuffer(data, numpy.uint8)`).
//!
//! The buffer protocol is the one place this crate needs `unsafe`: CPython
//! hands a raw `Py_buffer` to fill. The bytes are immutable and owned by
//! the object, which the view keeps alive (`PyBuffer_FillInfo` takes a
//! reference), so the pointer stays valid for the view's life.
#![allow(unsafe_code)]

use std::os::raw::c_int;

use bytes::Bytes;
use pyo3::exceptions::PyBufferError;
use pyo3::ffi;
use pyo3::prelude::*;

/// The bytes of one frame, read-only; supports the buffer protocol
/// (`memoryview`, `bytes(...)`, numpy) without copying.
#[pyclass(frozen, module = "kvs._kvs")]
pub(crate) struct FrameData {
    bytes: Bytes,
}

impl FrameData {
    pub(crate) fn new(bytes: Bytes) -> Self {
        Self { bytes }
    }
}

#[pymethods]
impl FrameData {
    fn __len__(&self) -> usize {
        self.bytes.len()
    }

    /// Fills a read-only, contiguous byte view of the frame.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        if view.is_null() {
            return Err(PyBufferError::new_err("no buffer to fill"));
        }
        if flags & ffi::PyBUF_WRITABLE == ffi::PyBUF_WRITABLE {
            return Err(PyBufferError::new_err("frame data is read-only"));
        }
        let b = &slf.get().bytes;
        // SAFETY: `view` is non-null and CPython's to fill; the bytes live
        // as long as `slf`, whose reference the view now holds.
        let r = unsafe {
            ffi::PyBuffer_FillInfo(
                view,
                slf.as_ptr(),
                b.as_ptr() as *mut std::os::raw::c_void,
                b.len() as ffi::Py_ssize_t,
                1,
                flags,
            )
        };
        if r == -1 {
            return Err(PyErr::fetch(slf.py()));
        }
        Ok(())
    }

    /// Nothing to free: the view only borrowed the bytes.
    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {}
}
