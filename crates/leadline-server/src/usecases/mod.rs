//! The operations, one function each: it takes the acting context (the
//! [`Effects`](crate::effects::Effects) that audit it, the tenant it acts for) and
//! validated input, calls the domain's verbs and commits through the one audited
//! path. HTTP handlers only parse, call and render; the CLI and the janitor call the
//! same functions (tenants and keys here, maintenance in `crate::maintenance::run`),
//! and so will the staff console.

pub mod deliveries;
pub mod fleet;
pub mod leads;
pub mod quotes;
pub mod settings;
pub mod tenants;
pub mod webhooks;
