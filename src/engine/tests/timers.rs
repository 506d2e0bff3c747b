//! Timer events on tokio's paused clock: timer start events (cycles, dates, cron), intermediate
//! timer catch events, timer boundary events, and the `/job` view of them; `${…}` definitions
//! evaluated when the timer is armed.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::{Api, Part};

/// A process around `body` (flow nodes and flows), deployable as `key`.
fn model(key: &str, body: &str) -> String {
    format!(
        r#"<definitions xmlns="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:camunda="http://camunda.org/schema/1.0/bpmn">
  <process id="{key}" isExecutable="true" camunda:historyTimeToLive="P1D">
{body}
  </process>
</definitions>"#
    )
}

/// A timer start event with `cycle` → external task `work` → end.
fn ticking(key: &str, timer: &str) -> String {
    model(
        key,
        &format!(
            r#"<startEvent id="tick"><timerEventDefinition>{timer}</timerEventDefinition></startEvent>
    <sequenceFlow id="f1" sourceRef="tick" targetRef="work" />
    <serviceTask id="work" camunda:type="external" camunda:topic="work" />
    <sequenceFlow id="f2" sourceRef="work" targetRef="end" />
    <endEvent id="end" />"#
        ),
    )
}

async fn deploy(api: &Api, name: &str, xml: String) -> Value {
    let a = api
        .deploy(&[
            Part::text("deployment-name", name),
            Part::file("data", "m.bpmn", xml),
        ])
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    a.body
}

/// Runs the engine's timer loop for the test.
fn timers(api: &Api) -> tokio_util::sync::DropGuard {
    let token = CancellationToken::new();
    let engine = api.engine.clone();
    let stop = token.clone();
    tokio::spawn(async move { engine.run_timers(stop).await });
    token.drop_guard()
}

/// Moves the paused clock on and lets the timer loop run.
async fn advance(secs: u64) {
    tokio::time::advance(Duration::from_secs(secs)).await;
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

async fn count(api: &Api, path: &str) -> u64 {
    let a = api.get(path).await;
    assert_eq!(a.status, StatusCode::OK, "{path}: {}", a.body);
    a.body["count"].as_u64().expect("count")
}

async fn jobs(api: &Api, query: &str) -> Vec<Value> {
    let a = api.get(&format!("/job{query}")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    a.body.as_array().cloned().unwrap_or_default()
}

#[tokio::test(start_paused = true)]
async fn a_timer_start_cycle_starts_an_instance_per_firing_and_stops_after_r3() {
    let api = Api::new();
    let _loop = timers(&api);
    deploy(
        &api,
        "tick",
        ticking("tick", "<timeCycle>R3/PT10S</timeCycle>"),
    )
    .await;
    let listed = jobs(&api, "?timers=true").await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["processInstanceId"], Value::Null);
    assert_eq!(listed[0]["processDefinitionKey"], "tick");
    assert_eq!(listed[0]["retries"], 3);
    advance(9).await;
    assert_eq!(count(&api, "/history/process-instance/count").await, 0);
    for fired in 1..=3 {
        advance(10).await;
        let started = count(
            &api,
            "/history/process-instance/count?processDefinitionKey=tick",
        )
        .await;
        assert_eq!(started, fired, "after {fired} periods");
    }
    advance(100).await;
    assert_eq!(
        count(&api, "/history/process-instance/count").await,
        3,
        "R3 fires three times"
    );
    assert!(jobs(&api, "").await.is_empty());
    assert_eq!(
        api.fetch("w", "work").await.len(),
        3,
        "each instance waits at its task"
    );
}

#[tokio::test(start_paused = true)]
async fn a_new_version_replaces_the_schedule_and_a_removed_one_takes_it_away() {
    let api = Api::new();
    deploy(
        &api,
        "v1",
        ticking("tick", "<timeCycle>R/PT10S</timeCycle>"),
    )
    .await;
    let v1 = jobs(&api, "").await;
    assert_eq!(v1.len(), 1);
    let d2 = deploy(&api, "v2", ticking("tick", "<timeCycle>R/PT1H</timeCycle>")).await;
    let v2 = jobs(&api, "").await;
    assert_eq!(v2.len(), 1, "the old version's schedule is gone: {v2:?}");
    let v2_def = d2["deployedProcessDefinitions"]
        .as_object()
        .and_then(|m| m.keys().next().cloned())
        .expect("deployed definition");
    assert_eq!(v2[0]["processDefinitionId"], v2_def.as_str());
    assert_ne!(v1[0]["id"], v2[0]["id"]);
    // What deleting the deployment does to the store: its definitions go, so does the schedule.
    let deployment = d2["id"].as_str().expect("id").to_owned();
    api.engine
        .mutate(|s| s.definitions.retain(|d| d.deployment_id != deployment));
    let left = jobs(&api, "").await;
    assert_eq!(left.len(), 1, "v1 is the latest again: {left:?}");
    assert_eq!(left[0]["processDefinitionId"], v1[0]["processDefinitionId"]);
}

#[tokio::test(start_paused = true)]
async fn a_past_time_date_fires_at_once_and_cron_cycles_fire_on_execute() {
    let api = Api::new();
    let _loop = timers(&api);
    deploy(
        &api,
        "once",
        ticking("once", "<timeDate>2020-01-01T00:00:00Z</timeDate>"),
    )
    .await;
    advance(0).await;
    assert_eq!(
        count(
            &api,
            "/history/process-instance/count?processDefinitionKey=once"
        )
        .await,
        1
    );
    assert!(jobs(&api, "?processDefinitionKey=once").await.is_empty());

    deploy(
        &api,
        "cron",
        ticking("cron", "<timeCycle>0 0/5 * * * ?</timeCycle>"),
    )
    .await;
    let cron = jobs(&api, "?processDefinitionKey=cron").await;
    assert_eq!(cron.len(), 1, "{cron:?}");
    let id = cron[0]["id"].as_str().expect("job id");
    let fired = api.post(&format!("/job/{id}/execute"), json!({})).await;
    assert_eq!(fired.status, StatusCode::NO_CONTENT, "{}", fired.body);
    assert_eq!(
        count(
            &api,
            "/history/process-instance/count?processDefinitionKey=cron"
        )
        .await,
        1
    );
    let next = jobs(&api, "?processDefinitionKey=cron").await;
    assert_eq!(next.len(), 1, "the cron schedule goes on");
    assert_ne!(next[0]["id"], cron[0]["id"]);
}

/// start → intermediate timer `wait` (PT30S) → external task `after` → end.
fn waiting() -> String {
    model(
        "wait",
        r#"<startEvent id="s" />
    <sequenceFlow id="f1" sourceRef="s" targetRef="wait" />
    <intermediateCatchEvent id="wait"><timerEventDefinition><timeDuration>PT30S</timeDuration></timerEventDefinition></intermediateCatchEvent>
    <sequenceFlow id="f2" sourceRef="wait" targetRef="after" />
    <serviceTask id="after" camunda:type="external" camunda:topic="after" />
    <sequenceFlow id="f3" sourceRef="after" targetRef="e" />
    <endEvent id="e" />"#,
    )
}

/// Many timers due at once are fired one per hold of the store lock (REST calls get in between),
/// and every one of them fires.
#[tokio::test(start_paused = true)]
async fn timers_due_together_all_fire_one_lock_at_a_time() {
    let api = Api::new();
    let _loop = timers(&api);
    deploy(&api, "wait", waiting()).await;
    for _ in 0..50 {
        api.start("wait", json!({})).await;
    }
    advance(30).await;
    let first = count(&api, "/external-task/count?topicName=after").await;
    assert!(
        (1..50).contains(&first),
        "after 20 yields some fired, not all under one lock: {first}"
    );
    let mut yields = 0;
    while count(&api, "/external-task/count?topicName=after").await < 50 {
        assert!(
            count(&api, "/job/count").await > 0,
            "a REST call answers between two firings"
        );
        tokio::task::yield_now().await;
        yields += 1;
        assert!(yields < 1_000, "the timer loop stalled");
    }
    assert_eq!(count(&api, "/job/count").await, 0);
}

#[tokio::test(start_paused = true)]
async fn an_intermediate_timer_holds_the_token_until_it_is_due() {
    let api = Api::new();
    let _loop = timers(&api);
    deploy(&api, "wait", waiting()).await;
    let pi = api.start("wait", json!({})).await;
    let armed = jobs(&api, &format!("?processInstanceId={pi}&activityId=wait")).await;
    assert_eq!(armed.len(), 1, "{armed:?}");
    assert!(armed[0]["executionId"].is_string());
    advance(29).await;
    assert!(api.fetch("w", "after").await.is_empty(), "still waiting");
    advance(1).await;
    let task = api.fetch_one("w", "after").await;
    assert!(jobs(&api, "").await.is_empty());
    assert_eq!(
        api.complete(&task, "w", json!({})).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(api.history_state(&pi).await, "COMPLETED");
}

#[tokio::test]
async fn a_job_fires_on_execute_and_an_unknown_job_answers_404() {
    let api = Api::new();
    deploy(&api, "wait", waiting()).await;
    let pi = api.start("wait", json!({})).await;
    let job = jobs(&api, &format!("?processInstanceId={pi}")).await[0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let one = api.get(&format!("/job/{job}")).await;
    assert_eq!(one.body["processInstanceId"], pi.as_str());
    assert_eq!(
        api.post(&format!("/job/{job}/execute"), json!({}))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.fetch("w", "after").await.len(),
        1,
        "the token moved on at once"
    );
    let again = api.post(&format!("/job/{job}/execute"), json!({})).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert_eq!(
        again.body["message"],
        format!("ENGINE-14026 No job found with id '{job}'")
    );
    assert_eq!(count(&api, "/job/count?messages=true").await, 0);
}

/// External task `slow` with an interrupting boundary timer (PT1M) → user task `late`;
/// normally `slow` → end.
fn guarded(cancel_activity: &str) -> String {
    model(
        "guarded",
        &format!(
            r#"<startEvent id="s" />
    <sequenceFlow id="f1" sourceRef="s" targetRef="slow" />
    <serviceTask id="slow" camunda:type="external" camunda:topic="slow" />
    <boundaryEvent id="timeout" attachedToRef="slow"{cancel_activity}><timerEventDefinition><timeDuration>PT1M</timeDuration></timerEventDefinition></boundaryEvent>
    <sequenceFlow id="f2" sourceRef="slow" targetRef="done" />
    <endEvent id="done" />
    <sequenceFlow id="f3" sourceRef="timeout" targetRef="late" />
    <userTask id="late" name="Chase the order" />
    <sequenceFlow id="f4" sourceRef="late" targetRef="lateEnd" />
    <endEvent id="lateEnd" />"#
        ),
    )
}

#[tokio::test(start_paused = true)]
async fn an_interrupting_boundary_timer_cancels_the_external_task() {
    let api = Api::new();
    let _loop = timers(&api);
    deploy(&api, "guarded", guarded("")).await;
    let pi = api.start("guarded", json!({})).await;
    let task = api.fetch_one("worker", "slow").await;
    advance(60).await;
    let late = api.complete(&task, "worker", json!({})).await;
    assert_eq!(late.status, StatusCode::NOT_FOUND, "{}", late.body);
    let extend = api
        .post(
            &format!("/external-task/{task}/extendLock"),
            json!({"workerId": "worker", "newDuration": 1000}),
        )
        .await;
    assert_eq!(
        extend.status,
        StatusCode::NOT_FOUND,
        "the worker learns the task is gone"
    );
    let tasks = api.get(&format!("/task?processInstanceId={pi}")).await.body;
    assert_eq!(tasks[0]["taskDefinitionKey"], "late", "{tasks}");
    assert_eq!(api.history_state(&pi).await, "ACTIVE");
}

#[tokio::test(start_paused = true)]
async fn completing_in_time_disarms_the_boundary_timer() {
    let api = Api::new();
    let _loop = timers(&api);
    deploy(&api, "guarded", guarded(r#" cancelActivity="true""#)).await;
    let pi = api.start("guarded", json!({})).await;
    assert_eq!(
        count(&api, &format!("/job/count?processInstanceId={pi}")).await,
        1
    );
    let task = api.fetch_one("worker", "slow").await;
    assert_eq!(
        api.complete(&task, "worker", json!({})).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(count(&api, "/job/count").await, 0);
    advance(120).await;
    assert_eq!(api.history_state(&pi).await, "COMPLETED");
    assert_eq!(count(&api, "/task/count").await, 0);
}

#[tokio::test(start_paused = true)]
async fn a_non_interrupting_boundary_timer_branches_and_the_task_goes_on() {
    let api = Api::new();
    let _loop = timers(&api);
    deploy(&api, "guarded", guarded(r#" cancelActivity="false""#)).await;
    let pi = api.start("guarded", json!({})).await;
    let task = api.fetch_one("worker", "slow").await;
    advance(60).await;
    assert_eq!(
        count(&api, &format!("/task/count?processInstanceId={pi}")).await,
        1
    );
    assert_eq!(count(&api, "/job/count").await, 0, "a duration fires once");
    assert_eq!(
        api.complete(&task, "worker", json!({})).await.status,
        StatusCode::NO_CONTENT
    );
    let late = api.get("/task").await.body[0]["id"]
        .as_str()
        .expect("task")
        .to_owned();
    assert_eq!(
        api.post(&format!("/task/{late}/complete"), json!({}))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(api.history_state(&pi).await, "COMPLETED");
}

#[tokio::test]
async fn deleting_an_instance_removes_its_timers() {
    let api = Api::new();
    deploy(&api, "wait", waiting()).await;
    let pi = api.start("wait", json!({})).await;
    assert_eq!(count(&api, "/job/count").await, 1);
    assert_eq!(
        api.call("DELETE", &format!("/process-instance/{pi}"), None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(count(&api, "/job/count").await, 0);
}

#[tokio::test]
async fn timers_the_engine_cannot_run_are_refused_naming_the_element() {
    let api = Api::new();
    let catch = |timer: &str| {
        model(
            "bad",
            &format!(
                r#"<startEvent id="s" />
    <sequenceFlow id="f1" sourceRef="s" targetRef="t1" />
    <intermediateCatchEvent id="t1"><timerEventDefinition>{timer}</timerEventDefinition></intermediateCatchEvent>
    <sequenceFlow id="f2" sourceRef="t1" targetRef="e" />
    <endEvent id="e" />"#
            ),
        )
    };
    let boundary_on_gateway = model(
        "bad",
        r#"<startEvent id="s" />
    <sequenceFlow id="f1" sourceRef="s" targetRef="gw" />
    <exclusiveGateway id="gw" />
    <boundaryEvent id="b1" attachedToRef="gw"><timerEventDefinition><timeDuration>PT1S</timeDuration></timerEventDefinition></boundaryEvent>
    <sequenceFlow id="f2" sourceRef="gw" targetRef="e" />
    <sequenceFlow id="f3" sourceRef="b1" targetRef="e" />
    <endEvent id="e" />"#,
    );
    let cases = [
        (
            catch("<timeDuration>${wait +}</timeDuration>"),
            "t1",
            "Error parsing",
        ),
        (
            ticking("bad", "<timeCycle>${every}</timeCycle>"),
            "tick",
            "Cannot resolve identifier 'every'",
        ),
        (
            ticking("bad", "<timeCycle>${'hourly'}</timeCycle>"),
            "tick",
            "cron",
        ),
        (catch("<timeCycle>R/PT1S</timeCycle>"), "t1", "timeCycle"),
        (catch("<timeDuration>soon</timeDuration>"), "t1", "ISO 8601"),
        (catch(""), "t1", "exactly one"),
        (
            guarded(r#" cancelActivity="maybe""#),
            "timeout",
            "cancelActivity",
        ),
        (boundary_on_gateway, "b1", "must be attached"),
        (
            ticking("bad", "<timeCycle>every monday</timeCycle>"),
            "tick",
            "cron",
        ),
    ];
    for (xml, element, says) in cases {
        let a = api.deploy(&[Part::file("data", "bad.bpmn", xml)]).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{element}: {}", a.body);
        let error = &a.body["details"]["bad.bpmn"]["errors"][0];
        assert_eq!(error["mainBpmnElementId"], element, "{}", a.body);
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{element}: {message}");
    }
}

/// A 5 s timer, then a gateway whose only flow needs `go`: with `go = false` the timer's job
/// fails (ENGINE-02004, no outgoing flow) every time it fires.
fn stuck() -> String {
    model(
        "stuck",
        r#"<startEvent id="s" />
    <sequenceFlow id="f1" sourceRef="s" targetRef="wait" />
    <intermediateCatchEvent id="wait"><timerEventDefinition><timeDuration>PT5S</timeDuration></timerEventDefinition></intermediateCatchEvent>
    <sequenceFlow id="f2" sourceRef="wait" targetRef="gw" />
    <exclusiveGateway id="gw" />
    <sequenceFlow id="f3" sourceRef="gw" targetRef="e"><conditionExpression>${go}</conditionExpression></sequenceFlow>
    <endEvent id="e" />"#,
    )
}

#[tokio::test(start_paused = true)]
async fn a_failing_timer_job_is_tried_three_times_then_kept_with_its_error() {
    let api = Api::new();
    let _loop = timers(&api);
    deploy(&api, "stuck", stuck()).await;
    let pi = api
        .start("stuck", json!({"go": {"value": false, "type": "Boolean"}}))
        .await;
    advance(5).await;
    let failed = jobs(&api, "?withException=true").await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["retries"], 0);
    assert_eq!(failed[0]["failedActivityId"], "wait");
    let message = failed[0]["exceptionMessage"].as_str().unwrap_or_default();
    assert!(message.contains("ENGINE-02004"), "{message}");
    assert_eq!(count(&api, "/job/count?executable=true").await, 0);
    // Out of retries: a failedJob incident an operator sees, as Camunda raises one.
    let incidents = api
        .get(&format!(
            "/incident?processInstanceId={pi}&incidentType=failedJob"
        ))
        .await
        .body;
    assert_eq!(
        incidents[0]["configuration"], failed[0]["id"],
        "{incidents}"
    );
    assert_eq!(incidents[0]["activityId"], "wait");
    assert!(
        incidents[0]["incidentMessage"]
            .as_str()
            .is_some_and(|m| m.contains("ENGINE-02004")),
        "{incidents}"
    );
    advance(60).await;
    assert_eq!(
        api.history_state(&pi).await,
        "ACTIVE",
        "the token still waits"
    );
    let job = failed[0]["id"].as_str().expect("job id");
    let set = api
        .call(
            "PUT",
            &format!("/job/{job}/retries"),
            Some(json!({"retries": 1})),
        )
        .await;
    assert_eq!(set.status, StatusCode::NO_CONTENT, "{}", set.body);
    assert_eq!(
        count(&api, "/incident/count").await,
        0,
        "retries given back resolve the incident"
    );
}

#[tokio::test(start_paused = true)]
async fn a_non_interrupting_cycle_on_a_boundary_fires_each_period_while_the_task_waits() {
    let api = Api::new();
    let _loop = timers(&api);
    let reminding = guarded(r#" cancelActivity="false""#).replace(
        "<timeDuration>PT1M</timeDuration>",
        "<timeCycle>R2/PT1M</timeCycle>",
    );
    deploy(&api, "guarded", reminding).await;
    let pi = api.start("guarded", json!({})).await;
    let task = api.fetch_one("worker", "slow").await;
    advance(60).await;
    assert_eq!(count(&api, "/task/count").await, 1, "first reminder");
    assert_eq!(count(&api, "/job/count").await, 1, "armed again");
    advance(60).await;
    assert_eq!(count(&api, "/task/count").await, 2, "second reminder");
    advance(600).await;
    assert_eq!(count(&api, "/task/count").await, 2, "R2: no third one");
    assert_eq!(count(&api, "/job/count").await, 0);
    assert_eq!(
        api.complete(&task, "worker", json!({})).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.history_state(&pi).await,
        "ACTIVE",
        "the reminders still wait"
    );
}

#[tokio::test]
async fn a_failed_job_gets_its_retries_back_and_execute_reports_the_failure() {
    let api = Api::new();
    deploy(&api, "stuck", stuck()).await;
    api.start("stuck", json!({"go": {"value": false, "type": "Boolean"}}))
        .await;
    let job = jobs(&api, "").await[0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let failed = api.post(&format!("/job/{job}/execute"), json!({})).await;
    assert_eq!(
        failed.status,
        StatusCode::NOT_FOUND,
        "Camunda's answer to a failing job"
    );
    assert!(
        failed.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("ENGINE-02004"))
    );
    assert_eq!(jobs(&api, "").await[0]["retries"], 2);
    let set = api
        .call(
            "PUT",
            &format!("/job/{job}/retries"),
            Some(json!({"retries": 5})),
        )
        .await;
    assert_eq!(set.status, StatusCode::NO_CONTENT, "{}", set.body);
    assert_eq!(jobs(&api, "").await[0]["retries"], 5);
    let negative = api
        .call(
            "PUT",
            &format!("/job/{job}/retries"),
            Some(json!({"retries": -1})),
        )
        .await;
    assert_eq!(negative.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        negative.body["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("ENGINE-13054"))
    );
    let unknown = api
        .call("PUT", "/job/nope/retries", Some(json!({"retries": 1})))
        .await;
    assert_eq!(
        unknown.body["message"],
        "ENGINE-13053 No job found with id 'nope'.'"
    );
}

/// The model of [`waiting`] with another definition on the catch event `wait`.
fn waiting_for(timer: &str) -> String {
    waiting().replace("<timeDuration>PT30S</timeDuration>", timer)
}

/// `<timeDuration>${wait}</timeDuration>` is read from the instance's variables when the token
/// arrives; a variable that is missing or no duration fails the start call (500) and leaves
/// nothing behind, as Camunda's PropertyNotFoundException rolls the start back.
#[tokio::test(start_paused = true)]
async fn a_timer_expression_is_evaluated_against_the_instance_when_armed() {
    let api = Api::new();
    let _loop = timers(&api);
    deploy(
        &api,
        "wait",
        waiting_for("<timeDuration>${wait}</timeDuration>"),
    )
    .await;
    let pi = api
        .start(
            "wait",
            json!({"wait": {"value": "PT30S", "type": "String"}}),
        )
        .await;
    let armed = jobs(&api, &format!("?processInstanceId={pi}")).await;
    assert_eq!(armed.len(), 1, "{armed:?}");
    advance(29).await;
    assert!(api.fetch("w", "after").await.is_empty(), "still waiting");
    advance(1).await;
    assert_eq!(api.fetch("w", "after").await.len(), 1, "fired at 30 s");

    let missing = api
        .post("/process-definition/key/wait/start", json!({}))
        .await;
    assert_eq!(
        missing.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        missing.body
    );
    let message = missing.body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("Cannot resolve identifier 'wait'"),
        "{message}"
    );
    let junk = api
        .post(
            "/process-definition/key/wait/start",
            json!({"variables": {"wait": {"value": "soon", "type": "String"}}}),
        )
        .await;
    assert_eq!(
        junk.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        junk.body
    );
    let message = junk.body["message"].as_str().unwrap_or_default();
    assert!(message.contains("ISO 8601"), "{message}");
    assert_eq!(
        count(&api, "/history/process-instance/count").await,
        1,
        "the failed starts left no instance"
    );
    assert!(jobs(&api, "").await.is_empty());
}

/// A composite `timeDate` and a boundary duration built from a Long variable.
#[tokio::test(start_paused = true)]
async fn timer_expressions_compose_text_and_work_on_boundaries() {
    let api = Api::new();
    let _loop = timers(&api);
    deploy(
        &api,
        "wait",
        waiting_for("<timeDate>${year}-01-01T00:00:00Z</timeDate>"),
    )
    .await;
    api.start("wait", json!({"year": {"value": 2000, "type": "Long"}}))
        .await;
    advance(0).await;
    assert_eq!(api.fetch("w", "after").await.len(), 1, "a past date fires");
    let boundary = guarded("").replace(
        "<timeDuration>PT1M</timeDuration>",
        "<timeDuration>PT${secs}S</timeDuration>",
    );
    assert!(boundary.contains("${secs}"), "{boundary}");
    deploy(&api, "guarded", boundary).await;
    let pi = api
        .start("guarded", json!({"secs": {"value": 5, "type": "Long"}}))
        .await;
    advance(4).await;
    assert_eq!(
        jobs(&api, &format!("?processInstanceId={pi}")).await.len(),
        1
    );
    advance(1).await;
    assert!(
        jobs(&api, &format!("?processInstanceId={pi}"))
            .await
            .is_empty(),
        "the boundary fired after 5 s"
    );
}

/// A timer start event's expression sees no variables: evaluated at deploy, scheduled as text.
#[tokio::test(start_paused = true)]
async fn a_timer_start_expression_that_needs_no_variable_schedules_the_cycle() {
    let api = Api::new();
    let _loop = timers(&api);
    deploy(
        &api,
        "tick",
        ticking("tick", "<timeCycle>${'R2/PT10S'}</timeCycle>"),
    )
    .await;
    advance(10).await;
    assert_eq!(count(&api, "/history/process-instance/count").await, 1);
    advance(10).await;
    advance(100).await;
    assert_eq!(
        count(&api, "/history/process-instance/count").await,
        2,
        "R2 fires twice"
    );
}
