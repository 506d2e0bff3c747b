//! What the benchmarks that drive the whole daemon share: run procos on a config against an
//! in-memory engine, start instances and wait until every one has completed.

use std::path::Path;
use std::time::{Duration, Instant};

use procos::engine::RunningEngine;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// How long a drain took.
pub struct Drained {
    /// Sending the `start` requests (each bench compiles this module; not all print it).
    #[allow(dead_code)]
    pub starting: Duration,
    /// From the first `start` until every instance had completed.
    pub elapsed: Duration,
}

/// Runs the daemon on `yaml` against `engine`, waits until process `key` is deployed, starts
/// `instances` of it with `body`, waits until all have completed, and stops the daemon.
pub async fn drain(
    engine: &RunningEngine,
    yaml: &str,
    key: &str,
    body: &Value,
    instances: usize,
) -> Drained {
    let config =
        procos::config::load_str(yaml, Path::new("bench.yaml"), &|_| None).expect("config");
    let shutdown = CancellationToken::new();
    let daemon = tokio::spawn(procos::kernel::run(config, shutdown.clone()));
    let http = reqwest::Client::new();
    while !http
        .get(format!("{}/process-definition/key/{key}", engine.url))
        .send()
        .await
        .map(|r| r.status().is_success())
        .unwrap_or(false)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let start_url = format!("{}/process-definition/key/{key}/start", engine.url);
    let started = Instant::now();
    for _ in 0..instances {
        http.post(&start_url)
            .json(body)
            .send()
            .await
            .expect("start");
    }
    let starting = started.elapsed();
    while engine.engine.stats().instances_completed < instances as u64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    shutdown.cancel();
    let _ = daemon.await;
    Drained { starting, elapsed }
}
