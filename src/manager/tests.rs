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

/// A reload cuts pool `gp` from 8 slots to 2 while 8 of its tasks run (they end one every
/// 100 ms). The fetch loop (simulated: it reserves every 10 ms, and each task it gets runs 1 s)
/// must ask for no `gp` task until fewer than 2 run, and then keep at most 2 running — the
/// pool must not run old + new capacity at once. Then it grows back to 3 in place.
#[tokio::test(start_paused = true)]
async fn a_pool_cut_by_a_reload_runs_at_most_its_new_size() {
    use std::sync::atomic::AtomicUsize;
    let sized = |n: usize| {
        CONFIG.replace(
            "gp: { instances: 2, endpoints: [echo], max_concurrent_tasks: 2 }",
            &format!("gp: {{ instances: 2, endpoints: [echo], max_concurrent_tasks: {n} }}"),
        )
    };
    let (m, endpoints) = manager_with(&config(&sized(8)));
    let gp = m.pools()["gp"].clone();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let tracker = TaskTracker::new();
    let hold = |slot: pool::Slot, for_: Duration| {
        let in_flight = in_flight.clone();
        in_flight.fetch_add(1, Ordering::SeqCst);
        tracker.spawn(async move {
            tokio::time::sleep(for_).await;
            in_flight.fetch_sub(1, Ordering::SeqCst);
            drop(slot);
        });
    };
    for i in 1..=8 {
        let permit = gp.reserve(1).expect("a free slot");
        hold(gp.seat(permit), Duration::from_millis(100 * i));
    }
    m.handle()
        .apply(&config(&sized(2)), &endpoints, &Default::default())
        .expect("applied");
    assert!(Arc::ptr_eq(&gp, &m.pools()["gp"]), "resized in place");
    assert_eq!(gp.capacity(), 2);

    let (mut started, mut busiest_at_a_start, mut most_asked) = (0, 0, 0);
    for _ in 0..300 {
        let g = m.generation();
        let reserved = g.reserve();
        let asked = reserved.get("gp").map_or(0, |p| p.num_permits());
        most_asked = most_asked.max(asked);
        if let Some(mut permits) = reserved
            .into_iter()
            .find(|(n, _)| n == "gp")
            .map(|(_, p)| p)
        {
            while let Some(one) = permits.split(1) {
                busiest_at_a_start = busiest_at_a_start.max(in_flight.load(Ordering::SeqCst));
                hold(gp.seat(one), Duration::from_secs(1));
                started += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(started >= 2, "the pool still runs tasks: {started}");
    assert!(
        busiest_at_a_start < 2,
        "a task started while {busiest_at_a_start} ran: more than the new 2 slots in flight"
    );
    assert!(most_asked <= 2, "asked for {most_asked} gp tasks at once");

    // Growing again adds slots to the same semaphore, counting the tasks still running.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let running = gp.reserve(2).expect("2 free");
    m.handle()
        .apply(&config(&sized(3)), &endpoints, &Default::default())
        .expect("applied");
    assert_eq!(gp.free(), 1, "3 slots, 2 held");
    assert_eq!(gp.status().slots, 3);
    drop(running);
    tracker.close();
    tracker.wait().await;
}
