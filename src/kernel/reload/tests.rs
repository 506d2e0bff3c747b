//! Unit tests of the reload's diff and of applying it to a manager.

use std::path::Path;
use std::time::{Duration, SystemTime};

use super::*;
use crate::camunda::{CamundaClient, ClientSettings};
use crate::manager::{Manager, build_stoppable_endpoints};
use crate::telemetry::events::TaskEvent;

const BASE: &str = r#"
camunda: { url: "http://127.0.0.1:9/engine-rest", long_poll: 20s }
pde_manager:
  pools:
    gp: { instances: 2, endpoints: [echo, slow], max_concurrent_tasks: 2 }
    io: { instances: 1, endpoints: [echo], max_concurrent_tasks: 4 }
topics:
  a: { pool: gp, endpoints: [echo] }
  b: { pool: io, endpoints: [echo] }
  s: { pool: gp, endpoints: [slow] }
endpoints:
  echo: { type: noop }
  slow: { type: noop, delay: 1s }
"#;

fn snapshot(text: &str) -> Snapshot {
    let config = crate::config::load_str(text, Path::new("pde.yaml"), &|_| None).expect("valid");
    Snapshot::new(config, text)
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn comments_and_layout_change_nothing() {
    let edited = format!(
        "# a comment\n{}",
        BASE.replace("{ type: noop }", "{type: noop}")
    );
    let changes = Changes::between(&snapshot(BASE), &snapshot(&edited));
    assert!(changes.is_empty(), "{changes:?}");
    assert!(changes.fixed.is_empty());
}

#[test]
fn added_removed_and_changed_entries_are_told_apart() {
    let new = BASE
        .replace(
            "  b: { pool: io, endpoints: [echo] }\n",
            "  c: { pool: io, endpoints: [echo] }\n",
        )
        .replace("delay: 1s", "delay: 2s");
    let changes = Changes::between(&snapshot(BASE), &snapshot(&new));
    assert_eq!(changes.topics.added, names(&["c"]));
    assert_eq!(changes.topics.removed, names(&["b"]));
    assert!(changes.topics.changed.is_empty());
    assert_eq!(changes.endpoints.changed, names(&["slow"]));
    // `a` uses echo only, but its pool gp can reach `slow` (the `pde.endpoint` override), so it
    // is rebuilt like `s`; `c` is new.
    let keep = changes.unchanged_topics(&snapshot(&new).config);
    assert!(
        keep.is_empty(),
        "gp's topics reach slow, c is new: {keep:?}"
    );

    let only_io = BASE.replace("max_concurrent_tasks: 4", "max_concurrent_tasks: 8");
    let changes = Changes::between(&snapshot(BASE), &snapshot(&only_io));
    assert_eq!(changes.pools.changed, names(&["io"]));
    let keep = changes.unchanged_topics(&snapshot(&only_io).config);
    assert_eq!(
        keep.into_iter().collect::<Vec<_>>(),
        names(&["a", "s"]),
        "b's pool changed"
    );
}

#[test]
fn keys_that_cannot_change_live_are_named_and_an_explicit_default_is_no_change() {
    let moved = BASE.replace("127.0.0.1:9", "127.0.0.1:10");
    let changes = Changes::between(&snapshot(BASE), &snapshot(&moved));
    assert_eq!(changes.fixed, vec!["camunda.url"]);

    let explicit = BASE.replace("long_poll: 20s", "long_poll: 20s, request_timeout: 30s");
    let changes = Changes::between(&snapshot(BASE), &snapshot(&explicit));
    assert!(changes.fixed.is_empty(), "30s is the default: {changes:?}");

    let dir = BASE.replace("pde_manager:\n", "pde_manager:\n  state_dir: /tmp/x\n");
    assert_eq!(
        Changes::between(&snapshot(BASE), &snapshot(&dir)).fixed,
        vec!["pde_manager.state_dir"]
    );
}

struct Rig {
    manager: Manager,
    reloader: Reloader,
    learner: Arc<crate::learner::Learner>,
    stamps: crate::config::stamp::StampReceiver,
}

fn rig() -> Rig {
    rig_on(BASE)
}

/// A manager running `text`, and its reloader.
fn rig_on(text: &str) -> Rig {
    let running = snapshot(text);
    let camunda = CamundaClient::new(ClientSettings {
        url: running.config.camunda.url.clone(),
        auth: None,
        worker_id: "w".into(),
        request_timeout: Duration::from_secs(1),
    })
    .expect("client");
    let cx = BuildContext::default();
    let (endpoints, stops) =
        build_stoppable_endpoints(&running.config, &cx, |_| true).expect("endpoints");
    let learner = Arc::new(crate::learner::Learner::default());
    let manager = Manager::new(
        &running.config,
        camunda,
        &endpoints,
        crate::journal::Journal::in_memory(Duration::from_secs(60)),
        learner.clone(),
    )
    .expect("manager");
    let (stamps, rx) = tokio::sync::watch::channel(ConfigStamp::new(1, text));
    let source = Source {
        path: "pde.yaml".into(),
        camunda_url: None,
        text: text.to_string(),
    };
    let reloader = Reloader::new(
        source,
        running,
        (endpoints, stops),
        cx,
        manager.handle(),
        stamps,
    );
    Rig {
        manager,
        reloader,
        learner,
        stamps: rx,
    }
}

fn event(id: &str) -> TaskEvent {
    TaskEvent {
        task_id: id.into(),
        topic: "a".into(),
        process_instance_id: None,
        process_definition_key: None,
        outcome: "completed",
        endpoint: None,
        error_class: None,
        error_message: None,
        duration: Duration::from_millis(1),
        at: SystemTime::now(),
    }
}

#[tokio::test]
async fn a_valid_reload_swaps_topics_keeps_what_did_not_change_and_bumps_the_version() {
    let mut rig = rig();
    let before = rig.manager.pipeline();
    let io_before = rig.manager.pools()["io"].clone();
    let mut feed = rig.manager.events().subscribe();
    let new = BASE
        .replace(
            "  b: { pool: io, endpoints: [echo] }\n",
            "  c: { pool: io, endpoints: [echo] }\n",
        )
        .replace(
            "gp: { instances: 2, endpoints: [echo, slow], max_concurrent_tasks: 2 }",
            "gp: { instances: 2, endpoints: [echo, slow], max_concurrent_tasks: 6 }",
        )
        .replace("delay: 1s", "delay: 2s");
    rig.reloader.apply(&new).expect("applied");

    let after = rig.manager.pipeline();
    assert_eq!(
        after.topics().keys().collect::<Vec<_>>(),
        vec!["a", "c", "s"]
    );
    assert_eq!(rig.stamps.borrow().version, 2);
    assert_eq!(
        rig.stamps.borrow().fingerprint,
        ConfigStamp::new(0, &new).fingerprint
    );
    // The running tasks' generation still has the old `slow` and topic `b`.
    assert!(before.topics().contains_key("b"));
    assert!(
        !Arc::ptr_eq(
            &before.topics()["s"].endpoints[0],
            &after.topics()["s"].endpoints[0]
        ),
        "slow was rebuilt for new tasks"
    );
    // Pools: io kept with its running tasks, gp resized in place.
    assert!(Arc::ptr_eq(&io_before, &rig.manager.pools()["io"]));
    assert_eq!(rig.manager.pools()["gp"].capacity(), 6);
    assert_eq!(
        rig.manager.handle().pools()["gp"].capacity(),
        6,
        "what a status page reads"
    );
    // One learner for every generation, and the same feed of finished tasks.
    assert!(Arc::ptr_eq(&after.topics()["c"].learner, &rig.learner));
    after.events().send(event("after-reload"));
    assert_eq!(feed.recv().await.expect("event").task_id, "after-reload");
}

#[tokio::test]
async fn an_unchanged_topic_keeps_its_runtime() {
    let mut rig = rig();
    let before = rig.manager.pipeline();
    let new = BASE.replace("max_concurrent_tasks: 4", "max_concurrent_tasks: 5");
    rig.reloader.apply(&new).expect("applied");
    let after = rig.manager.pipeline();
    assert!(Arc::ptr_eq(&before.topics()["a"], &after.topics()["a"]));
    assert!(
        !Arc::ptr_eq(&before.topics()["b"], &after.topics()["b"]),
        "b's pool changed"
    );
}

#[tokio::test]
async fn an_invalid_file_or_a_fixed_key_changes_nothing() {
    let mut rig = rig();
    let before = rig.manager.pipeline();
    let broken = BASE
        .replace(
            "  a: { pool: gp, endpoints: [echo] }",
            "  a: { pool: gp, endpoints: [echho] }",
        )
        .replace("delay: 1s", "delay: 1s, colour: red");
    match rig.reloader.apply(&broken) {
        Err(ReloadError::Invalid(e)) => {
            let paths: Vec<&str> = e.problems.iter().map(|p| p.path.as_str()).collect();
            assert!(
                paths.iter().any(|p| p.starts_with("topics.a.endpoints")),
                "{paths:?}"
            );
            assert!(
                paths.iter().any(|p| p.starts_with("endpoints.slow")),
                "{paths:?}"
            );
        }
        other => panic!("expected the problems, got {other:?}"),
    }
    let moved = BASE
        .replace("127.0.0.1:9", "127.0.0.1:10")
        .replace("  b: { pool: io, endpoints: [echo] }\n", "");
    match rig.reloader.apply(&moved) {
        Err(ReloadError::Fixed(keys)) => assert_eq!(keys, vec!["camunda.url"]),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(
        Arc::ptr_eq(&before, &rig.manager.pipeline()),
        "nothing applied"
    );
    assert_eq!(rig.stamps.borrow().version, 1);
}

#[test]
fn only_events_on_the_config_file_count() {
    use inotify::EventMask;
    let names = watched_names(Path::new("/w/pde.yaml"));
    let on = |mask, name: Option<&str>| changes_file(mask, name.map(std::ffi::OsStr::new), &names);
    assert!(on(EventMask::CLOSE_WRITE, Some("pde.yaml")));
    assert!(on(EventMask::MOVED_TO, Some("pde.yaml")));
    assert!(on(EventMask::CREATE, Some("..data")));
    assert!(!on(EventMask::CLOSE_WRITE, Some("other.yaml")));
    assert!(!on(EventMask::MOVED_TO, None));
    assert!(
        on(EventMask::Q_OVERFLOW, None),
        "a lost event may have been the file's"
    );
}

/// Appending to a log in the config's folder must not wake the watcher at all: with the events
/// the `notify` crate asks for (every write and open), it read and dropped an event per log line,
/// a quarter of procos's CPU while draining tasks with its log beside its config. What the kernel
/// delivers for [`FOLDER_EVENTS`] is read here without blocking.
#[test]
fn a_log_written_beside_the_config_wakes_nothing() {
    use std::io::Write;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("pde.yaml"), BASE).expect("config");
    let mut log = std::fs::File::create(dir.path().join("procos.log")).expect("log");
    let mut inotify = inotify::Inotify::init().expect("inotify");
    inotify
        .watches()
        .add(dir.path(), FOLDER_EVENTS)
        .expect("watch");
    let mut buffer = [0u8; 4096];
    let mut pending = |inotify: &mut inotify::Inotify| -> Vec<String> {
        match inotify.read_events(&mut buffer) {
            Ok(events) => events
                .map(|e| format!("{:?} {:?}", e.mask, e.name))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Vec::new(),
            Err(e) => panic!("reading events: {e}"),
        }
    };
    for i in 0..1000 {
        writeln!(log, "line {i}").expect("log line");
        let _ = std::fs::read_to_string(dir.path().join("procos.log")).expect("read back");
    }
    assert_eq!(
        pending(&mut inotify),
        Vec::<String>::new(),
        "log lines woke the watcher"
    );

    std::fs::write(
        dir.path().join("pde.yaml"),
        BASE.replace("delay: 1s", "delay: 2s"),
    )
    .expect("edited in place");
    let seen = pending(&mut inotify);
    assert!(
        seen.iter()
            .any(|e| e.contains("CLOSE_WRITE") && e.contains("pde.yaml")),
        "an edit of the config is seen: {seen:?}"
    );
}

#[tokio::test]
async fn a_replaced_endpoint_stops_its_probes_and_an_unchanged_one_keeps_them() {
    let mut rig = rig();
    let before: BTreeMap<String, CancellationToken> = rig.reloader.stops.clone();
    rig.reloader
        .apply(&BASE.replace("delay: 1s", "delay: 2s"))
        .expect("applied");
    assert!(
        before["slow"].is_cancelled(),
        "the replaced endpoint's probes must stop: its health entry is the new one's"
    );
    assert!(!before["echo"].is_cancelled(), "echo did not change");
    assert!(
        !rig.reloader.stops["slow"].is_cancelled(),
        "the new slow runs"
    );
    assert!(!rig.reloader.stops["echo"].is_cancelled());
}

/// The `procos` endpoint reads the topics' endpoint lists when it is built (`notify_by_email`
/// says whether `procos_health_alert` has endpoints): adding that topic must rebuild it, though
/// its own entry did not change. Before, it kept answering `notify_by_email: false`.
#[tokio::test]
async fn adding_the_alert_topic_rebuilds_the_procos_endpoint() {
    let with_monitor = BASE
        .replace(
            "  s: { pool: gp, endpoints: [slow] }\n",
            "  s: { pool: gp, endpoints: [slow] }\n  health: { pool: io, endpoints: [monitor] }\n",
        )
        .replace(
            "  echo: { type: noop }\n",
            "  echo: { type: noop }\n  monitor: { type: procos }\n",
        )
        .replace(
            "io: { instances: 1, endpoints: [echo],",
            "io: { instances: 1, endpoints: [echo, monitor],",
        );
    let mut rig = rig_on(&with_monitor);
    let notify_by_email = |rig: &Rig| {
        let monitor = rig.manager.pipeline().topics()["health"].endpoints[0].clone();
        async move {
            let reply = monitor
                .call(&crate::endpoints::EndpointRequest::default())
                .await
                .expect("answered");
            reply.output["notify_by_email"].clone()
        }
    };
    assert_eq!(notify_by_email(&rig).await, serde_json::json!(false));
    let with_alert = with_monitor.replace(
        "  health: { pool: io, endpoints: [monitor] }\n",
        "  health: { pool: io, endpoints: [monitor] }\n  procos_health_alert: { pool: io, endpoints: [echo] }\n",
    );
    rig.reloader.apply(&with_alert).expect("applied");
    assert_eq!(
        notify_by_email(&rig).await,
        serde_json::json!(true),
        "the alert topic now has an endpoint"
    );
    let changes = Changes::between(&snapshot(&with_monitor), &snapshot(&with_alert));
    assert_eq!(changes.endpoints.changed, names(&["monitor"]));
    // A change that leaves every topic's endpoints as they were rebuilds nothing.
    let lock = with_alert.replace("long_poll: 20s", "long_poll: 20s, lock_duration: 40s");
    let changes = Changes::between(&snapshot(&with_alert), &snapshot(&lock));
    assert!(changes.endpoints.changed.is_empty(), "{changes:?}");
}

/// A reload that removes an endpoint drops its health: the `procos` endpoint's report (what the
/// health monitor mails about) no longer lists it. Before, an endpoint removed while its
/// breaker was open stayed "unhealthy" there for the daemon's life.
#[tokio::test]
async fn a_removed_endpoint_leaves_the_health_report() {
    let with_monitor = BASE
        .replace(
            "  s: { pool: gp, endpoints: [slow] }\n",
            "  s: { pool: gp, endpoints: [slow] }\n  health: { pool: io, endpoints: [monitor] }\n",
        )
        .replace(
            "  echo: { type: noop }\n",
            "  echo: { type: noop }\n  monitor: { type: procos }\n",
        )
        .replace(
            "io: { instances: 1, endpoints: [echo],",
            "io: { instances: 1, endpoints: [echo, monitor],",
        );
    let mut rig = rig_on(&with_monitor);
    rig.reloader.cx.health().update("slow", |h| {
        h.breaker = crate::endpoints::health::BreakerState::Open;
        h.last_error = Some("connection refused".into());
    });
    let without_slow = with_monitor
        .replace("  s: { pool: gp, endpoints: [slow] }\n", "")
        .replace("endpoints: [echo, slow]", "endpoints: [echo]")
        .replace("  slow: { type: noop, delay: 1s }\n", "");
    rig.reloader.apply(&without_slow).expect("applied");
    let monitor = rig.manager.pipeline().topics()["health"].endpoints[0].clone();
    let report = monitor
        .call(&crate::endpoints::EndpointRequest::default())
        .await
        .expect("answered")
        .output;
    assert!(report["endpoints"].get("slow").is_none(), "{report:#}");
    assert_eq!(report["unhealthy"], serde_json::json!([]), "{report:#}");
    assert!(report["endpoints"].get("echo").is_some(), "{report:#}");
}

/// The first stamp is over the text procos loaded, not a second read of the file: an edit saved
/// between loading and stamping must not pass for the running config (before, the stamp and the
/// reloader's running text were the edit's, so that edit was never applied).
#[test]
fn the_first_stamp_is_over_the_text_that_was_loaded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("pde.yaml");
    std::fs::write(&path, BASE).expect("written");
    let (config, text) = load_file(&path).expect("loaded");
    assert_eq!(config.topics.len(), 3);
    let edited = BASE.replace("delay: 1s", "delay: 2s");
    std::fs::write(&path, &edited).expect("edited in between");
    let options = crate::kernel::RunOptions {
        reload: Some(Source {
            path,
            camunda_url: None,
            text,
        }),
        ..Default::default()
    };
    let (stamps, running) = crate::kernel::first_stamp(&options);
    assert_eq!(
        running, BASE,
        "the reloader compares the next read with this"
    );
    assert_eq!(
        stamps.borrow().fingerprint,
        ConfigStamp::new(0, BASE).fingerprint
    );
    assert_ne!(
        stamps.borrow().fingerprint,
        ConfigStamp::new(0, &edited).fingerprint
    );
}

/// A Kubernetes ConfigMap volume: `pde.yaml -> ..data/pde.yaml`, `..data -> ..<timestamp>`. An
/// update writes a new `..<timestamp>` folder and renames a new `..data` symlink over the old
/// one (atomically); the `pde.yaml` entry itself never changes. The watcher must apply it.
#[tokio::test]
async fn a_configmap_update_is_applied() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().expect("temp dir");
    let first = dir.path().join("..2026_12_02_04_00_00.000000001");
    std::fs::create_dir(&first).expect("dir");
    std::fs::write(first.join("pde.yaml"), BASE).expect("written");
    symlink("..2026_12_02_04_00_00.000000001", dir.path().join("..data")).expect("..data");
    symlink("..data/pde.yaml", dir.path().join("pde.yaml")).expect("pde.yaml");

    let mut rig = rig();
    rig.reloader.source.path = dir.path().join("pde.yaml");
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(rig.reloader.run(None, shutdown.clone()));
    // On this current-thread runtime the reloader now runs up to its first wait: watching.
    tokio::task::yield_now().await;

    // What the kubelet does on an update.
    let second = dir.path().join("..2026_12_02_04_05_00.000000002");
    std::fs::create_dir(&second).expect("dir");
    let edited = BASE.replace("delay: 1s", "delay: 2s");
    std::fs::write(second.join("pde.yaml"), &edited).expect("written");
    symlink(
        "..2026_12_02_04_05_00.000000002",
        dir.path().join("..data_tmp"),
    )
    .expect("..data_tmp");
    std::fs::rename(dir.path().join("..data_tmp"), dir.path().join("..data")).expect("swap");
    std::fs::remove_dir_all(&first).expect("old version removed");

    let applied = tokio::time::timeout(
        Duration::from_secs(10),
        rig.stamps.wait_for(|s| s.version == 2),
    )
    .await
    .map(|stamp| stamp.map(|s| s.fingerprint.clone()));
    assert_eq!(
        applied.ok().and_then(Result::ok),
        Some(ConfigStamp::new(0, &edited).fingerprint),
        "the ConfigMap update was applied"
    );
    shutdown.cancel();
    running.await.expect("the reloader stopped");
}
