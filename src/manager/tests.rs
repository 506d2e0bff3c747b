//! Unit tests of the fetch loop's slot reservation and request shape.

use std::path::Path;

use super::*;
use crate::camunda::ClientSettings;

const CONFIG: &str = r#"
camunda: { url: "http://127.0.0.1:9/engine-rest", long_poll: 20s, max_tasks: 5 }
pde_manager:
  pools:
    gp: { instances: 2, endpoints: [echo], max_concurrent_tasks: 2 }
    io: { instances: 1, endpoints: [echo], max_concurrent_tasks: 4 }
topics:
  a: { pool: gp, endpoints: [echo] }
  b: { pool: io, endpoints: [echo] }
endpoints:
  echo: { type: noop }
"#;

fn manager() -> Manager {
    manager_with(&config(CONFIG)).0
}

fn config(yaml: &str) -> FileConfig {
    crate::config::load_str(yaml, Path::new("test.yaml"), &|_| None).expect("config")
}

/// A manager on `config`, and the endpoints it was built with.
fn manager_with(config: &FileConfig) -> (Manager, BTreeMap<String, Arc<dyn Endpoint>>) {
    let camunda = CamundaClient::new(ClientSettings {
        url: config.camunda.url.clone(),
        auth: None,
        worker_id: "w".into(),
        request_timeout: Duration::from_secs(1),
    })
    .expect("client");
    let endpoints =
        build_endpoints(config, &crate::endpoints::BuildContext::default()).expect("endpoints");
    let manager = Manager::new(
        config,
        camunda,
        &endpoints,
        crate::journal::Journal::in_memory(Duration::from_secs(60)),
        std::sync::Arc::new(crate::learner::Learner::default()),
    )
    .expect("manager");
    (manager, endpoints)
}

fn topics(r: &FetchAndLock) -> Vec<&str> {
    r.topics.iter().map(|t| t.topic_name.as_str()).collect()
}

#[test]
fn asks_for_free_slots_only_capped_by_max_tasks() {
    let m = manager();
    let reserved = m.generation().reserve();
    let request = m.generation().request(&reserved, "w");
    assert_eq!(
        request.max_tasks, 5,
        "2 + 4 free slots, capped at max_tasks 5"
    );
    assert_eq!(topics(&request), vec!["a", "b"]);
    assert_eq!(
        request.async_response_timeout,
        Some(20_000),
        "nobody left out: a full long poll"
    );
    assert!(
        request
            .topics
            .iter()
            .all(|t| t.include_extension_properties && t.lock_duration == 30_000)
    );
}

#[test]
fn the_budget_is_shared_fairly_and_idle_pools_get_none() {
    let yaml = CONFIG
        .replace("max_tasks: 5", "max_tasks: 3")
        .replace("max_concurrent_tasks: 2", "max_concurrent_tasks: 20")
        .replace("  b: { pool: io, endpoints: [echo] }\n", "");
    let config = crate::config::load_str(&yaml, Path::new("t.yaml"), &|_| None).expect("config");
    let camunda = CamundaClient::new(ClientSettings {
        url: config.camunda.url.clone(),
        auth: None,
        worker_id: "w".into(),
        request_timeout: Duration::from_secs(1),
    })
    .expect("client");
    let m = Manager::new(
        &config,
        camunda,
        &build_endpoints(&config, &crate::endpoints::BuildContext::default()).expect("endpoints"),
        crate::journal::Journal::in_memory(Duration::from_secs(60)),
        std::sync::Arc::new(crate::learner::Learner::default()),
    )
    .expect("manager");
    let reserved = m.generation().reserve();
    assert_eq!(
        reserved.keys().collect::<Vec<_>>(),
        vec!["gp"],
        "io serves no topic: no slots reserved for it"
    );
    assert_eq!(m.generation().request(&reserved, "w").max_tasks, 3);

    let m = manager();
    let _most = m.pools()["io"].reserve(3).expect("io down to 1 free");
    let reserved = m.generation().reserve();
    assert_eq!(reserved["gp"].num_permits(), 2);
    assert_eq!(reserved["io"].num_permits(), 1);
}

#[test]
fn a_full_pool_is_left_out_and_the_poll_is_kept_short() {
    let m = manager();
    let _busy = m.pools()["gp"].reserve(2).expect("fill gp");
    let reserved = m.generation().reserve();
    let request = m.generation().request(&reserved, "w");
    assert_eq!(
        topics(&request),
        vec!["b"],
        "gp has no free slot: its topic is not asked for"
    );
    assert_eq!(request.max_tasks, 4);
    assert_eq!(
        request.async_response_timeout,
        Some(SATURATED_POLL.as_millis() as u64)
    );
    drop(reserved);
    let _all = m.pools()["io"].reserve(4).expect("fill io");
    assert!(
        m.generation().reserve().is_empty(),
        "all pools full: no poll at all"
    );
}

/// A task of a topic that a reload removed while the poll was pending: a new one is given back
/// (unlocked), but one this worker already runs (its lock lapsed and the poll brought it back)
/// is left to the running copy — unlocking it would let another worker run it a second time.
#[tokio::test]
async fn a_task_of_a_removed_topic_is_unlocked_only_when_it_is_not_running_here() {
    use wiremock::matchers::{method, path_regex};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let engine = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex("^/engine-rest/external-task/.*/unlock$"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&engine)
        .await;
    let yaml = CONFIG.replace("http://127.0.0.1:9", &engine.uri());
    let (m, endpoints) = manager_with(&config(&yaml));
    let polled = m.generation();
    let Claim::Run(_running) =
        m.shared
            .journal
            .claim("running-here", None, Duration::from_secs(30))
    else {
        panic!("a new task is claimed");
    };
    let without_b = config(&yaml.replace("  b: { pool: io, endpoints: [echo] }\n", ""));
    m.handle()
        .apply(&without_b, &endpoints, &Default::default())
        .expect("applied");

    let tracker = TaskTracker::new();
    let (stop, hard) = (CancellationToken::new(), CancellationToken::new());
    for id in ["running-here", "new"] {
        let task = LockedTask {
            id: id.into(),
            topic_name: "b".into(),
            ..LockedTask::default()
        };
        m.dispatch(&polled, task, &tracker, &stop, &hard);
    }
    tracker.close();
    tracker.wait().await;
    let unlocked: Vec<String> = engine
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| r.url.path().to_string())
        .collect();
    assert_eq!(
        unlocked,
        vec!["/engine-rest/external-task/new/unlock".to_string()],
        "only the task that does not run here is given back"
    );
}
