//! End to end: the real `procos` binary publishes tasks to a real RabbitMQ (Debian's
//! `rabbitmq-server`, a throwaway node: tests/support/rabbitmq.rs) with publisher confirms.
//!
//! - a confirmed message reaches the bound queue once, with the task id as its message id, and
//!   the task completes; an unroutable one (`mandatory`) fails the task transiently;
//! - request/reply: the correlated reply (not another one) is the task's result; a service
//!   that never answers fails the task transiently, naming the timeout;
//! - a full queue's nack fails the task transiently; a missing exchange is an incident; a broker absent at start-up is a failing
//!   probe (a warning), not a refused start;
//! - a broker that goes down fails the task transiently and nothing is completed; after the
//!   broker is back, the engine's retry publishes it on a new connection;
//! - the broker's password never shows in procos's logs nor in what the engine was told.

mod support;

use std::time::Duration;

use futures::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, ExchangeKind};
use serde_json::{Value, json};
use support::rabbitmq::{self, PASSWORD, Rabbit};
use support::{Procos, Rest, Workdir, config, engine, eventually, one_task_bpmn};

const T: Duration = Duration::from_secs(60);

/// procos on `work` against `engine_url`, the broker's URL in `AMQP_URL` (as a deployment sets it).
fn daemon(work: &Workdir, engine_url: &str, rabbit: &Rabbit) -> Procos {
    Procos::spawn(
        work.path(),
        &["--config", "pde.yaml"],
        &[("CAMUNDA_URL", engine_url), ("AMQP_URL", &rabbit.url())],
    )
}

/// The instance's external task once it has failed down to `retries` or fewer (transient
/// failures: retries left, no incident).
async fn failed_to(rest: &Rest, pi: &str, retries: u64) -> Value {
    let path = format!("/external-task?processInstanceId={pi}");
    let failed = eventually(T, || async {
        rest.get(&path).await.as_array().is_some_and(|tasks| {
            tasks.first().is_some_and(|t| {
                t["retries"].as_u64().is_some_and(|r| r <= retries) && t["errorMessage"].is_string()
            })
        })
    })
    .await;
    let tasks = rest.get(&path).await;
    assert!(failed, "no failure down to retries {retries}: {tasks}");
    tasks[0].clone()
}

/// Nothing secret in procos's logs, nor in the task's error as the engine holds it.
async fn assert_no_password(procos: &Procos, rest: &Rest, task: &Value) {
    for line in procos.log_lines() {
        assert!(!line.contains(PASSWORD), "password in a log line: {line}");
    }
    assert!(!task.to_string().contains(PASSWORD), "{task}");
    let id = task["id"].as_str().unwrap_or_default();
    let details = rest
        .http
        .get(format!("{}/external-task/{id}/errorDetails", rest.url))
        .send()
        .await
        .expect("errorDetails");
    let details = details.text().await.unwrap_or_default();
    assert!(!details.contains(PASSWORD), "{details}");
}

async fn channel(conn: &lapin::Connection) -> Channel {
    conn.create_channel().await.expect("channel")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmed_message_reaches_its_queue_once_with_the_task_id_and_unroutable_fails() {
    let rabbit = rabbitmq::shared().await;
    let conn = rabbit.connect().await;
    let ch = channel(&conn).await;
    ch.exchange_declare(
        "orders".into(),
        ExchangeKind::Topic,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("exchange");
    ch.queue_declare(
        "orders_eu".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("queue");
    ch.queue_bind(
        "orders_eu".into(),
        "orders".into(),
        "orders.eu".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind");
    // A full queue that rejects what comes in: the broker nacks the publish.
    let mut full = FieldTable::default();
    full.insert("x-max-length".into(), AMQPValue::LongInt(1));
    full.insert(
        "x-overflow".into(),
        AMQPValue::LongString("reject-publish".into()),
    );
    ch.queue_declare("orders_full".into(), QueueDeclareOptions::default(), full)
        .await
        .expect("full queue");
    ch.queue_bind(
        "orders_full".into(),
        "orders".into(),
        "orders.full".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind");
    ch.basic_publish(
        "orders".into(),
        "orders.full".into(),
        BasicPublishOptions::default(),
        b"{}",
        BasicProperties::default(),
    )
    .await
    .expect("fill the queue");
    let mut received = ch
        .basic_consume(
            "orders_eu".into(),
            "test".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consume");

    let engine = engine().await;
    let rest = Rest::new(&engine.url);
    // `down`: a broker that is not there at start-up (a closed port) — a failing probe and a
    // warning, not a refused start.
    let down_url = format!(
        "amqp://{}:{PASSWORD}@127.0.0.1:{}/%2f",
        rabbitmq::USER,
        support::free_port()
    );
    let cfg = config(
        "",
        &["mq", "down", "nowhere"],
        "  ship: { pool: gp, endpoints: [mq], retries: 3, retry_timeout: 60s, output: { variable: sent } }\n\
         \x20 ship_later: { pool: gp, endpoints: [down] }\n\
         \x20 ship_nowhere: { pool: gp, endpoints: [nowhere], retries: 3, retry_timeout: 60s }",
        &("  mq:\n    type: amqp\n    url: ${AMQP_URL}\n    exchange: orders\n\
         \x20   routing_key: \"orders.{{ region }}\"\n\
         \x20   payload: { order: \"{{ order }}\", region: \"{{ region }}\" }\n\
         \x20   headers: { x-source: procos-e2e }\n\
         \x20 down: { type: amqp, url: \"DOWN_URL\", routing_key: later }\n\
         \x20 nowhere: { type: amqp, url: \"${AMQP_URL}\", exchange: no_such_exchange, routing_key: x }\n"
            .replace("DOWN_URL", &down_url)),
    );
    let work = Workdir::new(
        &cfg,
        &[
            ("ship.bpmn", &one_task_bpmn("ship_process", "ship", "NEVER")),
            (
                "nowhere.bpmn",
                &one_task_bpmn("nowhere_process", "ship_nowhere", "NEVER"),
            ),
        ],
    );
    let procos = daemon(&work, &engine.url, rabbit);
    rest.wait_deployed("ship_process", T).await;
    rest.wait_deployed("nowhere_process", T).await;

    let pi = rest
        .start("ship_process", json!({"region": "eu", "order": 7}))
        .await;
    let vars = rest.wait_ended(&pi, T).await;
    let message_id = vars["sent"]["message_id"].as_str().expect("a message id");
    assert_eq!(vars["sent"]["routing_key"], json!("orders.eu"));

    let delivery = tokio::time::timeout(Duration::from_secs(10), received.next())
        .await
        .expect("the message arrives")
        .expect("a delivery")
        .expect("not an error");
    let body: Value = serde_json::from_slice(&delivery.data).expect("JSON body");
    assert_eq!(body, json!({"order": 7, "region": "eu"}));
    let props = &delivery.properties;
    assert_eq!(
        props.message_id().as_ref().map(|m| m.as_str()),
        Some(message_id)
    );
    assert_eq!(*props.delivery_mode(), Some(2), "persistent");
    assert_eq!(
        props.content_type().as_ref().map(|c| c.as_str()),
        Some("application/json")
    );
    let headers = props.headers().as_ref().expect("headers");
    assert!(
        matches!(headers.inner().get("x-source"), Some(AMQPValue::LongString(s)) if s.to_string() == "procos-e2e"),
        "{headers:?}"
    );
    // The message id is the external task's id (what a consumer de-duplicates on): the task
    // that finished as completed is the one with that id (logged just after the report).
    let completed = || {
        procos
            .log_json()
            .into_iter()
            .filter(|l| l["message"] == "Task finished." && l["outcome"] == "completed")
            .collect::<Vec<Value>>()
    };
    eventually(T, || async { !completed().is_empty() }).await;
    let completed = completed();
    assert_eq!(completed.len(), 1, "{completed:?}");
    assert_eq!(completed[0]["span"]["task_id"], json!(message_id));

    // No queue is bound for `orders.mars`: the broker returns it, the task fails transiently.
    let mars = rest
        .start("ship_process", json!({"region": "mars", "order": 8}))
        .await;
    let task = failed_to(&rest, &mars, 2).await;
    assert_eq!(task["retries"], json!(2), "{task}");
    let error = task["errorMessage"].as_str().unwrap_or_default();
    assert!(error.contains("no queue is bound"), "{task}");
    assert_eq!(rest.state(&mars).await, "ACTIVE");
    assert!(rest.incidents(&mars).await.is_empty());
    assert_eq!(
        rest.stats().await["complete_ok"],
        json!(1),
        "only the first"
    );
    // Exactly one message: the returned one never reached a queue.
    let more = tokio::time::timeout(Duration::from_millis(500), received.next()).await;
    assert!(more.is_err(), "a second message arrived: {more:?}");
    assert_no_password(&procos, &rest, &task).await;

    // The full queue refuses it: the broker's nack fails the task transiently.
    let nacked = rest
        .start("ship_process", json!({"region": "full", "order": 9}))
        .await;
    let task = failed_to(&rest, &nacked, 2).await;
    assert_eq!(task["retries"], json!(2), "{task}");
    let error = task["errorMessage"].as_str().unwrap_or_default();
    assert!(error.contains("refused the message (nack)"), "{task}");
    assert_eq!(rest.state(&nacked).await, "ACTIVE");
    assert_eq!(
        rest.stats().await["complete_ok"],
        json!(1),
        "only the first"
    );

    // An exchange that does not exist (the broker closes the channel): a person must declare
    // it or fix the config — an incident, not retries.
    let nowhere = rest.start("nowhere_process", json!({})).await;
    let found = eventually(T, || async { !rest.incidents(&nowhere).await.is_empty() }).await;
    assert!(found, "an incident for the missing exchange");
    let task = rest
        .get(&format!("/external-task?processInstanceId={nowhere}"))
        .await[0]
        .clone();
    assert_eq!(task["retries"], json!(0), "{task}");
    let error = task["errorMessage"].as_str().unwrap_or_default();
    assert!(
        error.contains("does exchange `no_such_exchange` exist?"),
        "{task}"
    );
    assert_eq!(
        rest.stats().await["complete_ok"],
        json!(1),
        "only the first"
    );

    // The endpoint whose broker was never there: a warning from its probe, and procos ran on.
    let warned = procos.log_json().into_iter().any(|l| {
        l["level"] == "WARN" && l["message"] == "Probe failed." && l["endpoint"] == "down"
    });
    assert!(warned, "{}", procos.log_lines().join("\n"));
    assert_no_password(&procos, &rest, &task).await;
}

/// Answers each request on `queue`: first with a decoy of another correlation id, then with
/// `{"price": order × 10, "request_id": the request's message id}` under its correlation id.
async fn responder(conn: &lapin::Connection, queue: &str) {
    let ch = channel(conn).await;
    ch.queue_declare(
        queue.into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("queue");
    let mut requests = ch
        .basic_consume(
            queue.into(),
            "responder".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consume");
    tokio::spawn(async move {
        while let Some(Ok(request)) = requests.next().await {
            let props = &request.properties;
            let reply_to = props.reply_to().clone().expect("reply_to");
            let correlation = props.correlation_id().clone().expect("correlation_id");
            let body: Value = serde_json::from_slice(&request.data).expect("JSON");
            let id = props.message_id().clone().map(|m| m.to_string());
            let answers = [
                ("someone-else".into(), json!({"price": -1})),
                (
                    correlation,
                    json!({"price": body["order"].as_i64().unwrap_or(0) * 10, "request_id": id}),
                ),
            ];
            for (correlation_id, answer) in answers {
                ch.basic_publish(
                    "".into(),
                    reply_to.clone(),
                    BasicPublishOptions::default(),
                    answer.to_string().as_bytes(),
                    BasicProperties::default().with_correlation_id(correlation_id),
                )
                .await
                .expect("reply");
            }
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_gets_its_correlated_reply_and_a_silent_service_times_out() {
    let rabbit = rabbitmq::shared().await;
    let conn = rabbit.connect().await;
    responder(&conn, "quotes").await;
    // Routable, but nobody answers.
    channel(&conn)
        .await
        .queue_declare(
            "quotes_silent".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("queue");

    let engine = engine().await;
    let rest = Rest::new(&engine.url);
    let cfg = config(
        "",
        &["rpc", "silent"],
        "  quote: { pool: gp, endpoints: [rpc], retries: 3, retry_timeout: 60s, output: { variable: quote } }\n\
         \x20 quote_silent: { pool: gp, endpoints: [silent], retries: 3, retry_timeout: 60s }",
        "  rpc: { type: amqp, url: \"${AMQP_URL}\", mode: request_reply, routing_key: quotes, timeout: 5s }\n\
         \x20 silent: { type: amqp, url: \"${AMQP_URL}\", mode: request_reply, routing_key: quotes_silent, timeout: 1s }\n",
    );
    let work = Workdir::new(
        &cfg,
        &[
            (
                "quote.bpmn",
                &one_task_bpmn("quote_process", "quote", "NEVER"),
            ),
            (
                "silent.bpmn",
                &one_task_bpmn("silent_process", "quote_silent", "NEVER"),
            ),
        ],
    );
    let procos = daemon(&work, &engine.url, rabbit);
    rest.wait_deployed("quote_process", T).await;
    rest.wait_deployed("silent_process", T).await;

    let pi = rest.start("quote_process", json!({"order": 7})).await;
    let vars = rest.wait_ended(&pi, T).await;
    assert_eq!(vars["quote"]["price"], json!(70), "{vars:?}");
    assert!(vars["quote"]["request_id"].is_string(), "{vars:?}");

    let silent = rest.start("silent_process", json!({"order": 8})).await;
    let task = failed_to(&rest, &silent, 2).await;
    assert_eq!(task["retries"], json!(2), "{task}");
    let error = task["errorMessage"].as_str().unwrap_or_default();
    assert!(error.contains("no reply within timeout 1s"), "{task}");
    assert_eq!(rest.state(&silent).await, "ACTIVE");
    assert!(rest.incidents(&silent).await.is_empty());
    assert_eq!(rest.stats().await["complete_ok"], json!(1));
    assert_no_password(&procos, &rest, &task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_is_down_fails_the_task_transiently_and_the_retry_publishes_it() {
    // A node of its own: this test stops it.
    let rabbit = Rabbit::start().await;
    {
        let conn = rabbit.connect().await;
        channel(&conn)
            .await
            .queue_declare(
                "jobs".into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("durable queue");
        let _ = conn.close(200, "declared".into()).await;
    }

    let engine = engine().await;
    let rest = Rest::new(&engine.url);
    // No probe and no breaker: the call itself meets the dead broker.
    let cfg = config(
        "",
        &["mq"],
        "  job: { pool: gp, endpoints: [mq], retries: 50, retry_timeout: 1s, output: { variable: sent } }",
        "  mq:\n    type: amqp\n    url: ${AMQP_URL}\n    routing_key: jobs\n    timeout: 3s\n\
         \x20   probe: { enabled: false }\n    circuit: { enabled: false }\n",
    );
    let work = Workdir::new(
        &cfg,
        &[("job.bpmn", &one_task_bpmn("job_process", "job", "NEVER"))],
    );
    let procos = daemon(&work, &engine.url, &rabbit);
    rest.wait_deployed("job_process", T).await;
    // A first task opens the endpoint's connection.
    let first = rest.start("job_process", json!({"n": 0})).await;
    rest.wait_ended(&first, T).await;

    rabbit.stop().await;
    let pi = rest.start("job_process", json!({"n": 1})).await;
    let task = failed_to(&rest, &pi, 49).await;
    let error = task["errorMessage"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!("AMQP amqp://***@127.0.0.1:{}/%2f", rabbit.port)),
        "the endpoint's own error: {task}"
    );
    assert_eq!(rest.state(&pi).await, "ACTIVE");
    assert!(rest.incidents(&pi).await.is_empty());
    assert_eq!(
        rest.stats().await["complete_ok"],
        json!(1),
        "only the first"
    );
    assert_no_password(&procos, &rest, &task).await;

    rabbit.restart().await;
    let vars = rest.wait_ended(&pi, T).await;
    let message_id = vars["sent"]["message_id"].as_str().expect("message id");

    let conn = rabbit.connect().await;
    let ch = channel(&conn).await;
    let get = || ch.basic_get("jobs".into(), BasicGetOptions { no_ack: true });
    let mut bodies = Vec::new();
    while let Some(message) = get().await.expect("basic.get") {
        let body: Value = serde_json::from_slice(&message.delivery.data).expect("JSON");
        let id = message.delivery.properties.message_id().clone();
        bodies.push((body, id.map(|m| m.to_string())));
    }
    // Each task's message once (persistent: the first survived the restart), none twice.
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    assert_eq!(bodies[0].0, json!({"n": 0}));
    assert_eq!(bodies[1], (json!({"n": 1}), Some(message_id.to_string())));
    assert_eq!(rest.stats().await["complete_ok"], json!(2));
    for line in procos.log_lines() {
        assert!(!line.contains(PASSWORD), "password in a log line: {line}");
    }
}
