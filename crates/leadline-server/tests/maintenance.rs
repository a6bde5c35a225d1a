//! DESIGN §7: maintenance actions, backups under load, restore, and the CLI.

mod common;

use common::Go;

use std::process::Command;

use common::{ADMIN_KEY, Backend, TestApp, lead_body, problem};
use reqwest::Method;
use serde_json::{Value, json};

leadline_store::both_backends!(maintenance_actions_answer_and_are_audited);

async fn run(app: &TestApp, body: Value) -> reqwest::Response {
    app.admin(Method::POST, "/admin/maintenance").json(&body).go().await
}

async fn maintenance_actions_answer_and_are_audited(b: Backend) {
    let app = TestApp::spawn_with(b, &[("LEADLINE_BACKUP_KEEP", "2")]).await;
    let t = app.tenant("Aegean Blue").await;
    app.lead(&t, lead_body("maria@example.com")).await;
    for action in [
        "cleanup_expired_keys",
        "cleanup_old_audit",
        "cleanup_old_dead_letters",
        "cleanup_old_deliveries",
    ] {
        let res = run(&app, json!({"action": action})).await;
        assert_eq!(res.status(), 200, "{action}");
        let v: Value = res.json().await.expect("json");
        assert_eq!(v["action"], action);
        assert!(v["affected"].is_u64() && v["duration_ms"].is_u64());
    }
    // Everything is younger than a day: a one-day audit cleanup deletes nothing...
    let v: Value = run(&app, json!({"action": "cleanup_old_audit", "older_than_days": 1}))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(v["affected"], 0);
    let cutoff = chrono::DateTime::parse_from_rfc3339(v["cutoff"].as_str().expect("cutoff")).expect("time");
    let expected = chrono::Utc::now() - chrono::Duration::days(1);
    assert!((cutoff.timestamp() - expected.timestamp()).abs() < 60);
    // ...and the default keeps 365 days.
    let v: Value = run(&app, json!({"action": "cleanup_old_audit"}))
        .await
        .json()
        .await
        .expect("json");
    let cutoff = chrono::DateTime::parse_from_rfc3339(v["cutoff"].as_str().expect("cutoff")).expect("time");
    assert!(((chrono::Utc::now() - chrono::Duration::days(365)).timestamp() - cutoff.timestamp()).abs() < 60);
    let p = problem(run(&app, json!({"action": "defragment"})).await, 422).await;
    assert!(
        p["errors"][0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("backup_database") && d.contains("cleanup_old_audit"))
    );
    problem(
        run(&app, json!({"action": "cleanup_old_audit", "older_than_days": 0})).await,
        422,
    )
    .await;
    problem(run(&app, json!({"action": "cleanup_old_audit", "days": 3})).await, 422).await;
    problem(
        app.client
            .post(app.url("/admin/maintenance"))
            .json(&json!({"action": "backup_database"}))
            .go()
            .await,
        401,
    )
    .await;
    match b {
        Backend::Postgres => {
            let p = problem(run(&app, json!({"action": "backup_database"})).await, 501).await;
            assert!(p["detail"].as_str().is_some_and(|d| d.contains("pg_dump")));
            // A documented refusal, not a fault: it does not trip a 5xx alert.
            let metrics = app
                .admin(reqwest::Method::GET, "/admin/metrics")
                .send()
                .await
                .expect("metrics")
                .text()
                .await
                .expect("text");
            assert!(
                metrics.contains("leadline_errors_total{class=\"5xx\"} 0"),
                "no 5xx counted"
            );
            assert!(
                metrics.contains("leadline_errors_total{class=\"refused\"} 1"),
                "counted as a refusal"
            );
        }
        Backend::Sqlite => {
            let mut paths = Vec::new();
            for _ in 0..3 {
                let res = run(&app, json!({"action": "backup_database"})).await;
                assert_eq!(res.status(), 200);
                let v: Value = res.json().await.expect("json");
                let backup = &v["backup"];
                assert_eq!(backup["integrity"], "ok");
                let path = backup["path"].as_str().expect("path").to_owned();
                let bytes = std::fs::read(&path).expect("the backup exists");
                assert_eq!(backup["size_bytes"], bytes.len() as u64);
                use sha2::Digest;
                assert_eq!(backup["sha256"], hex_of(&sha2::Sha256::digest(&bytes)));
                assert!(path.contains("/backups/leadline-") && path.ends_with(".db"));
                paths.push(path);
            }
            let left: Vec<_> = std::fs::read_dir(app.data_dir().join("backups"))
                .expect("dir")
                .filter_map(Result::ok)
                .collect();
            assert_eq!(left.len(), 2, "the newest two are kept");
            assert!(!std::path::Path::new(&paths[0]).exists());
        }
    }
    // The maintenance requests themselves are audited, failures included.
    let v: Value = app
        .admin(Method::GET, "/admin/audit?limit=200")
        .go()
        .await
        .json()
        .await
        .expect("json");
    let entries = v["data"].as_array().expect("data");
    for action in [
        "maintenance.cleanup_expired_keys",
        "maintenance.cleanup_old_audit",
        "maintenance.cleanup_old_deliveries",
    ] {
        assert!(
            entries
                .iter()
                .any(|e| e["action"] == action && e["status"] == 200 && e["actor_type"] == "admin"),
            "{action}"
        );
    }
    assert!(
        entries
            .iter()
            .any(|e| e["action"] == "maintenance.run" && e["status"] == 422)
    );
    assert!(entries.iter().any(|e| e["action"] == "maintenance.backup_database"));
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A backup taken while leads keep coming holds a consistent state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_load_is_consistent_and_restores() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let t = app.tenant("Aegean Blue").await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (client, url, sk, stop) = (app.client.clone(), app.url("/v1/leads"), t.sk.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let res = client
                    .post(&url)
                    .bearer_auth(&sk)
                    .json(&lead_body(&format!("c{n}@example.com")))
                    .go()
                    .await;
                assert_eq!(res.status(), 201);
                n += 1;
            }
            n
        })
    };
    // Real time: leads arrive while the backups run (the test is about the overlap).
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut backups = Vec::new();
    for _ in 0..3 {
        let v: Value = run(&app, json!({"action": "backup_database"}))
            .await
            .json()
            .await
            .expect("json");
        backups.push(v["backup"]["path"].as_str().expect("path").to_owned());
        // Real time: backups spaced out under the load.
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.await.expect("writer");
    assert!(written > 10, "leads kept coming during the backups ({written})");
    for path in &backups {
        assert!(
            leadline_store::sqlite::check_file(std::path::Path::new(path))
                .await
                .is_ok()
        );
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{path}?mode=ro"))
            .await
            .expect("open backup");
        let leads: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM leads")
            .fetch_one(&pool)
            .await
            .expect("count");
        let orphans: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM leads l WHERE NOT EXISTS (SELECT 1 FROM audit_logs a WHERE a.resource_id = l.id AND a.action = 'lead.create') \
             OR NOT EXISTS (SELECT 1 FROM outbox o WHERE o.lead_id = l.id)",
        )
        .fetch_one(&pool)
        .await
        .expect("count");
        assert!(leads > 0);
        assert_eq!(
            orphans, 0,
            "every lead in the backup has its audit entry and its outbox rows"
        );
        pool.close().await;
    }

    // Restore the last backup into a fresh data dir and serve from it.
    let fresh = tempfile::tempdir().expect("tempdir");
    let db = fresh.path().join("leadline.db");
    let cli = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_leadline"))
            .env_clear()
            .env("LEADLINE_DATA_DIR", fresh.path())
            .env("LEADLINE_LOG_FORMAT", "json")
            .args(args)
            .output()
            .expect("run")
    };
    let last = backups.last().expect("a backup");
    let out = cli(&["restore", last]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = cli(&["restore", last]);
    assert!(
        !out.status.success(),
        "an existing database is not overwritten without --force"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    let junk = fresh.path().join("junk.db");
    std::fs::write(&junk, b"this is not a database at all, not even close to one").expect("write");
    let out = cli(&["restore", junk.to_str().expect("utf8"), "--force"]);
    assert!(!out.status.success(), "a damaged file is refused");
    assert!(
        leadline_store::sqlite::check_file(&db).await.is_ok(),
        "the database is untouched by the refused restore"
    );
    let out = cli(&["restore", last, "--force"]);
    assert!(out.status.success());
    let config =
        leadline_server::config::Config::for_tests(&format!("sqlite://{}", db.display()), fresh.path(), ADMIN_KEY, &[]);
    let restored = leadline_server::app::Application::build(config)
        .await
        .expect("starts on the restored data");
    let base = format!("http://{}", restored.local_addr());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(restored.run_until_stopped(async move {
        let _ = rx.await;
    }));
    let client = reqwest::Client::new();
    let list: Value = client
        .get(format!("{base}/v1/leads?limit=5"))
        .bearer_auth(&t.sk)
        .go()
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        list["data"].as_array().map(Vec::len),
        Some(5),
        "the leads and the keys are there"
    );
    let res = client
        .post(format!("{base}/v1/leads"))
        .bearer_auth(&t.sk)
        .json(&lead_body("after@example.com"))
        .go()
        .await;
    assert_eq!(res.status(), 201, "and the API works");
    let _ = tx.send(());
    server.await.expect("join").expect("stopped");
}

#[tokio::test]
async fn cli_maintenance_and_backup() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cli = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_leadline"))
            .env_clear()
            .env("LEADLINE_DATA_DIR", dir.path())
            .args(args)
            .output()
            .expect("run")
    };
    assert!(cli(&["migrate"]).status.success());
    let out = cli(&["maintenance", "cleanup_old_audit", "--older-than-days", "30"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["action"], "cleanup_old_audit");
    let out = cli(&["backup"]);
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(std::path::Path::new(v["backup"]["path"].as_str().expect("path")).exists());
    let out = cli(&["maintenance", "shred"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("valid actions"));
    // The CLI's actions are audited as the system's.
    let store = leadline_store::open(&format!("sqlite://{}/leadline.db", dir.path().display()))
        .await
        .expect("open");
    let f = leadline_core::audit::AuditFilter {
        scope: leadline_core::audit::AuditScope::All,
        action: None,
        since: None,
        until: None,
        resource_id: None,
    };
    let entries = store
        .list_audit(&f, &leadline_core::page::PageRequest { after: None, limit: 50 })
        .await
        .expect("list");
    assert!(
        entries
            .iter()
            .any(|e| e.action == "maintenance.backup_database"
                && e.actor_type == leadline_core::audit::ActorType::System)
    );
    store.close().await;
}
