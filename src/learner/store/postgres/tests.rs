//! The shared store against a real PostgreSQL (Debian's binaries, one throwaway server per test
//! binary, one database per test), and its arithmetic.

use std::sync::Arc;

use super::*;
use crate::learner::{CallOutcome, Sample};

/// The end-to-end tests' throwaway PostgreSQL (one server per test binary, a database per
/// test, a TCP switch to cut it off), shared rather than copied.
#[allow(dead_code)]
#[path = "../../../../tests/support/postgres.rs"]
mod pg;

use pg::{TcpSwitch, database};

fn sample(outcome: CallOutcome) -> Sample {
    Sample {
        outcome,
        latency_ms: 20.0,
        judge_score: None,
        cost: Some(0.5),
        tokens: Some(10),
    }
}

fn key() -> Key {
    Key::new("topic", "ep", "s")
}

fn observe(learner: &Learner, n: usize, outcome: CallOutcome) {
    for _ in 0..n {
        learner.observe_at(&key(), &sample(outcome), 1_000.0);
    }
}

fn calls(learner: &Learner) -> u64 {
    learner.get_at(&key(), 1_000.0).map_or(0, |s| s.calls)
}

fn secret(url: &str) -> Secret {
    Secret::new(url)
}

#[test]
fn adding_and_subtracting_figures_round_trips() {
    let (a, b) = (Learner::default(), Learner::default());
    observe(&a, 3, CallOutcome::Valid);
    observe(&b, 2, CallOutcome::Failed);
    let (sa, sb) = (a.snapshot()[0].1.clone(), b.snapshot()[0].1.clone());
    let mut sum = sa.clone();
    add(&mut sum, &sb, 3600.0);
    assert_eq!((sum.calls, sum.answered), (5, 3));
    assert!((sum.ok - 3.0).abs() < 1e-9 && (sum.failed - 2.0).abs() < 1e-9);
    assert!((sum.cost_sum - 2.5).abs() < 1e-9);
    let back = subtract(&sum, &sb, 3600.0);
    assert_eq!(back.calls, 3);
    assert!((back.failed).abs() < 1e-9 && (back.ok - 3.0).abs() < 1e-9);
}

#[test]
fn a_url_that_is_not_postgres_is_refused_without_echoing_it() {
    let err = check_url(&secret("mysql://u:hunter2-secret@db/x")).expect_err("refused");
    assert!(err.contains("PostgreSQL URL"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    assert!(check_url(&secret("postgres://u:p@db:5432/x?sslmode=require")).is_ok());
}

#[tokio::test]
async fn what_one_replica_wrote_another_reads() {
    let url = database().await;
    let (a, b) = (Learner::default(), Learner::default());
    let store_a = SharedStats::new(&secret(&url), "replica-a").expect("store");
    observe(&a, 4, CallOutcome::Valid);
    store_a.sync(&a, a.take_dirty()).await.expect("a writes");
    let store_b = SharedStats::new(&secret(&url), "replica-b").expect("store");
    store_b.sync(&b, b.take_dirty()).await.expect("b reads");
    assert_eq!(calls(&b), 4, "b sees what a learned");
    // b learns more; a sees it at its next flush; nobody double counts.
    observe(&b, 2, CallOutcome::Failed);
    store_b.sync(&b, b.take_dirty()).await.expect("b writes");
    store_a.sync(&a, a.take_dirty()).await.expect("a refreshes");
    store_b.sync(&b, b.take_dirty()).await.expect("b refreshes");
    assert_eq!((calls(&a), calls(&b)), (6, 6));
    let merged = read_merged(&secret(&url), &Learner::default())
        .await
        .expect("read");
    assert_eq!(merged[0].1.calls, 6);
    assert_eq!(merged[0].1.passed, 4);
}

#[tokio::test]
async fn replicas_writing_concurrently_lose_nothing() {
    let url = database().await;
    let replicas: Vec<_> = (0..3)
        .map(|i| {
            (
                Arc::new(Learner::default()),
                Arc::new(SharedStats::new(&secret(&url), &format!("r{i}")).expect("store")),
            )
        })
        .collect();
    let mut tasks = Vec::new();
    for (learner, store) in &replicas {
        let (learner, store) = (learner.clone(), store.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                observe(&learner, 7, CallOutcome::Valid);
                store
                    .sync(&learner, learner.take_dirty())
                    .await
                    .expect("sync");
            }
        }));
    }
    for t in tasks {
        t.await.expect("replica");
    }
    for (learner, store) in &replicas {
        store
            .sync(learner, learner.take_dirty())
            .await
            .expect("sync");
        assert_eq!(calls(learner), 210, "3 replicas × 10 rounds × 7 calls");
    }
    let merged = read_merged(&secret(&url), &Learner::default())
        .await
        .expect("read");
    assert_eq!(merged[0].1.calls, 210);
}

#[tokio::test]
async fn a_database_down_at_start_and_mid_run_is_caught_up_without_loss() {
    let url = database().await;
    let switch = TcpSwitch::start(true).await;
    let learner = Learner::default();
    let store = SharedStats::new(&secret(&switch.url(&url)), "replica-a").expect("store");
    observe(&learner, 3, CallOutcome::Valid);
    let err = store
        .sync(&learner, learner.take_dirty())
        .await
        .expect_err("down at start");
    assert!(!err.to_string().contains("pw-unit-test-secret"), "{err}");
    assert_eq!(calls(&learner), 3, "still counted in memory");
    assert_eq!(learner.pending(), 1, "kept for the next flush");
    switch.set_down(false);
    store
        .sync(&learner, learner.take_dirty())
        .await
        .expect("caught up");
    // Down mid-run: live connections cut, new ones refused.
    switch.set_down(true);
    observe(&learner, 2, CallOutcome::Failed);
    store
        .sync(&learner, learner.take_dirty())
        .await
        .expect_err("down mid-run");
    observe(&learner, 1, CallOutcome::Valid);
    switch.set_down(false);
    store
        .sync(&learner, learner.take_dirty())
        .await
        .expect("caught up again");
    let merged = read_merged(&secret(&url), &Learner::default())
        .await
        .expect("read");
    assert_eq!(merged[0].1.calls, 6, "every observation reached the store");
    assert_eq!(calls(&learner), 6, "and none was counted twice here");
}

#[tokio::test]
async fn a_restarted_replica_with_the_same_worker_id_keeps_its_own_row() {
    let url = database().await;
    let first = Learner::default();
    let store = SharedStats::new(&secret(&url), "fixed-id").expect("store");
    observe(&first, 5, CallOutcome::Valid);
    store.sync(&first, first.take_dirty()).await.expect("write");
    // The next life observes before its first flush.
    let second = Learner::default();
    observe(&second, 1, CallOutcome::Valid);
    let store = SharedStats::new(&secret(&url), "fixed-id").expect("store");
    store
        .sync(&second, second.take_dirty())
        .await
        .expect("load");
    assert_eq!(calls(&second), 6);
    let merged = read_merged(&secret(&url), &Learner::default())
        .await
        .expect("read");
    assert_eq!(merged[0].1.calls, 6, "the row holds both lives");
}

/// A replica that observed calls before its first successful read (the database was down, or
/// the first flush came late) and whose key other replicas already wrote: its own row must hold
/// its calls. Before, it wrote `total − others` over figures taken before the others' part was
/// added — 0 — and its calls were lost from the store until it observed that key again.
#[tokio::test]
async fn calls_observed_before_the_first_read_reach_the_own_row() {
    let url = database().await;
    let a = Learner::default();
    let store_a = SharedStats::new(&secret(&url), "early-a").expect("store");
    observe(&a, 4, CallOutcome::Valid);
    store_a.sync(&a, a.take_dirty()).await.expect("a writes");

    let b = Learner::default();
    observe(&b, 2, CallOutcome::Failed);
    let store_b = SharedStats::new(&secret(&url), "early-b").expect("store");
    store_b
        .sync(&b, b.take_dirty())
        .await
        .expect("b's first read and write");
    assert_eq!(calls(&b), 6, "b: its 2 and a's 4");
    let merged = read_merged(&secret(&url), &Learner::default())
        .await
        .expect("read");
    assert_eq!(merged[0].1.calls, 6, "b's 2 calls are in its row");
    assert_eq!(merged[0].1.passed, 4);
}
