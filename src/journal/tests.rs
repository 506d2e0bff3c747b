use std::time::Duration;

use super::*;
use crate::camunda::VariableMap;

const LOCK: Duration = Duration::from_secs(30);

fn complete() -> Report {
    Report::Complete {
        variables: VariableMap::new(),
        local_variables: VariableMap::new(),
    }
}

fn failure(retries: i32) -> Report {
    Report::Failure {
        message: "boom".into(),
        details: "boom".into(),
        retries,
        retry_timeout: Duration::ZERO,
    }
}

fn run(claim: Claim) -> Running {
    match claim {
        Claim::Run(r) => r,
        other => panic!("expected Run, got {other:?}"),
    }
}

/// Reopens a journal dir; the writer thread of a dropped journal may still hold the file for a
/// moment after its last commit.
async fn reopen(dir: &Path) -> Journal {
    for _ in 0..100 {
        match Journal::open(dir, Duration::from_secs(3600), "w-new") {
            Ok(j) => return j,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    panic!("journal did not reopen");
}

#[tokio::test]
async fn a_task_fetched_again_after_its_outcome_was_taken_is_not_run_twice() {
    // Defect 1: the lock lapsed while `complete` was slow, a fetch re-locked the task, and its
    // reply arrived after the first run had finished.
    let j = Journal::in_memory(Duration::from_secs(3600));
    let first = run(j.claim("t1", None, LOCK));
    assert!(matches!(j.claim("t1", None, LOCK), Claim::AlreadyRunning));
    j.pending("t1", None, "topic", &complete()).await.unwrap();
    j.settle("t1", Settled::Accepted);
    drop(first);
    assert!(matches!(j.claim("t1", None, LOCK), Claim::Finished));
}

#[tokio::test]
async fn an_outcome_the_engine_has_not_taken_is_sent_again_instead_of_a_second_run() {
    let j = Journal::in_memory(Duration::from_secs(3600));
    let first = run(j.claim("t1", Some(3), LOCK));
    j.pending("t1", Some(3), "topic", &failure(2))
        .await
        .unwrap();
    drop(first);
    assert_eq!(j.unsettled(), vec!["t1".to_string()]);
    let claimed = j.claim_pending("t1").expect("pending");
    assert_eq!(
        (claimed.retries, claimed.report.clone()),
        (Some(3), failure(2))
    );
    assert!(
        matches!(j.claim("t1", Some(3), LOCK), Claim::AlreadyRunning),
        "a fetch waits for the re-sender"
    );
    drop(claimed);
    match j.claim("t1", Some(3), LOCK) {
        Claim::Resend(_, report) => assert_eq!(report, failure(2)),
        other => panic!("expected Resend, got {other:?}"),
    }
    // Refused (another worker holds it) is kept for a re-delivery of the same attempt.
    j.settle("t1", Settled::Refused);
    assert!(j.unsettled().is_empty(), "a refused report is not re-sent");
    assert!(matches!(j.claim("t1", Some(3), LOCK), Claim::Resend(..)));
}

#[tokio::test]
async fn a_retry_after_a_reported_failure_runs_but_a_stale_copy_of_the_attempt_does_not() {
    let j = Journal::in_memory(Duration::from_secs(3600));
    let first = run(j.claim("t1", None, LOCK));
    j.pending("t1", None, "topic", &failure(2)).await.unwrap();
    j.settle("t1", Settled::Accepted);
    drop(first);
    assert!(
        matches!(j.claim("t1", None, LOCK), Claim::Finished),
        "the same attempt, delivered late"
    );
    drop(run(j.claim("t1", Some(2), LOCK)));
    // Once a lock has passed, the same retries count is an operator's retry (e.g. after an
    // incident): it runs.
    let j = Journal::in_memory(Duration::from_secs(3600));
    let first = run(j.claim("t2", Some(1), Duration::ZERO));
    j.pending("t2", Some(1), "topic", &failure(0))
        .await
        .unwrap();
    j.settle("t2", Settled::Accepted);
    drop(first);
    tokio::time::sleep(Duration::from_millis(5)).await;
    drop(run(j.claim("t2", Some(1), Duration::ZERO)));
}

#[tokio::test]
async fn outcomes_and_side_effect_marks_survive_a_restart_and_so_does_the_worker_id() {
    let dir = tempfile::tempdir().unwrap();
    {
        let j = Journal::open(dir.path(), Duration::from_secs(3600), "w-old").unwrap();
        assert_eq!(j.worker_id(), Some("w-old"));
        let a = run(j.claim("sent", None, LOCK));
        j.pending("sent", None, "topic", &complete()).await.unwrap();
        j.settle("sent", Settled::Accepted);
        let b = run(j.claim("unsent", None, LOCK));
        j.pending("unsent", None, "topic", &complete())
            .await
            .unwrap();
        let c = run(j.claim("mailing", None, LOCK));
        j.started("mailing", None, "topic", "smtp").await.unwrap();
        // A crash: dropping the marks writes nothing, so the file is as a killed process left it.
        drop((a, b, c));
    }
    let j = reopen(dir.path()).await;
    assert_eq!(j.worker_id(), Some("w-old"), "the identity is kept");
    assert!(matches!(j.claim("sent", None, LOCK), Claim::Finished));
    assert_eq!(j.unsettled(), vec!["unsent".to_string()]);
    match j.claim("mailing", None, LOCK) {
        Claim::Interrupted(_, endpoint) => assert_eq!(endpoint, "smtp"),
        other => panic!("expected Interrupted, got {other:?}"),
    }
}

#[tokio::test]
async fn a_second_process_on_the_same_state_dir_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Journal::open(dir.path(), Duration::from_secs(3600), "w").unwrap();
    let err = Journal::open(dir.path(), Duration::from_secs(3600), "w").unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&dir.path().display().to_string()) && text.contains("another procos"),
        "{text}"
    );
}

#[tokio::test]
async fn settled_entries_expire_after_the_retention_window_pending_ones_do_not() {
    let dir = tempfile::tempdir().unwrap();
    {
        let j = Journal::open(dir.path(), Duration::ZERO, "w").unwrap();
        for i in 0..50 {
            let id = format!("t{i}");
            let r = run(j.claim(&id, None, LOCK));
            j.pending(&id, None, "topic", &complete()).await.unwrap();
            if i > 0 {
                j.settle(&id, Settled::Accepted);
            }
            drop(r);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(j.sweep(), 49);
        assert_eq!(j.len(), 1, "the unacknowledged one stays");
        // Make the sweep's removals durable before the journal goes away.
        j.pending("t0", None, "topic", &complete()).await.unwrap();
    }
    let j = reopen(dir.path()).await;
    assert_eq!(j.len(), 1, "the file is bounded too");
}

#[tokio::test]
async fn the_journaled_outcome_of_a_task_with_side_effects_is_sent_again_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let j = Journal::open(dir.path(), Duration::from_secs(3600), "w").unwrap();
        let r = run(j.claim("mail", None, LOCK));
        j.started("mail", None, "topic", "smtp").await.unwrap();
        j.pending("mail", None, "topic", &complete()).await.unwrap();
        drop(r);
    }
    let j = reopen(dir.path()).await;
    assert!(matches!(j.claim("mail", None, LOCK), Claim::Resend(..)));
}

#[tokio::test]
async fn a_new_state_dir_is_readable_by_the_procos_user_alone() {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("state");
    let _j = Journal::open(&dir, Duration::from_secs(60), "w").unwrap();
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{mode:o}");
}

/// A busy journal is mostly acknowledged entries waiting out the retention window (100k tasks
/// in 5 min is 100k entries): each must stay small — the report is boxed and dropped once
/// acknowledged, the call is an enum. (With the report inline and the call a String, an entry
/// was 128 bytes before its id, its topic's and its call's heap blocks.)
#[test]
fn an_acknowledged_entry_stays_small() {
    let size = std::mem::size_of::<Entry>();
    assert!(size <= 80, "an Entry is {size} bytes");
}

/// Journals written before `Call` was an enum hold the call as its name; they still read, and
/// are written the same way.
#[test]
fn acknowledged_calls_read_and_write_as_their_names() {
    for call in ["complete", "bpmn_error", "failure", "gone"] {
        let stored = serde_json::json!({
            "retries": 2, "topic": "t", "at_ms": 1, "side_effects": false,
            "state": {"state": "acknowledged", "call": call},
        });
        let entry: Entry = serde_json::from_value(stored.clone()).expect(call);
        assert_eq!(serde_json::to_value(&entry).unwrap(), stored, "{call}");
    }
}
