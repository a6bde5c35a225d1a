//! Migrations that reshape a table keep its rows and its rules.

use leadline_store::Backend;
use leadline_store::testing::TestDb;
use sqlx::Row;

/// SQLite's migrations up to version 7, as a database made by an earlier release has them.
const BEFORE_8: [&str; 7] = [
    include_str!("../migrations/sqlite/0001_init.sql"),
    include_str!("../migrations/sqlite/0002_hardening.sql"),
    include_str!("../migrations/sqlite/0003_deliveries.sql"),
    include_str!("../migrations/sqlite/0004_maintenance.sql"),
    include_str!("../migrations/sqlite/0005_fleet.sql"),
    include_str!("../migrations/sqlite/0006_writer_probe.sql"),
    include_str!("../migrations/sqlite/0007_claim_holder.sql"),
];

fn outbox_row(id: &str, status: &str) -> String {
    format!(
        "INSERT INTO outbox (id, tenant_id, kind, lead_id, endpoint_id, payload, status, attempts, \
         next_attempt_at, locked_by, locked_until, last_error, created_at, updated_at) \
         VALUES ('{id}', 't1', 'email', 'l1', NULL, '{{\"to\": \"x\"}}', '{status}', 2, \
         '2030-01-01T00:00:00Z', 'w1', '2030-01-01T00:01:00Z', 'boom', '2029-12-31T00:00:00Z', \
         '2029-12-31T00:00:01Z')"
    )
}

/// Migration 8 rebuilds SQLite's outbox to write its status check as comparisons
/// (a constant list of more than two values costs a temporary B-tree per insert).
/// A database at version 7 with messages in every status keeps them, column for
/// column, keeps the three indexes, and still refuses a status outside the four.
#[tokio::test]
async fn sqlite_outbox_rebuild_keeps_rows_indexes_and_the_status_rule() {
    let db = TestDb::create(Backend::Sqlite).await;
    let pool = sqlx::SqlitePool::connect(&format!("{}?mode=rwc", db.url))
        .await
        .expect("sqlite");
    for sql in BEFORE_8 {
        sqlx::raw_sql(sql).execute(&pool).await.expect("an earlier migration");
    }
    // The history of a database migrated before checksums were kept: adopted by
    // the migrator, which then applies only what is newer.
    sqlx::raw_sql(
        "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL);
         INSERT INTO schema_migrations VALUES (1, 'init', 'then'), (2, 'hardening', 'then'), \
           (3, 'deliveries', 'then'), (4, 'maintenance', 'then'), (5, 'fleet', 'then'), \
           (6, 'writer_probe', 'then'), (7, 'claim_holder', 'then');
         INSERT INTO tenants (id, name, slug, status, settings, created_at, updated_at, version) \
           VALUES ('t1', 'T', 't', 'active', '{}', '2029-01-01T00:00:00Z', '2029-01-01T00:00:00Z', 1);",
    )
    .execute(&pool)
    .await
    .expect("history and a tenant");
    for (id, status) in [
        ("m1", "pending"),
        ("m2", "delivered"),
        ("m3", "dead"),
        ("m4", "cancelled"),
    ] {
        sqlx::raw_sql(&outbox_row(id, status))
            .execute(&pool)
            .await
            .expect("a message");
    }
    let dump = "SELECT id || '|' || tenant_id || '|' || kind || '|' || lead_id || '|' || \
                coalesce(endpoint_id, '-') || '|' || payload || '|' || status || '|' || attempts || '|' || \
                next_attempt_at || '|' || locked_by || '|' || locked_until || '|' || last_error || '|' || \
                created_at || '|' || updated_at FROM outbox ORDER BY id";
    let rows = |pool: sqlx::SqlitePool| async move {
        sqlx::query(dump)
            .fetch_all(&pool)
            .await
            .expect("rows")
            .iter()
            .map(|r| r.get::<String, _>(0))
            .collect::<Vec<_>>()
    };
    let before = rows(pool.clone()).await;
    assert_eq!(before.len(), 4);
    pool.close().await;

    let store = leadline_store::open(&db.url).await.expect("open");
    store.migrate().await.expect("migrate to 8");
    assert!(store.ready().await.expect("ready"));
    store.close().await;

    let pool = sqlx::SqlitePool::connect(&db.url).await.expect("sqlite");
    assert_eq!(rows(pool.clone()).await, before, "every message, column for column");
    let version: i64 = sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations")
        .fetch_one(&pool)
        .await
        .expect("version");
    assert_eq!(version, 8);
    let mut indexes: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'outbox' AND sql IS NOT NULL",
    )
    .fetch_all(&pool)
    .await
    .expect("indexes");
    indexes.sort();
    assert_eq!(indexes, ["outbox_by_endpoint", "outbox_by_lead", "outbox_due"]);
    let sql: String = sqlx::query_scalar("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'outbox'")
        .fetch_one(&pool)
        .await
        .expect("table");
    assert!(!sql.contains("'pending', 'delivered'"), "{sql}");
    let refused = sqlx::raw_sql(&outbox_row("m5", "sent")).execute(&pool).await;
    assert!(
        refused.as_ref().is_err_and(|e| e.to_string().contains("CHECK")),
        "{refused:?}"
    );
    for (id, status) in [
        ("m6", "pending"),
        ("m7", "delivered"),
        ("m8", "dead"),
        ("m9", "cancelled"),
    ] {
        sqlx::raw_sql(&outbox_row(id, status))
            .execute(&pool)
            .await
            .expect("each allowed status");
    }
    let refused = sqlx::raw_sql("UPDATE outbox SET status = 'Pending' WHERE id = 'm6'")
        .execute(&pool)
        .await;
    assert!(refused.is_err(), "an update to a status outside the four is refused");
    pool.close().await;
}
