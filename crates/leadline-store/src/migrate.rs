//! Embedded migrations: each backend's `migrations/<backend>/NNNN_name.sql`, compiled
//! into the binary and applied by sqlx's migrator, in order, each in its own
//! transaction. The migrator records each migration's SHA-384 in
//! `_sqlx_migrations` and refuses to start on a database where an applied
//! migration differs from the binary's (an edited migration), or where one is
//! missing from it.
//!
//! The list is given to the migrator through [`MigrationSource`] rather than
//! `sqlx::migrate!`: the same migrator and checksums, without compiling sqlx's
//! proc-macro crate into every build.

use std::borrow::Cow;

use sqlx::error::BoxDynError;
use sqlx::migrate::{MigrationSource, MigrationType, Migrator};

/// One migration.
#[derive(Debug)]
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
    Migration {
        version: 8,
        name: "outbox_status_check",
        sql: include_str!("../migrations/sqlite/0008_outbox_status_check.sql"),
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

/// The migrator of one backend's list.
pub(crate) async fn migrator(list: &'static [Migration]) -> crate::Result<Migrator> {
    Migrator::new(Embedded(list))
        .await
        .map_err(|e| crate::StoreError::Config(format!("migrations: {e}")))
}

#[derive(Debug)]
struct Embedded(&'static [Migration]);

impl<'s> MigrationSource<'s> for Embedded {
    fn resolve(self) -> futures_core::future::BoxFuture<'s, Result<Vec<sqlx::migrate::Migration>, BoxDynError>> {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .map(|m| {
                    sqlx::migrate::Migration::new(
                        m.version,
                        Cow::Borrowed(m.name),
                        MigrationType::Simple,
                        Cow::Borrowed(m.sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

/// The latest migration of a list.
pub(crate) fn latest(list: &[Migration]) -> i64 {
    list.last().map(|m| m.version).unwrap_or(0)
}

/// A database migrated before the migrator kept checksums has its versions in
/// `schema_migrations`: they are recorded in `_sqlx_migrations` with the
/// binary's checksums (the migrations were not edited since), and the old table
/// goes. This gives the rows to record: version, description, checksum.
pub(crate) fn adoption(list: &'static [Migration], applied: &[i64]) -> Vec<(i64, &'static str, Vec<u8>)> {
    use sha2::Digest;
    list.iter()
        .filter(|m| applied.contains(&m.version))
        .map(|m| (m.version, m.name, sha2::Sha384::digest(m.sql.as_bytes()).to_vec()))
        .collect()
}
