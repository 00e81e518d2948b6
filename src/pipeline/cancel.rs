//! Process-wide cancellation flag, set by the CLI's Ctrl-C handler and checked between tiles and
//! between images so work stops at a safe point.

use std::sync::atomic::{AtomicBool, Ordering};

static CANCELLED: AtomicBool = AtomicBool::new(false);

pub fn cancel() {
    CANCELLED.store(true, Ordering::SeqCst);
}

pub fn is_cancelled() -> bool {
    CANCELLED.load(Ordering::Relaxed)
}

/// `Err(Interrupted)` once cancellation was requested.
pub fn check() -> crate::Result<()> {
    if is_cancelled() {
        Err(crate::Error::Interrupted)
    } else {
        Ok(())
    }
}
