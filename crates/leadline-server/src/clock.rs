//! The time source. Timestamps are kept to microseconds, what PostgreSQL stores,
//! so a value reads back exactly as written on both backends.

use chrono::{DateTime, SubsecRound, Utc};

/// Now, to the microsecond.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}
