//! The Python package `kvs` (its native module `kvs._kvs`): kvs-core for
//! Python — a client with the control plane, live and archived frames, a
//! producer, and the local endpoint for tests.
//!
//! This crate only converts: every behaviour lives in kvs-core (and is
//! tested there). Python values become kvs-core's types here, kvs-core's
//! results become Python objects, and every error becomes a Python
//! exception in one place ([`errors`]). One tokio runtime, owned by the
//! module and started on first use ([`runtime`]), runs all I/O; a call
//! that waits releases the GIL and looks for Ctrl-C every 100 ms.

mod aio;
mod buffer;
mod client;
mod consumer;
mod errors;
mod local;
mod producer;
mod runtime;
mod time;

use pyo3::prelude::*;

#[pymodule]
fn _kvs(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<client::Client>()?;
    m.add_class::<consumer::Frame>()?;
    m.add_class::<consumer::Fragment>()?;
    m.add_class::<consumer::FrameIterator>()?;
    m.add_class::<consumer::FragmentIterator>()?;
    m.add_class::<buffer::FrameData>()?;
    m.add_class::<producer::Producer>()?;
    m.add_class::<producer::EventIterator>()?;
    m.add_class::<producer::H264>()?;
    m.add_class::<producer::H265>()?;
    m.add_class::<producer::Aac>()?;
    m.add_class::<producer::G711>()?;
    m.add_class::<local::LocalEndpoint>()?;
    errors::register(m)?;
    aio::register(m)?;
    Ok(())
}
