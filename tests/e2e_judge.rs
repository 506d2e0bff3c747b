//! `output.validator` end to end (issue 9, section 3): the real binary, the in-repo engine and two
//! python scripts — a writer that corrects itself from `feedback`, and a judge that fails its
//! first answer. The task completes with the second answer, and the judge's reason is logged.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{config, stage};

/// Answers a draft, or — given feedback — a corrected summary that quotes it.
const WRITER: &str = r#"import json, sys
task = json.load(sys.stdin)
feedback = task.get("feedback")
if feedback:
    print(json.dumps({"summary": "fixed after: " + feedback}))
else:
    print(json.dumps({"summary": "draft"}))
"#;

/// Judges `result` (beside the task's variables): only a corrected summary passes.
const JUDGE: &str = r#"import json, sys
task = json.load(sys.stdin)
summary = task["variables"]["result"]["summary"]
topic = task["variables"]["subject"]
if summary.startswith("fixed"):
    print(json.dumps({"pass": True, "score": 0.875, "reason": "names " + topic}))
else:
    print(json.dumps({"pass": False, "score": 0.25, "reason": "the draft does not name " + topic}))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_judged_bad_is_retried_with_the_reason_and_the_second_completes() {
    let cfg = config(
        "",
        &["writer", "judge"],
        "  summarize:\n    pool: gp\n    endpoints: [writer]\n    output:\n      attempts: 2\n      mapping: { summary: /summary }\n      checks: [{ pointer: /summary, min_length: 1, max_length: 200 }]\n      validator: judge\n",
        "  writer: { type: python, script: writer.py }\n  judge: { type: python, script: judge.py, pure: true }\n",
    );
    let s = stage(&cfg, "judged_p", "summarize").await;
    s.work.script("writer.py", WRITER);
    s.work.script("judge.py", JUDGE);

    let pi = s
        .rest
        .start("judged_p", json!({"subject": "the invoice"}))
        .await;
    let vars = s.rest.wait_ended(&pi, Duration::from_secs(30)).await;
    assert_eq!(s.rest.state(&pi).await, "COMPLETED");
    assert_eq!(
        vars.get("summary"),
        Some(&json!("fixed after: the draft does not name the invoice")),
        "the second answer, written from the judge's reason: {vars:?}"
    );

    s.procos
        .wait_log("Task finished.", Duration::from_secs(10))
        .await;
    let logs = s.procos.log_json();
    let rejected = logs
        .iter()
        .find(|l| l["message"] == "Result judged invalid.")
        .unwrap_or_else(|| panic!("no judgement logged: {logs:#?}"));
    assert_eq!(
        rejected["reason"],
        json!("the draft does not name the invoice")
    );
    let finished = logs
        .iter()
        .find(|l| l["message"] == "Task finished.")
        .expect("a final line");
    assert_eq!(finished["judge_score"], json!(0.875), "{finished}");
    assert_eq!(finished["outcome"], json!("completed"), "{finished}");
}

/// Fails every result.
const STRICT_JUDGE: &str = r#"import json, sys
task = json.load(sys.stdin)
summary = task["variables"]["result"]["summary"]
print(json.dumps({"pass": False, "score": 0.1, "reason": "not good enough: " + summary}))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_judged_bad_every_time_end_in_an_incident_whose_details_list_each_attempt() {
    let cfg = config(
        "",
        &["writer", "judge"],
        "  summarize:\n    pool: gp\n    endpoints: [writer]\n    retries: 1\n    output:\n      attempts: 2\n      validator: judge\n",
        "  writer: { type: python, script: writer.py }\n  judge: { type: python, script: judge.py, pure: true }\n",
    );
    let s = stage(&cfg, "never_good_p", "summarize").await;
    s.work.script("writer.py", WRITER);
    s.work.script("judge.py", STRICT_JUDGE);

    let pi = s.rest.start("never_good_p", json!({"subject": "x"})).await;
    let found = support::eventually(Duration::from_secs(30), || async {
        !s.rest.incidents(&pi).await.is_empty()
    })
    .await;
    assert!(found, "an incident once the only retry is spent");
    let task = &s
        .rest
        .get(&format!("/external-task?processInstanceId={pi}"))
        .await[0];
    let details = s
        .rest
        .text(&format!(
            "/external-task/{}/errorDetails",
            task["id"].as_str().unwrap_or_default()
        ))
        .await;
    assert!(
        details.contains("writer (attempt 1)")
            && details.contains("not good enough: draft")
            && details.contains("writer (attempt 2)")
            && details.contains("not good enough: fixed after: not good enough: draft"),
        "every attempt and the judge's reason: {details}"
    );
    assert!(details.contains("validator `judge`"), "{details}");
}
