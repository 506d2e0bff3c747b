//! The retry layer logs each retry below Validation's redaction: a secret a server echoed into
//! its error must not reach the log line. Its own test binary, so that the log subscriber is the
//! process's only one (a scoped subscriber misses events when other tests' threads race it for
//! the same log call site).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use procos::endpoints::stack::{Retry, RetryBudgetConfig, RetryPolicy};
use procos::endpoints::{Endpoint, EndpointError, EndpointReply, EndpointRequest};

const KEY: &str = "sk-retry-SECRET-0123456789";

/// Fails once with a 503 that echoes the key, then answers.
#[derive(Debug, Default)]
struct Echoing {
    calls: Mutex<u32>,
}

#[async_trait]
impl Endpoint for Echoing {
    fn name(&self) -> &str {
        "model"
    }
    fn kind(&self) -> &'static str {
        "echoing"
    }
    fn side_effects(&self) -> bool {
        false
    }
    async fn call(&self, _: &EndpointRequest) -> Result<EndpointReply, EndpointError> {
        let mut calls = self.calls.lock().unwrap();
        *calls += 1;
        if *calls == 1 {
            return Err(EndpointError::transient(format!("503: bad key {KEY}")).code("http_503"));
        }
        Ok(EndpointReply::new(serde_json::json!("ok")))
    }
}

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn the_retry_log_line_never_shows_a_secret_the_server_echoed() {
    // As reading the config does for an endpoint's `api_key`.
    procos::config::secret::register(KEY);
    let buffer = Buffer::default();
    let writer = buffer.clone();
    tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .init();
    let retry = Retry::new(
        Arc::new(Echoing::default()),
        RetryPolicy {
            max_retries: 1,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            max_wait: Duration::from_secs(30),
            budget: RetryBudgetConfig::default(),
            side_effects: false,
        },
    );
    retry
        .call(&EndpointRequest::default())
        .await
        .expect("the retry answers");
    let logs = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("retrying"), "the retry was logged: {logs}");
    assert!(!logs.contains(KEY), "{logs}");
}
