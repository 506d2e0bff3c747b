//! End to end: `procos dev` runs the shipped `bpmn/system/health_monitor.bpmn` on the built-in
//! `procos` endpoint. The timer (`R/PT1M`) is fired at once through the engine's
//! `POST /job/{id}/execute`, so no test waits a minute.
//!
//! - With an email topic configured: all healthy → the instance ends without an alert and no
//!   mail; the `orders` endpoint's health check then fails → the next check mails the alert,
//!   naming `orders`, to a real SMTP server (tests/support/smtp_sink.py); the check after that
//!   raises nothing (one alert per problem, not one a minute).
//! - Without one: the alert is the user task "Look at procos's health", with the report in the
//!   instance's variables.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use support::{Procos, Rest, Workdir, config, free_port, smtp_sink};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const T: Duration = Duration::from_secs(30);
const KEY: &str = "procos_health_monitor";
const MONITOR: &str = include_str!("../bpmn/system/health_monitor.bpmn");

/// The `orders` topic on an http endpoint whose `health_url` is probed every second (on
/// loopback, like the engine: `allowed_hosts` lets it past the SSRF guard), the health topic on
/// the `procos` endpoint, and `extra_topics` / `extra_endpoints`.
fn cfg(health_url: &str, pool: &[&str], extra_topics: &str, extra_endpoints: &str) -> String {
    config(
        "",
        pool,
        &format!(
            "  procos_health: {{ pool: gp, endpoints: [procos] }}\n  orders: {{ pool: gp, endpoints: [orders] }}\n{extra_topics}"
        ),
        &format!(
            "  procos: {{ type: procos }}\n  orders:\n    type: http\n    method: GET\n    url: \"{health_url}/orders\"\n    health_url: \"{health_url}/health\"\n    probe: {{ every: 1s, timeout: 1s }}\n    allowed_hosts: [127.0.0.1]\n{extra_endpoints}"
        ),
    )
}

/// `procos dev` on `cfg` with the shipped health monitor in bpmn/system/, deployed.
async fn dev(cfg: &str) -> (Workdir, Procos, Rest) {
    let work = Workdir::new(cfg, &[]);
    let system = work.path().join("bpmn/system");
    std::fs::create_dir_all(&system).expect("bpmn/system");
    std::fs::write(system.join("health_monitor.bpmn"), MONITOR).expect("write the monitor");
    let listen = format!("127.0.0.1:{}", free_port());
    let url = format!("http://{listen}/engine-rest");
    let procos = Procos::spawn(
        work.path(),
        &["dev", "--config", "pde.yaml", "--listen", &listen],
        &[("CAMUNDA_URL", &url)],
    );
    let rest = Rest::new(&url);
    rest.wait_deployed(KEY, T).await;
    (work, procos, rest)
}

/// Fires the monitor's timer now (as the minute would) and returns the instance it started.
async fn fire(rest: &Rest) -> String {
    let instances = |list: Value| -> BTreeSet<String> {
        list.as_array()
            .expect("array")
            .iter()
            .map(|i| i["id"].as_str().expect("id").to_string())
            .collect()
    };
    let history = format!("/history/process-instance?processDefinitionKey={KEY}");
    let before = instances(rest.get(&history).await);
    let jobs = rest.get(&format!("/job?processDefinitionKey={KEY}")).await;
    let job = jobs[0]["id"].as_str().expect("the timer's job");
    let r = rest
        .http
        .post(format!("{}/job/{job}/execute", rest.url))
        .send()
        .await
        .expect("execute");
    assert_eq!(
        r.status().as_u16(),
        204,
        "{}",
        r.text().await.unwrap_or_default()
    );
    let mut started: Vec<String> = instances(rest.get(&history).await)
        .difference(&before)
        .cloned()
        .collect();
    assert_eq!(started.len(), 1, "one instance per firing");
    started.remove(0)
}

/// The monitor's open user tasks.
async fn user_tasks(rest: &Rest) -> Value {
    rest.get(&format!("/task?processDefinitionKey={KEY}")).await
}

/// Files in the sink's mail dir.
fn mails(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .expect("mail dir")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "eml"))
        })
        .count()
}

/// The text of a single-part message as sent: lettre picks 7bit, quoted-printable (long lines)
/// or base64 by content, so undo what it picked.
fn body_text(raw: &str) -> String {
    use base64::Engine as _;
    let body = raw.split_once("\r\n\r\n").map_or(raw, |(_, b)| b);
    if raw.contains("Content-Transfer-Encoding: base64") {
        let compact: String = body.split_whitespace().collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(compact)
            .expect("base64 body");
        return String::from_utf8_lossy(&bytes).into_owned();
    }
    if raw.contains("Content-Transfer-Encoding: quoted-printable") {
        return body.replace("=\r\n", "").replace("=3D", "=");
    }
    body.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhealthy_endpoint_is_mailed_once_and_a_healthy_procos_mails_nothing() {
    let (_sink, port, mail) = smtp_sink().await;
    let health = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/health"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&health)
        .await;
    let cfg = cfg(
        &health.uri(),
        &["procos", "orders", "alert_mail"],
        "  procos_health_alert: { pool: gp, endpoints: [alert_mail], retries: 1 }\n",
        &format!(
            "  alert_mail:\n    type: email\n    host: 127.0.0.1\n    port: {port}\n    tls: none\n\
             \x20   from: \"procos <procos@example.com>\"\n    to: ops@example.com\n\
             \x20   subject: \"procos: {{{{ unhealthy | join(', ') }}}}\"\n\
             \x20   text: \"{{{{ summary }}}}\"\n"
        ),
    );
    let (_work, mut procos, rest) = dev(&cfg).await;

    // All healthy: the check ends at "Nothing new", no mail.
    let pi = fire(&rest).await;
    let vars = rest.wait_ended(&pi, T).await;
    assert_eq!(vars["alert"], json!(false), "{vars:?}");
    assert_eq!(vars["unhealthy"], json!([]));
    assert_eq!(vars["notify_by_email"], json!(true));
    assert_eq!(vars["endpoints"]["orders"]["state"], "closed");
    assert_eq!(mails(mail.path()), 0, "nothing to mail");

    // The order service's health check starts failing: the probe finds it within a second.
    health.reset().await;
    procos.wait_log("Probe failed.", T).await;
    let pi = fire(&rest).await;
    let vars = rest.wait_ended(&pi, T).await;
    assert_eq!(vars["alert"], json!(true), "{vars:?}");
    assert_eq!(vars["unhealthy"], json!(["orders"]));
    assert_eq!(vars["endpoints"]["orders"]["healthy"], json!(false));
    let raw = std::fs::read_to_string(mail.path().join("1.eml")).expect("the alert was mailed");
    assert!(raw.contains("Subject: procos: orders"), "{raw}");
    assert!(
        body_text(&raw).contains("endpoint `orders` is unhealthy"),
        "{raw}"
    );
    let envelope: Value = serde_json::from_str(
        &std::fs::read_to_string(mail.path().join("1.json")).expect("sidecar"),
    )
    .expect("JSON");
    assert_eq!(envelope["rcpt_tos"], json!(["ops@example.com"]));

    // A minute later it is still broken: reported, not raised again.
    let pi = fire(&rest).await;
    let vars = rest.wait_ended(&pi, T).await;
    assert_eq!(vars["alert"], json!(false), "{vars:?}");
    assert_eq!(vars["unhealthy"], json!(["orders"]), "still reported");
    assert_eq!(
        mails(mail.path()),
        1,
        "one mail per problem, not one a minute"
    );

    procos.sigterm();
    assert_eq!(procos.exit_code(T).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_email_topic_the_alert_is_a_user_task() {
    // Nothing listens there: the probe's connection is refused.
    let closed = format!("http://127.0.0.1:{}", free_port());
    let (_work, mut procos, rest) = dev(&cfg(&closed, &["procos", "orders"], "", "")).await;
    procos.wait_log("Probe failed.", T).await;

    let pi = fire(&rest).await;
    let deadline = tokio::time::Instant::now() + T;
    let task = loop {
        let list = user_tasks(&rest).await;
        if list[0].is_object() {
            break list[0].clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no user task; instance {}",
            rest.get(&format!("/history/process-instance/{pi}")).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(task["name"], "Look at procos's health");
    assert_eq!(task["processInstanceId"], json!(pi));
    let vars = rest.variables(&pi).await;
    assert_eq!(vars["alert"], json!(true), "{vars:?}");
    assert_eq!(vars["notify_by_email"], json!(false));
    assert_eq!(vars["unhealthy"], json!(["orders"]));
    let summary = vars["summary"].as_str().expect("a summary");
    assert!(
        summary.contains("endpoint `orders` is unhealthy"),
        "{summary}"
    );

    // The next check: nothing new, no second task.
    let pi = fire(&rest).await;
    let vars = rest.wait_ended(&pi, T).await;
    assert_eq!(vars["alert"], json!(false), "{vars:?}");
    assert_eq!(user_tasks(&rest).await.as_array().map(Vec::len), Some(1));

    procos.sigterm();
    assert_eq!(procos.exit_code(T).await, 0);
}
