//! Objects of the app's language (a listener, a credentials provider) held
//! by the library's own threads.
//!
//! Releasing such an object calls into its runtime (Python needs its
//! interpreter lock; during interpreter shutdown it ends any other thread
//! that asks, and a Rust thread ended that way aborts the process). So the
//! library never releases one on its own threads: a [`Foreign`] dropped
//! there is queued, and the queue is emptied on the app's threads — when a
//! producer is made, finished or dropped. What is still queued when the
//! process ends is never released, which is harmless then.

use std::cell::Cell;
use std::sync::{Arc, Mutex};

thread_local! {
    static OURS: Cell<bool> = const { Cell::new(false) };
}

/// Objects dropped on the library's threads, released later.
static LATER: Mutex<Vec<Box<dyn Send>>> = Mutex::new(Vec::new());

/// Marks the calling thread as the library's own.
pub(crate) fn mark_ours() {
    OURS.with(|c| c.set(true));
}

/// Releases what was dropped on the library's threads; call on the app's.
pub(crate) fn release_pending() {
    if OURS.with(Cell::get) {
        return;
    }
    let pending = std::mem::take(
        &mut *LATER
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    drop(pending);
}

/// An `Arc` of a foreign object that is never released on the library's
/// threads.
pub(crate) struct Foreign<T: ?Sized + Send + Sync + 'static>(Option<Arc<T>>);

impl<T: ?Sized + Send + Sync + 'static> Foreign<T> {
    pub(crate) fn new(a: Arc<T>) -> Self {
        Self(Some(a))
    }
}

impl<T: ?Sized + Send + Sync + 'static> Clone for Foreign<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T: ?Sized + Send + Sync + 'static> std::ops::Deref for Foreign<T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.0.as_deref().expect("held until dropped")
    }
}

impl<T: ?Sized + Send + Sync + 'static> Drop for Foreign<T> {
    fn drop(&mut self) {
        if let Some(a) = self.0.take() {
            if OURS.with(Cell::get) {
                LATER
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(Box::new(a));
            }
        }
    }
}
