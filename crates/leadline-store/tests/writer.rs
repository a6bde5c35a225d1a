//! Group commit: jobs of one batch succeed or fail each on its own.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{SubsecRound, Utc};
use leadline_core::change::{Change, ChangeSet};
use leadline_core::tenant::{NewTenantRequest, Tenant};
use leadline_store::sqlite::SqliteStore;
use leadline_store::testing::TestDb;
use leadline_store::{Backend, Store, StoreError, WriterOptions};

fn tenant(name: &str) -> Tenant {
    NewTenantRequest {
        name: name.into(),
        slug: None,
        settings: Default::default(),
    }
    .into_tenant(Utc::now().trunc_subsecs(6))
    .expect("valid")
}

/// Ten change sets sent at once, one of which breaks a unique constraint: the
/// nine commit and answer success, the one answers its own conflict.
async fn one_bad_job_fails_alone(store: Arc<dyn Store>) {
    let taken = tenant("Taken Charters");
    store
        .commit(ChangeSet::one(Change::InsertTenant(taken.clone())))
        .await
        .expect("first");
    let mut sets: Vec<(String, ChangeSet)> = (0..9)
        .map(|i| {
            let t = tenant(&format!("Batch Charters {i}"));
            (t.id.to_string(), ChangeSet::one(Change::InsertTenant(t)))
        })
        .collect();
    // Same slug as an existing tenant: a unique violation.
    let mut dup = tenant("Taken Charters");
    dup.slug = taken.slug.clone();
    sets.insert(4, (dup.id.to_string(), ChangeSet::one(Change::InsertTenant(dup))));
    let handles: Vec<_> = sets
        .into_iter()
        .map(|(id, cs)| {
            let store = store.clone();
            tokio::spawn(async move { (id, store.commit(cs).await) })
        })
        .collect();
    let mut ok = Vec::new();
    let mut refused = Vec::new();
    for h in handles {
        let (id, r) = h.await.expect("task");
        match r {
            Ok(_) => ok.push(id),
            Err(StoreError::Conflict(_)) => refused.push(id),
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(ok.len(), 9, "the other jobs commit");
    assert_eq!(refused.len(), 1, "the bad job answers its own conflict");
    for id in &ok {
        let id = leadline_core::id::TenantId::parse(id).expect("id");
        assert!(store.get_tenant(&id).await.expect("read").is_some(), "{id} is stored");
    }
    let id = leadline_core::id::TenantId::parse(&refused[0]).expect("id");
    assert!(store.get_tenant(&id).await.expect("read").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_batch_with_a_failing_job() {
    let db = TestDb::create(Backend::Sqlite).await;
    // A wait long enough that the ten jobs land in one batch.
    let options = WriterOptions {
        max_wait: Duration::from_millis(300),
        ..WriterOptions::default()
    };
    let store = Arc::new(SqliteStore::open_with(&db.url, &options).await.expect("open"));
    store.migrate().await.expect("migrate");
    let before = store.writer_stats().batches.load(Ordering::Relaxed);
    let jobs_before = store.writer_stats().jobs.load(Ordering::Relaxed);
    one_bad_job_fails_alone(store.clone()).await;
    let batches = store.writer_stats().batches.load(Ordering::Relaxed) - before;
    let jobs = store.writer_stats().jobs.load(Ordering::Relaxed) - jobs_before;
    // The first tenant, then the ten in one transaction (nine committed jobs).
    assert_eq!(batches, 2, "the ten change sets were one transaction");
    assert_eq!(jobs, 10);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_concurrent_commits_with_a_failing_one() {
    let db = TestDb::create(Backend::Postgres).await;
    let store = leadline_store::open(&db.url).await.expect("open");
    store.migrate().await.expect("migrate");
    one_bad_job_fails_alone(store.clone()).await;
    store.close().await;
}
