//! The time source. Timestamps are kept to microseconds, what PostgreSQL stores,
//! so a value reads back exactly as written on both backends.

use chrono::{DateTime, SubsecRound, Utc};

/// Now, to the microsecond.
pub fn now() -> DateTime<Utc> {
    #[cfg(feature = "test-clock")]
    let t = Utc::now() + chrono::Duration::microseconds(test::OFFSET_US.load(std::sync::atomic::Ordering::Relaxed));
    #[cfg(not(feature = "test-clock"))]
    let t = Utc::now();
    t.trunc_subsecs(6)
}

/// Tests move time instead of sleeping (feature `test-clock`, which only the
/// server's own tests enable). The offset is process-wide: nextest runs each
/// test in its own process.
#[cfg(feature = "test-clock")]
pub mod test {
    use std::sync::atomic::{AtomicI64, Ordering};

    pub(super) static OFFSET_US: AtomicI64 = AtomicI64::new(0);

    /// Moves the server's clock forward by `d`.
    pub fn advance(d: std::time::Duration) {
        let us = i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        OFFSET_US.fetch_add(us, Ordering::Relaxed);
    }
}
