use std::time::Duration;

use super::*;
use crate::learner::{CallOutcome, Sample};

fn sample(outcome: CallOutcome, latency_ms: f64, cost: f64) -> Sample {
    Sample {
        outcome,
        latency_ms,
        judge_score: Some(0.9),
        cost: Some(cost),
        tokens: Some(120),
    }
}

/// Opens the journal in `dir`; a journal dropped just before may still be closing its file on
/// its writer thread, so a refusal is retried for up to two seconds.
fn open(dir: &Path) -> Journal {
    for _ in 0..100 {
        match Journal::open(dir, Duration::from_secs(300), "w1") {
            Ok(j) => return j,
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    panic!("the journal in {} does not open", dir.display())
}

fn flusher(learner: &Arc<Learner>, journal: &Journal, health: &Arc<HealthRegistry>) -> Flusher {
    Flusher::new(
        learner.clone(),
        JournalStats::new(journal.clone()),
        health.clone(),
        BTreeMap::new(),
        FLUSH_EVERY,
    )
}

/// Reads the state dir once the journal dropped just before has closed its file (its writer
/// thread closes it shortly after the last handle goes).
fn read_once_closed(dir: &Path) -> Stored {
    for _ in 0..100 {
        match read_state_dir(dir) {
            Ok(s) => return s,
            Err(StoreError::InUse { .. }) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("{e}"),
        }
    }
    panic!("the store in {} stays in use", dir.display())
}

/// A flusher that also writes the snapshot file into `dir`, as the daemon's does.
fn with_snapshot(
    learner: &Arc<Learner>,
    journal: &Journal,
    health: &Arc<HealthRegistry>,
    dir: &Path,
) -> Flusher {
    flusher(learner, journal, health).with_snapshot(dir)
}

#[tokio::test]
async fn statistics_and_health_survive_a_reopen_with_the_same_figures() {
    let dir = tempfile::tempdir().expect("tempdir");
    let learner = Arc::new(Learner::default());
    let health = Arc::new(HealthRegistry::default());
    let a = Key::new("classify", "openai", "s");
    let b = Key::new("classify", "ollama", "l");
    for i in 0..50 {
        let outcome = if i % 5 == 0 {
            CallOutcome::Failed
        } else {
            CallOutcome::Valid
        };
        learner.observe_at(
            &a,
            &sample(outcome, 800.0 + i as f64, 0.002),
            1000.0 + i as f64,
        );
        learner.observe_at(
            &b,
            &sample(CallOutcome::Invalid, 90.0, 0.0001),
            1000.0 + i as f64,
        );
    }
    learner.routed(&a);
    health.update("openai", |h| {
        h.breaker = crate::endpoints::health::BreakerState::Open;
        h.since = 1040.0;
        h.last_error = Some("http_503".into());
    });
    {
        let journal = open(dir.path());
        assert_eq!(
            flusher(&learner, &journal, &health)
                .flush()
                .await
                .expect("flushes"),
            2
        );
    }
    let journal = open(dir.path());
    let reloaded = Learner::default();
    reloaded.load(JournalStats::new(journal.clone()).load().expect("loads"));
    assert_eq!(reloaded.snapshot(), learner.snapshot());
    let figures = reloaded.get_at(&a, 1049.0).expect("kept");
    assert_eq!((figures.calls, figures.routed), (50, 1));
    assert!((figures.success_rate().expect("rate") - 0.8).abs() < 0.01);
    drop(journal);
    let stored = read_once_closed(dir.path());
    assert_eq!(stored.health, health.snapshot());
    assert_eq!(stored.stats, learner.snapshot());
}

#[tokio::test]
async fn old_rows_load_and_unreadable_rows_are_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let journal = open(dir.path());
    let key = |e: &str| encode_key(&Key::new("t", e, "s"));
    journal
        .write_rows(vec![
            // An older procos: fields added since are missing.
            (
                Table::Learner,
                key("old"),
                br#"{"calls": 7, "ok": 6.5}"#.to_vec(),
            ),
            // A newer procos: a field this one does not know.
            (
                Table::Learner,
                key("new"),
                br#"{"calls": 3, "ok": 3.0, "future_field": [1, 2]}"#.to_vec(),
            ),
            (Table::Learner, key("broken"), b"{not json".to_vec()),
            (Table::Learner, "not a key".into(), b"{}".to_vec()),
        ])
        .await
        .expect("writes");
    let loaded = JournalStats::new(journal).load().expect("loads");
    let names: Vec<(&str, u64)> = loaded
        .iter()
        .map(|(k, s)| (k.endpoint.as_str(), s.calls))
        .collect();
    assert_eq!(names, [("new", 3), ("old", 7)]);
}

#[tokio::test]
async fn many_observations_are_written_in_one_commit_and_an_idle_flush_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let journal = open(dir.path());
    let learner = Arc::new(Learner::default());
    let health = Arc::new(HealthRegistry::default());
    let flusher = flusher(&learner, &journal, &health);
    for i in 0..3000 {
        let key = Key::new("t", ["a", "b", "c"][i % 3], "s");
        learner.observe_at(&key, &sample(CallOutcome::Valid, 10.0, 0.001), 100.0);
    }
    let before = journal.commits();
    assert_eq!(flusher.flush().await.expect("flushes"), 3);
    assert_eq!(
        journal.commits() - before,
        1,
        "one commit for 3000 observations"
    );
    assert_eq!(flusher.flush().await.expect("flushes"), 0);
    assert_eq!(journal.commits() - before, 1, "nothing changed: no commit");
    health.update("a", |h| {
        h.breaker = crate::endpoints::health::BreakerState::Open
    });
    flusher.flush().await.expect("flushes");
    assert_eq!(journal.commits() - before, 2, "a breaker change is written");
}

#[tokio::test(start_paused = true)]
async fn the_flusher_takes_changes_every_few_seconds_not_per_observation() {
    let journal = Journal::in_memory(Duration::from_secs(300));
    let learner = Arc::new(Learner::default());
    let health = Arc::new(HealthRegistry::default());
    let stop = CancellationToken::new();
    let task = tokio::spawn(flusher(&learner, &journal, &health).run(stop.clone()));
    learner.observe(
        &Key::new("t", "a", "s"),
        &sample(CallOutcome::Valid, 5.0, 0.0),
    );
    tokio::time::sleep(FLUSH_EVERY - Duration::from_millis(100)).await;
    assert_eq!(learner.pending(), 1, "not written before the interval");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(learner.pending(), 0, "written at the interval");
    learner.observe(
        &Key::new("t", "b", "s"),
        &sample(CallOutcome::Valid, 5.0, 0.0),
    );
    stop.cancel();
    task.await.expect("stops");
    assert_eq!(
        learner.pending(),
        0,
        "the last changes are written when stopped"
    );
}

#[tokio::test]
async fn the_final_flush_reaches_the_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let learner = Arc::new(Learner::default());
    let health = Arc::new(HealthRegistry::default());
    {
        let journal = open(dir.path());
        let stop = CancellationToken::new();
        let task = tokio::spawn(flusher(&learner, &journal, &health).run(stop.clone()));
        learner.observe(
            &Key::new("t", "a", "s"),
            &sample(CallOutcome::Valid, 5.0, 0.0),
        );
        stop.cancel();
        task.await.expect("stops");
    }
    let stored = read_once_closed(dir.path());
    assert_eq!(stored.stats.len(), 1);
    assert_eq!(stored.stats[0].1.calls, 1);
}

#[test]
fn a_missing_store_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = read_state_dir(&dir.path().join("nowhere")).expect_err("no store");
    assert!(matches!(err, StoreError::Missing { .. }), "{err}");
    assert!(err.to_string().contains("nowhere"), "{err}");
}

#[test]
fn an_unreadable_store_is_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join(crate::journal::FILE_NAME),
        b"this is not redb",
    )
    .expect("write");
    let err = read_state_dir(dir.path()).expect_err("unreadable");
    assert!(matches!(err, StoreError::Read { .. }), "{err}");
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn the_snapshot_is_read_while_the_writer_has_the_store_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let journal = open(dir.path());
    let learner = Arc::new(Learner::default());
    let health = Arc::new(HealthRegistry::default());
    let flusher = with_snapshot(&learner, &journal, &health, dir.path());
    learner.observe(
        &Key::new("t", "a", "s"),
        &sample(CallOutcome::Valid, 5.0, 0.0),
    );
    flusher.flush().await.expect("flushes");
    let stored = read_state_dir(dir.path()).expect("reads beside the writer");
    assert_eq!(stored.stats, learner.snapshot());
    learner.observe(
        &Key::new("t", "b", "s"),
        &sample(CallOutcome::Valid, 5.0, 0.0),
    );
    health.update("b", |h| {
        h.breaker = crate::endpoints::health::BreakerState::Open
    });
    flusher.flush().await.expect("the writer still writes");
    let stored = read_state_dir(dir.path()).expect("reads");
    assert_eq!(stored.stats.len(), 2);
    assert_eq!(stored.health, health.snapshot());
}

#[tokio::test]
async fn without_a_snapshot_an_open_store_is_in_use_and_a_closed_one_is_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let learner = Arc::new(Learner::default());
    let health = Arc::new(HealthRegistry::default());
    learner.observe(
        &Key::new("t", "a", "s"),
        &sample(CallOutcome::Valid, 5.0, 0.0),
    );
    let journal = open(dir.path());
    flusher(&learner, &journal, &health)
        .flush()
        .await
        .expect("flushes");
    let err = read_state_dir(dir.path()).expect_err("the writer holds it");
    assert!(matches!(err, StoreError::InUse { .. }), "{err}");
    drop(journal);
    assert_eq!(read_once_closed(dir.path()).stats, learner.snapshot());
}

#[tokio::test]
async fn an_unreadable_snapshot_falls_back_to_the_store_and_the_next_flush_replaces_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let learner = Arc::new(Learner::default());
    let health = Arc::new(HealthRegistry::default());
    learner.observe(
        &Key::new("t", "a", "s"),
        &sample(CallOutcome::Valid, 5.0, 0.0),
    );
    {
        let journal = open(dir.path());
        flusher(&learner, &journal, &health)
            .flush()
            .await
            .expect("flushes");
    }
    std::fs::write(dir.path().join(SNAPSHOT_FILE), b"{ torn").expect("write");
    let journal = open(dir.path());
    drop(journal);
    assert_eq!(read_once_closed(dir.path()).stats.len(), 1);
    // A new life writes a snapshot at its first flush, even with nothing new.
    let journal = open(dir.path());
    let reloaded = Arc::new(Learner::default());
    reloaded.load(JournalStats::new(journal.clone()).load().expect("loads"));
    with_snapshot(&reloaded, &journal, &health, dir.path())
        .flush()
        .await
        .expect("flushes");
    let stored = read_state_dir(dir.path()).expect("reads the snapshot beside the writer");
    assert_eq!(stored.stats, learner.snapshot());
}
