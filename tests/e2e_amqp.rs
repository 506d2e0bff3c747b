//! End to end: the real `procos` binary publishes tasks to a real RabbitMQ (Debian's
//! `rabbitmq-server`, a throwaway node: tests/support/rabbitmq.rs) with publisher confirms.
//!
//! - a confirmed message reaches the bound queue once, with the task id as its message id, and
//!   the task completes; an unroutable one (`mandatory`) fails the task transiently;
//! - request/reply: the correlated reply (not another one) is the task's result; a service
//!   that never answers fails the task transiently, naming the timeout;
//! - a broker that is down fails the task transiently and nothing is completed; after the
//!   broker is back, the engine's retry publishes it;
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
    let cfg = config(
        "",
        &["mq"],
        "  ship: { pool: gp, endpoints: [mq], retries: 3, retry_timeout: 60s, output: { variable: sent } }",
        "  mq:\n    type: amqp\n    url: ${AMQP_URL}\n    exchange: orders\n\
         \x20   routing_key: \"orders.{{ region }}\"\n\
         \x20   payload: { order: \"{{ order }}\", region: \"{{ region }}\" }\n\
         \x20   headers: { x-source: procos-e2e }\n",
    );
    let work = Workdir::new(
        &cfg,
        &[("ship.bpmn", &one_task_bpmn("ship_process", "ship", "NEVER"))],
    );
    let procos = daemon(&work, &engine.url, rabbit);
    rest.wait_deployed("ship_process", T).await;

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
    // The message id is the external task's id (what a consumer de-duplicates on).
    let log = procos.log_json();
    assert!(
        log.iter().any(|l| l.to_string().contains(message_id)),
        "the task id {message_id} is in procos's task span"
    );

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
    let cfg = config(
        "",
        &["mq"],
        "  job: { pool: gp, endpoints: [mq], retries: 50, retry_timeout: 1s, output: { variable: sent } }",
        "  mq:\n    type: amqp\n    url: ${AMQP_URL}\n    routing_key: jobs\n    timeout: 3s\n\
         \x20   probe: { every: 1s, timeout: 1s }\n    circuit: { open_for: 1s }\n",
    );
    let work = Workdir::new(
        &cfg,
        &[("job.bpmn", &one_task_bpmn("job_process", "job", "NEVER"))],
    );
    let procos = daemon(&work, &engine.url, &rabbit);
    rest.wait_deployed("job_process", T).await;
    // procos is connected (its probe passed) before the broker goes away.
    procos.wait_log("AMQP connection open.", T).await;

    rabbit.stop().await;
    let pi = rest.start("job_process", json!({"n": 1})).await;
    let task = failed_to(&rest, &pi, 49).await;
    assert_eq!(rest.state(&pi).await, "ACTIVE");
    assert!(rest.incidents(&pi).await.is_empty());
    assert_eq!(rest.stats().await["complete_ok"], json!(0), "nothing done");
    assert_no_password(&procos, &rest, &task).await;

    rabbit.restart().await;
    let vars = rest.wait_ended(&pi, T).await;
    let message_id = vars["sent"]["message_id"].as_str().expect("message id");

    let conn = rabbit.connect().await;
    let ch = channel(&conn).await;
    let get = || ch.basic_get("jobs".into(), BasicGetOptions { no_ack: true });
    let message = get().await.expect("basic.get").expect("the message");
    assert_eq!(
        serde_json::from_slice::<Value>(&message.delivery.data).expect("JSON"),
        json!({"n": 1})
    );
    assert_eq!(
        message
            .delivery
            .properties
            .message_id()
            .as_ref()
            .map(|m| m.as_str()),
        Some(message_id)
    );
    assert!(get().await.expect("basic.get").is_none(), "published once");
    assert_eq!(rest.stats().await["complete_ok"], json!(1));
    for line in procos.log_lines() {
        assert!(!line.contains(PASSWORD), "password in a log line: {line}");
    }
}
