//! The admin router driven in memory (no socket): the token, readiness and the status document.

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use tower::ServiceExt;

use super::*;
use crate::config::stamp::ConfigStamp;
use crate::manager::status::ManagerStatus;

const SECRET: &str = "adm-9f3c1e2d7b";

fn config(admin: &str) -> FileConfig {
    let yaml = format!(
        "camunda:\n  url: http://engine.example:8080/engine-rest\npde_manager:\n  pools:\n    gp: {{ instances: 1, endpoints: [n], max_concurrent_tasks: 2 }}\ntopics:\n  t: {{ pool: gp, endpoints: [n] }}\nendpoints:\n  n: {{ type: noop }}\n{admin}"
    );
    crate::config::load_str(&yaml, Path::new("pde.yaml"), &|k: &str| {
        (k == "ADMIN_TOKEN").then(|| SECRET.to_string())
    })
    .expect("valid config")
}

fn state(config: &FileConfig) -> Arc<AdminState> {
    let (_tx, stamp) = tokio::sync::watch::channel(ConfigStamp::new(1, "x"));
    AdminState::new(
        config,
        Parts {
            worker_id: "w-1".into(),
            stamp,
            health: Arc::default(),
            learner: Arc::default(),
            manager: ManagerStatus::default(),
            shutdown: CancellationToken::new(),
        },
    )
}

async fn get(
    state: &Arc<AdminState>,
    uri: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, Response) {
    let mut request = Request::get(uri);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = router(state.clone())
        .oneshot(request.body(Body::empty()).expect("request"))
        .await
        .expect("answered");
    (response.status(), response)
}

async fn body(response: Response) -> String {
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    String::from_utf8(bytes.to_vec()).expect("utf-8")
}

#[tokio::test]
async fn with_a_token_only_the_probes_are_open() {
    let s = state(&config("admin:\n  token: ${ADMIN_TOKEN}\n"));
    for open in ["/healthz", "/readyz"] {
        let (status, _) = get(&s, open, &[]).await;
        assert_ne!(status, StatusCode::UNAUTHORIZED, "{open} is open");
    }
    for closed in ["/", "/api/status", "/metrics"] {
        let (status, r) = get(&s, closed, &[]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{closed} needs the token");
        assert_eq!(r.headers()[header::WWW_AUTHENTICATE], "Bearer");
        let (status, _) = get(&s, closed, &[("authorization", "Bearer wrong")]).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{closed} refuses a wrong one"
        );
        let bearer = format!("Bearer {SECRET}");
        let (status, _) = get(&s, closed, &[("authorization", &bearer)]).await;
        assert_eq!(status, StatusCode::OK, "{closed} with the token");
    }
}

#[tokio::test]
async fn a_browser_trades_the_query_token_for_a_cookie_and_leaves_it_out_of_the_address() {
    let s = state(&config("admin:\n  token: ${ADMIN_TOKEN}\n"));
    let (status, r) = get(&s, &format!("/?token={SECRET}"), &[]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[header::LOCATION], "/");
    let cookie = r.headers()[header::SET_COOKIE]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().expect("name=value");
    let (status, _) = get(&s, "/api/status", &[("cookie", pair)]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = get(&s, "/?token=nope", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn readyz_says_what_it_waits_for_until_everything_is_up_and_again_when_draining() {
    let s = state(&config(""));
    let reason = |s: Arc<AdminState>| async move {
        let (status, r) = get(&s, "/readyz", &[]).await;
        let v: serde_json::Value = serde_json::from_str(&body(r).await).expect("json");
        (status, v["reason"].as_str().unwrap_or_default().to_string())
    };
    let (status, why) = reason(s.clone()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(why.contains("engine"), "{why}");
    s.readiness().engine_answered();
    assert!(reason(s.clone()).await.1.contains("deploy"));
    s.readiness().deployed();
    assert!(reason(s.clone()).await.1.contains("fetch loop"));
    s.readiness().fetching(true);
    assert_eq!(reason(s.clone()).await.0, StatusCode::OK);
    s.shutdown.cancel();
    let (status, why) = reason(s.clone()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(why.contains("shutting down"), "{why}");
    assert_eq!(
        get(&s, "/healthz", &[]).await.0,
        StatusCode::OK,
        "still alive"
    );
}

#[tokio::test]
async fn the_status_names_endpoints_and_failures_but_never_the_token() {
    let cfg = config("admin:\n  token: ${ADMIN_TOKEN}\n");
    let s = state(&cfg);
    let events = TaskEvents::default();
    let tracker = TaskTracker::new();
    let stop = CancellationToken::new();
    s.collect(&events, &tracker, stop.clone());
    events.send(crate::telemetry::events::TaskEvent {
        task_id: "task-42".into(),
        topic: "t".into(),
        process_instance_id: Some("pi-7".into()),
        process_definition_key: Some("p".into()),
        outcome: "incident",
        endpoint: Some("n".into()),
        error_class: Some("http_503".into()),
        error_message: Some("HTTP 503".into()),
        duration: std::time::Duration::from_millis(12),
        at: SystemTime::now(),
    });
    let bearer = format!("Bearer {SECRET}");
    let mut doc = serde_json::Value::Null;
    for _ in 0..100 {
        let (_, r) = get(&s, "/api/status", &[("authorization", &bearer)]).await;
        let text = body(r).await;
        assert!(!text.contains(SECRET), "the token leaked: {text}");
        doc = serde_json::from_str(&text).expect("json");
        if doc["recent_failures"]
            .as_array()
            .is_some_and(|f| !f.is_empty())
        {
            break;
        }
        tokio::task::yield_now().await;
    }
    let f = &doc["recent_failures"][0];
    assert_eq!(f["task_id"], "task-42");
    assert_eq!(
        f["cockpit_url"],
        "http://engine.example:8080/camunda/app/cockpit/default/#/process-instance/pi-7/runtime"
    );
    assert_eq!(doc["endpoints"][0]["name"], "n");
    assert_eq!(doc["endpoints"][0]["light"], "green");
    assert_eq!(doc["config"]["version"], 1);
    assert_eq!(doc["worker_id"], "w-1");
    assert_eq!(doc["tasks"]["not_completed"], 1);
    stop.cancel();
}

/// `/api/status` lists the endpoints of the config in force: one a reload adds shows, one it
/// removes goes. Before, the list stayed as at start-up while pools and topics followed.
#[tokio::test]
async fn the_status_lists_the_endpoints_a_reload_added() {
    use crate::manager::{Manager, build_endpoints};
    let cfg = config("");
    let camunda = crate::camunda::CamundaClient::new(crate::camunda::ClientSettings {
        url: cfg.camunda.url.clone(),
        auth: None,
        worker_id: "w-1".into(),
        request_timeout: std::time::Duration::from_secs(1),
    })
    .expect("client");
    let cx = crate::endpoints::BuildContext::default();
    let manager = Manager::new(
        &cfg,
        camunda,
        &build_endpoints(&cfg, &cx).expect("endpoints"),
        crate::journal::Journal::in_memory(std::time::Duration::from_secs(60)),
        Arc::default(),
    )
    .expect("manager");
    let (_tx, stamp) = tokio::sync::watch::channel(ConfigStamp::new(1, "x"));
    let s = AdminState::new(
        &cfg,
        Parts {
            worker_id: "w-1".into(),
            stamp,
            health: cx.health().clone(),
            learner: Arc::default(),
            manager: manager.status(),
            shutdown: CancellationToken::new(),
        },
    );
    let names = |doc: &serde_json::Value| -> Vec<String> {
        doc["endpoints"]
            .as_array()
            .expect("a list")
            .iter()
            .map(|e| e["name"].as_str().expect("a name").to_string())
            .collect()
    };
    assert_eq!(names(&status::build(&s)), vec!["n"]);

    let yaml = "camunda:\n  url: http://engine.example:8080/engine-rest\npde_manager:\n  pools:\n    gp: { instances: 1, endpoints: [m], max_concurrent_tasks: 2 }\ntopics:\n  t: { pool: gp, endpoints: [m] }\nendpoints:\n  m: { type: noop, delay: 1s }\n";
    let reloaded =
        crate::config::load_str(yaml, Path::new("pde.yaml"), &|_| None).expect("valid config");
    manager
        .handle()
        .apply(
            &reloaded,
            &build_endpoints(&reloaded, &cx).expect("endpoints"),
            &Default::default(),
        )
        .expect("applied");
    let doc = status::build(&s);
    assert_eq!(names(&doc), vec!["m"], "{doc:#}");
    assert_eq!(doc["endpoints"][0]["kind"], "noop");
}
