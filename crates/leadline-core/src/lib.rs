//! Leadline's domain: pure, synchronous and free of I/O.
//!
//! Everything that decides *what* changes lives here: validated value types, the
//! tenant, key and lead aggregates, and the [`change::ChangeSet`] that a store
//! commits atomically. The HTTP layer and the stores only move data in and out.

pub mod api_key;
pub mod audit;
pub mod change;
pub mod delivery;
pub mod id;
pub mod lead;
pub mod money;
pub mod page;
pub mod percent;
pub mod pricing;
pub mod quote;
pub mod redact;
pub mod retry;
pub mod tenant;
pub mod text;
pub mod validation;
pub mod webhook;
pub mod widget;
pub mod yacht;

pub use validation::{FieldError, ValidationErrors};
