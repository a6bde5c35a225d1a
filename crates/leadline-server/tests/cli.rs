//! The `leadline` binary as an operator uses it: `serve --demo`, graceful
//! shutdown on SIGTERM, the admin key file, and the management commands.

mod common;

use common::Go;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Backend;
use leadline_store::testing::TestDb;
use serde_json::Value;

fn leadline(data_dir: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_leadline"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("LEADLINE_DATA_DIR", data_dir)
        .env("LEADLINE_BIND", "127.0.0.1:0")
        .env("LEADLINE_LOG_FORMAT", "json")
        .current_dir(data_dir);
    c
}

struct Demo {
    child: Child,
    base: String,
    tenant: String,
    sk: String,
    pk: String,
    curl_body: String,
}

/// Starts `serve --demo` and reads its banner.
fn start_demo(data_dir: &std::path::Path) -> Demo {
    let mut child = leadline(data_dir)
        .args(["serve", "--demo"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn leadline");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Read to the end, so the server never writes into a closed pipe.
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut base, mut tenant, mut sk, mut pk, mut curl_body) = (None, None, None, None, None);
    while Instant::now() < deadline {
        let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        let word = |prefix: &str| line.trim().strip_prefix(prefix).map(|r| r.trim().to_owned());
        if let Some(v) = word("Leadline is running at") {
            base = Some(v);
        } else if let Some(v) = word("Demo company:") {
            tenant = v.rsplit_once('(').map(|(_, id)| id.trim_end_matches(')').to_owned());
        } else if let Some(v) = word("secret key:") {
            sk = Some(v);
        } else if let Some(v) = word("publishable key:") {
            pk = Some(v);
        } else if let Some(v) = word("-d '") {
            curl_body = v.strip_suffix('\'').map(str::to_owned);
        } else if line.starts_with("API document:") {
            break;
        }
    }
    Demo {
        child,
        base: base.expect("banner names the address"),
        tenant: tenant.expect("banner names the tenant"),
        sk: sk.expect("secret key"),
        pk: pk.expect("publishable key"),
        curl_body: curl_body.expect("curl line"),
    }
}

fn sigterm_and_wait(mut child: Child) -> (std::process::ExitStatus, String) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            return (s, err);
        }
        assert!(Instant::now() < deadline, "leadline did not stop after SIGTERM");
        // Real time: polling a real process until it exits.
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn demo_serves_the_printed_curl_line_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let demo = start_demo(dir.path());
    let client = reqwest::Client::new();
    // The banner's curl line works as printed.
    let res = client
        .post(format!("{}/v1/leads", demo.base))
        .bearer_auth(&demo.pk)
        .header("content-type", "application/json")
        .body(demo.curl_body.clone())
        .go()
        .await;
    assert_eq!(res.status(), 201);
    let lead: Value = res.json().await.expect("json");
    // The widget demo page the banner names embeds the demo company's widget.
    let page = client
        .get(format!("{}/widget/demo", demo.base))
        .go()
        .await
        .text()
        .await
        .expect("html");
    assert!(
        page.contains("/widget/v1.js") && page.contains(&format!("data-leadline-key=\"{}\"", demo.pk)),
        "{page}"
    );
    // The admin key was generated into a private file and works.
    let key_file = dir.path().join("admin.key");
    let admin_key = std::fs::read_to_string(&key_file).expect("admin.key").trim().to_owned();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let res = client
        .get(format!("{}/admin/tenants/{}", demo.base, demo.tenant))
        .header("X-Admin-Key", &admin_key)
        .go()
        .await;
    assert_eq!(res.status(), 200);
    let (status, logs) = sigterm_and_wait(demo.child);
    assert!(status.success(), "exit 0 after SIGTERM, got {status:?}; logs: {logs}");
    assert!(logs.contains("shutting down"));
    assert!(!logs.contains(&admin_key), "the admin key is never logged");
    assert!(
        !logs.contains(&demo.sk) && !logs.contains(&demo.pk),
        "API keys are never logged"
    );
    assert!(!logs.contains("maria@example.com"), "lead emails are never logged");
    for line in logs.lines() {
        serde_json::from_str::<Value>(line).unwrap_or_else(|_| panic!("every log line is JSON: {line}"));
    }

    // A second start on the same data: same company, fresh keys, the lead is there.
    let again = start_demo(dir.path());
    assert_eq!(again.tenant, demo.tenant);
    assert_ne!(again.sk, demo.sk);
    let res = client
        .get(format!("{}/v1/leads/{}", again.base, lead["id"].as_str().expect("id")))
        .bearer_auth(&again.sk)
        .go()
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.expect("json"), lead);
    // The keys of the first run still work (rotation with overlap).
    let res = client
        .get(format!("{}/v1/leads", again.base))
        .bearer_auth(&demo.sk)
        .go()
        .await;
    assert_eq!(res.status(), 200);
    let (status, _) = sigterm_and_wait(again.child);
    assert!(status.success());
}

fn run(dir: &std::path::Path, db: &str, args: &[&str]) -> (bool, String, String) {
    let out = leadline(dir)
        .env("DATABASE_URL", db)
        .args(args)
        .output()
        .expect("run leadline");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

leadline_store::both_backends!(management_commands);

async fn management_commands(b: Backend) {
    let db = TestDb::create(b).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (ok, _, err) = run(dir.path(), &db.url, &["migrate"]);
    assert!(ok, "{err}");
    let (ok, out, err) = run(
        dir.path(),
        &db.url,
        &[
            "tenant",
            "create",
            "--name",
            "Ionian Sails",
            "--notification-email",
            "ops@ionian.example",
        ],
    );
    assert!(ok, "{err}");
    let created: Value = serde_json::from_str(&out).expect("json output");
    let id = created["tenant"]["id"].as_str().expect("id").to_owned();
    assert_eq!(
        created["tenant"]["settings"]["notification_emails"][0],
        "ops@ionian.example"
    );
    assert!(created["secret_key"].as_str().is_some_and(|k| k.starts_with("sk_")));
    let (ok, out, _) = run(dir.path(), &db.url, &["tenant", "create", "--name", "Ionian Sails"]);
    assert!(!ok && out.is_empty(), "duplicate slug refused");
    let (ok, out, _) = run(dir.path(), &db.url, &["key", "issue", &id, "--kind", "publishable"]);
    assert!(ok);
    let (key_id, key) = out.trim().split_once('\t').expect("id and key");
    assert!(key.starts_with("pk_") && key_id.starts_with("key_"));
    let (ok, out, _) = run(dir.path(), &db.url, &["key", "revoke", &id, key_id]);
    assert!(ok && out.contains("revoked"));
    let (ok, _, err) = run(
        dir.path(),
        &db.url,
        &["key", "revoke", &id, "key_01jd6c8m2f0000000000000000"],
    );
    assert!(!ok && err.contains("nothing"), "{err}");
    let (ok, _, _) = run(dir.path(), &db.url, &["tenant", "suspend", &id]);
    assert!(ok);
    let (ok, out, _) = run(dir.path(), &db.url, &["tenant", "list"]);
    assert!(ok);
    assert!(
        out.lines()
            .any(|l| l.starts_with(&id) && l.contains("suspended") && l.contains("ionian-sails")),
        "{out}"
    );
    // The store agrees.
    let store = leadline_store::open(&db.url).await.expect("open");
    let keys = store
        .list_api_keys(&leadline_core::id::TenantId::parse(&id).expect("id"))
        .await
        .expect("keys");
    assert_eq!(keys.len(), 3);
    assert_eq!(keys.iter().filter(|k| k.revoked_at.is_some()).count(), 1);
    store.close().await;
}

#[test]
fn check_config_names_the_bad_setting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = leadline(dir.path())
        .env("LEADLINE_RETRY_BASE_DELAY", "soon")
        .arg("check-config")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("LEADLINE_RETRY_BASE_DELAY"), "{err}");
    let out = leadline(dir.path()).arg("check-config").output().expect("run");
    assert!(out.status.success());
    let out = leadline(dir.path())
        .env("PORT", "99999")
        .arg("serve")
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("PORT"));
}

#[test]
fn openapi_command_prints_the_served_document() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = leadline(dir.path()).arg("openapi").output().expect("run");
    assert!(out.status.success());
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let served: Value = leadline_server::http::document();
    assert_eq!(doc, served);
}
