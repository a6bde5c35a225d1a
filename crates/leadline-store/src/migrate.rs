//! Embedded migrations: each backend's `migrations/<backend>/NNNN_name.sql`, compiled
//! into the binary and applied in order, each in its own transaction.

/// One migration.
pub(crate) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// SQLite's migrations.
pub(crate) const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../migrations/sqlite/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "hardening",
        sql: include_str!("../migrations/sqlite/0002_hardening.sql"),
    },
    Migration {
        version: 3,
        name: "deliveries",
        sql: include_str!("../migrations/sqlite/0003_deliveries.sql"),
    },
    Migration {
        version: 4,
        name: "maintenance",
        sql: include_str!("../migrations/sqlite/0004_maintenance.sql"),
    },
    Migration {
        version: 5,
        name: "fleet",
        sql: include_str!("../migrations/sqlite/0005_fleet.sql"),
    },
    Migration {
        version: 6,
        name: "writer_probe",
        sql: include_str!("../migrations/sqlite/0006_writer_probe.sql"),
    },
    Migration {
        version: 7,
        name: "claim_holder",
        sql: include_str!("../migrations/sqlite/0007_claim_holder.sql"),
    },
];

/// PostgreSQL's migrations.
pub(crate) const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../migrations/postgres/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "hardening",
        sql: include_str!("../migrations/postgres/0002_hardening.sql"),
    },
    Migration {
        version: 3,
        name: "deliveries",
        sql: include_str!("../migrations/postgres/0003_deliveries.sql"),
    },
    Migration {
        version: 4,
        name: "maintenance",
        sql: include_str!("../migrations/postgres/0004_maintenance.sql"),
    },
    Migration {
        version: 5,
        name: "fleet",
        sql: include_str!("../migrations/postgres/0005_fleet.sql"),
    },
    Migration {
        version: 6,
        name: "claim_holder",
        sql: include_str!("../migrations/postgres/0006_claim_holder.sql"),
    },
];

/// The bookkeeping table, the same on both backends.
pub(crate) const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)";
