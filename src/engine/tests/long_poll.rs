//! Long polling: waking on new tasks, timeouts, retry timeouts, limits, shutdown.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::{Api, amount};
use crate::engine::{Engine, EngineOptions};

fn poll(timeout: i64) -> Value {
    json!({"workerId": "w", "maxTasks": 5, "asyncResponseTimeout": timeout,
           "topics": [{"topicName": "check", "lockDuration": 10_000}]})
}

async fn until_pending(engine: &Engine, n: u64) {
    while engine.stats().long_polls_pending < n {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_pending_poll_answers_as_soon_as_an_instance_creates_a_task() {
    let api = std::sync::Arc::new(Api::new());
    api.deploy_order("order").await;
    let started = Instant::now();
    let poller = {
        let api = std::sync::Arc::clone(&api);
        tokio::spawn(async move { api.post("/external-task/fetchAndLock", poll(60_000)).await })
    };
    until_pending(&api.engine, 1).await;
    api.start("order", amount(1)).await;
    let answer = poller.await.expect("poll task");
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body.as_array().map(Vec::len), Some(1));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "woke at once, not after a recheck"
    );
    assert_eq!(api.engine.stats().long_polls_pending, 0);
}

#[tokio::test(start_paused = true)]
async fn an_idle_poll_answers_empty_at_its_timeout() {
    let api = Api::new();
    let started = Instant::now();
    let a = api.post("/external-task/fetchAndLock", poll(2_000)).await;
    assert_eq!(a.body, json!([]));
    assert!(started.elapsed() >= Duration::from_millis(2_000));
    assert!(started.elapsed() < Duration::from_millis(2_100));
}

#[tokio::test(start_paused = true)]
async fn a_task_back_from_its_retry_timeout_is_seen_at_the_next_recheck_not_at_once() {
    // Camunda wakes pending polls when a task is created or unlocked; a retry timeout running
    // out is noticed only at the periodic re-check (30 s by default) or by the next poll.
    let api = Api::new();
    api.deploy_order("order").await;
    api.start("order", amount(1)).await;
    let task = api.fetch_one("w0", "check").await;
    api.post(
        &format!("/external-task/{task}/failure"),
        json!({"workerId": "w0", "retries": 2, "retryTimeout": 3_000}),
    )
    .await;
    let started = Instant::now();
    let a = api.post("/external-task/fetchAndLock", poll(60_000)).await;
    assert_eq!(a.body[0]["id"], task.as_str());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(30) && waited < Duration::from_millis(30_100),
        "found at the 30 s re-check: {waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_unlocked_task_wakes_a_pending_poll_at_once() {
    let api = std::sync::Arc::new(Api::new());
    api.deploy_order("order").await;
    api.start("order", amount(1)).await;
    let task = api.fetch_one("w0", "check").await;
    let pending = {
        let api = std::sync::Arc::clone(&api);
        tokio::spawn(async move { api.post("/external-task/fetchAndLock", poll(60_000)).await })
    };
    until_pending(&api.engine, 1).await;
    let started = Instant::now();
    api.post(&format!("/external-task/{task}/unlock"), json!({}))
        .await;
    let answer = pending.await.expect("joined");
    assert_eq!(answer.body[0]["id"], task.as_str());
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "woken by the unlock"
    );
}

#[tokio::test]
async fn a_timeout_above_30_minutes_is_refused() {
    let api = Api::new();
    let a = api
        .post("/external-task/fetchAndLock", poll(1_800_001))
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.body["type"], "InvalidRequestException");
}

#[tokio::test(start_paused = true)]
async fn more_than_200_pending_polls_are_refused_with_500() {
    let api = std::sync::Arc::new(Api::new());
    let mut polls = Vec::new();
    for _ in 0..200 {
        let api = std::sync::Arc::clone(&api);
        polls.push(tokio::spawn(async move {
            api.post("/external-task/fetchAndLock", poll(60_000)).await
        }));
    }
    until_pending(&api.engine, 200).await;
    let refused = api.post("/external-task/fetchAndLock", poll(60_000)).await;
    assert_eq!(refused.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        refused.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("too many requests"))
    );
    for p in polls {
        assert_eq!(p.await.expect("poll").body, json!([]));
    }
}

#[tokio::test]
async fn shutdown_answers_pending_polls_with_500() {
    let running = Engine::start_local(EngineOptions {
        quiet: true,
        ..Default::default()
    })
    .await
    .expect("bind");
    let url = format!("{}/external-task/fetchAndLock", running.url);
    let poller = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .json(&poll(60_000))
            .send()
            .await
    });
    while running.engine.stats().long_polls_pending < 1 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    running.stop().await;
    let resp = poller.await.expect("join").expect("answered");
    assert_eq!(resp.status(), reqwest::StatusCode::INTERNAL_SERVER_ERROR);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(
        body["message"],
        "Request rejected due to shutdown of application server."
    );
}

#[tokio::test]
async fn the_engine_serves_over_tcp() {
    let running = Engine::start_local(EngineOptions {
        quiet: true,
        ..Default::default()
    })
    .await
    .expect("bind");
    let resp = reqwest::get(format!("{}/engine", running.url))
        .await
        .expect("get");
    assert_eq!(
        resp.json::<Value>().await.expect("json"),
        json!([{"name": "default"}])
    );
    let stats: Value = reqwest::get(format!("{}/_procos/stats", running.url))
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(stats["requests"], 1);
    running.stop().await;
}
