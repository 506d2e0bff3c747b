//! The `database` endpoint against a real PostgreSQL (Debian's, started once for this binary by
//! `support::postgres`) and real SQLite files: the library for the type round trip, timeouts and
//! rollbacks; the real `procos` binary for what reaches the engine — completions with typed
//! rows, a unique violation as the BPMN error the process catches, a syntax error as an
//! incident naming the statement, the database down as a failure with retries left and the
//! task done once it is back, and the URL's password in no log line.

mod support;

use std::time::{Duration, Instant};

use procos::endpoints::database::{DatabaseConfig, DatabaseEndpoint};
use procos::endpoints::{Endpoint, EndpointRequest, ErrorKind};
use serde_json::{Value, json};
use support::postgres::{PASSWORD, TcpSwitch, database};
use support::{Procos, Rest, Workdir, config, engine, eventually, one_task_bpmn};

const T: Duration = Duration::from_secs(30);

/// Every column type the round trip covers, created by the endpoint's `setup`.
const TABLE: &str = "CREATE TABLE IF NOT EXISTS orders (id text PRIMARY KEY, qty int4, small int2, \
    big int8, price float8, total numeric(12,2), paid bool, due timestamptz, day date, \
    local_ts timestamp, note varchar(100), meta jsonb, ref uuid)";

/// The statements of the shop endpoint, as YAML lines under `statements:`.
fn statements() -> String {
    "    insert_order:\n\
     \x20     sql: INSERT INTO orders (id, qty, small, big, price, total, paid, due, day, local_ts, note, meta, ref) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)\n\
     \x20     params: [order_id, qty, small, big, price, total, paid, due, day, local_ts, note, meta, ref]\n\
     \x20     returns: count\n\
     \x20   find_order:\n\
     \x20     sql: SELECT * FROM orders WHERE id = $1\n\
     \x20     params: [order_id]\n\
     \x20     returns: one\n\
     \x20     variable: order\n\
     \x20   list_orders:\n\
     \x20     sql: SELECT id, qty FROM orders WHERE qty >= $1 ORDER BY id\n\
     \x20     params: [min_qty]\n\
     \x20   broken:\n\
     \x20     sql: SELEC id FROM orders\n\
     \x20   sleepy:\n\
     \x20     sql: SELECT pg_sleep(5)\n\
     \x20   nap:\n\
     \x20     sql: SELECT pg_sleep(0.4)\n\
     \x20   insert_two:\n\
     \x20     steps:\n\
     \x20       - { sql: 'INSERT INTO orders (id) VALUES ($1)', params: [first] }\n\
     \x20       - { sql: 'INSERT INTO orders (id) VALUES ($1)', params: [second] }\n\
     \x20     returns: count\n"
        .to_string()
}

/// The endpoint's YAML body (indented by two spaces) for `url` plus `extra` lines; a
/// `connect_timeout` of 1s and a `statement_timeout` of 2s unless `extra` sets them.
fn endpoint_yaml(url: &str, extra: &str) -> String {
    let default = |key: &str, value: &str| {
        if extra.contains(key) {
            String::new()
        } else {
            format!("  {key}: {value}\n")
        }
    };
    format!(
        "  type: database\n  url: {url}\n  setup: [\"{TABLE}\"]\n{}{}{extra}  statements:\n{}",
        default("connect_timeout", "1s"),
        default("statement_timeout", "2s"),
        statements()
    )
}

fn endpoint(url: &str, extra: &str) -> DatabaseEndpoint {
    let yaml = endpoint_yaml(url, extra)
        .lines()
        .filter(|l| !l.trim_start().starts_with("type:"))
        .map(|l| l.strip_prefix("  ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    let config: DatabaseConfig = serde_yaml::from_str(&yaml).expect("config");
    assert_eq!(config.validate(), Vec::<(String, String)>::new());
    DatabaseEndpoint::new("shop", &config).expect("builds")
}

fn request(topic: &str, variables: Value) -> EndpointRequest {
    EndpointRequest {
        task_id: "t".into(),
        topic: topic.into(),
        variables: variables.as_object().expect("object").clone(),
        ..Default::default()
    }
}

/// A full order as the engine decodes Camunda's typed variables: String, Integer, Short, Long,
/// Double, Boolean, Date (engine format), Null, Json.
fn order_variables(id: &str) -> Value {
    json!({
        "order_id": id, "qty": 3, "small": 2, "big": 9_000_000_000_i64, "price": 12.5,
        "total": 25.5, "paid": true, "due": "2025-01-23T14:42:45.000+0200",
        "day": "2025-01-23T14:42:45.000+0200", "local_ts": "2025-01-23T14:42:45.000+0200",
        "note": null, "meta": {"gift": true, "tags": ["a", "b"]},
        "ref": "6f1c7c3e-8a40-4b3b-9d57-0f8d2f6b1a11"
    })
}

/// What `find_order` gives back for [`order_variables`].
fn expected_order(id: &str) -> Value {
    json!({
        "id": id, "qty": 3, "small": 2, "big": 9_000_000_000_i64, "price": 12.5, "total": 25.5,
        "paid": true, "due": "2025-01-23T12:42:45.000+0000", "day": "2025-01-23",
        "local_ts": "2025-01-23T14:42:45.000", "note": null,
        "meta": {"gift": true, "tags": ["a", "b"]}, "ref": "6f1c7c3e-8a40-4b3b-9d57-0f8d2f6b1a11"
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_round_trips_every_variable_type_with_rows_one_and_count() {
    let db = endpoint(&database().await, "");
    let inserted = db
        .call(&request("insert_order", order_variables("A-1")))
        .await
        .expect("insert");
    assert_eq!(inserted.output, json!({"count": 1}));
    let mut small = order_variables("A-2");
    small["qty"] = json!(1);
    db.call(&request("insert_order", small))
        .await
        .expect("insert");

    let found = db
        .call(&request("find_order", json!({"order_id": "A-1"})))
        .await
        .expect("find");
    assert_eq!(found.output, json!({ "order": expected_order("A-1") }));

    let listed = db
        .call(&request("list_orders", json!({"min_qty": 2})))
        .await
        .expect("list");
    assert_eq!(listed.output, json!({"rows": [{"id": "A-1", "qty": 3}]}));

    // Nulls of every type bind as SQL NULL and come back as null.
    let mut nulls = json!({"order_id": "N"});
    for k in [
        "qty", "small", "big", "price", "total", "paid", "due", "day", "local_ts", "note", "meta",
        "ref",
    ] {
        nulls[k] = Value::Null;
    }
    db.call(&request("insert_order", nulls))
        .await
        .expect("nulls");
    let found = db
        .call(&request("find_order", json!({"order_id": "N"})))
        .await
        .expect("find");
    let order = found.output["order"].as_object().expect("a row").clone();
    assert!(
        order.iter().all(|(k, v)| k == "id" || v.is_null()),
        "{order:?}"
    );

    // A value that does not fit its parameter's type is refused naming the parameter.
    let mut bad = order_variables("B");
    bad["small"] = json!(70_000);
    let e = db.call(&request("insert_order", bad)).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Permanent);
    assert_eq!(e.code.as_deref(), Some("db_param"));
    assert!(
        e.message.contains("parameter $3 (variable `small`)") && e.message.contains("int2"),
        "{}",
        e.message
    );
    // `one` without a row: the no-row BPMN error.
    let e = db
        .call(&request("find_order", json!({"order_id": "nope"})))
        .await
        .unwrap_err();
    assert_eq!(
        e.kind,
        ErrorKind::Business {
            error_code: "db_no_row".into()
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_statement_timeout_stops_a_slow_statement_transiently() {
    let db = endpoint(&database().await, "  statement_timeout: 200ms\n");
    let started = Instant::now();
    let e = db.call(&request("sleepy", json!({}))).await.unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Transient { .. }), "{e:?}");
    assert_eq!(e.code.as_deref(), Some("timeout"));
    assert!(e.message.contains("statement `sleepy`"), "{}", e.message);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "stopped by the server after 200ms, not after pg_sleep's 5s: {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_rolls_back_the_whole_task_when_a_later_step_fails() {
    let db = endpoint(&database().await, "");
    db.call(&request("insert_order", order_variables("taken")))
        .await
        .expect("insert");
    let e = db
        .call(&request(
            "insert_two",
            json!({"first": "fresh", "second": "taken"}),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code.as_deref(), Some("db_constraint"));
    assert!(
        e.message.contains("statement `insert_two` step 2"),
        "{}",
        e.message
    );
    let e = db
        .call(&request("find_order", json!({"order_id": "fresh"})))
        .await
        .unwrap_err();
    assert_eq!(
        e.code.as_deref(),
        Some("db_no_row"),
        "step 1 was rolled back"
    );
}

/// A process per topic, all served by the `shop` endpoint at `${DB_URL}`.
fn shop_workdir(extra: &str) -> Workdir {
    let cfg = config(
        "",
        &["shop"],
        "  insert_order: { pool: gp, endpoints: [shop], retries: 5, retry_timeout: 500ms }\n  \
         find_order: { pool: gp, endpoints: [shop], retries: 1 }\n  \
         broken: { pool: gp, endpoints: [shop], retries: 3, retry_timeout: 100ms }",
        &format!(
            "  shop:\n{}",
            endpoint_yaml(
                "${DB_URL}",
                &format!("  constraint_error_code: DUPLICATE_ORDER\n{extra}")
            )
            .lines()
            .map(|l| format!("  {l}\n"))
            .collect::<String>()
        ),
    );
    Workdir::new(
        &cfg,
        &[
            (
                "insert.bpmn",
                &one_task_bpmn("insert_process", "insert_order", "DUPLICATE_ORDER"),
            ),
            (
                "find.bpmn",
                &one_task_bpmn("find_process", "find_order", "db_no_row"),
            ),
            (
                "broken.bpmn",
                &one_task_bpmn("broken_process", "broken", "NEVER"),
            ),
        ],
    )
}

fn daemon(work: &Workdir, engine: &str, db_url: &str) -> Procos {
    Procos::spawn(
        work.path(),
        &["--config", "pde.yaml"],
        &[("CAMUNDA_URL", engine), ("DB_URL", db_url)],
    )
}

/// [`order_variables`] in Camunda's wire form, each with its Camunda type.
fn typed_order(id: &str) -> Value {
    json!({
        "order_id": {"value": id, "type": "String"},
        "qty": {"value": 3, "type": "Integer"},
        "small": {"value": 2, "type": "Short"},
        "big": {"value": 9_000_000_000_i64, "type": "Long"},
        "price": {"value": 12.5, "type": "Double"},
        "total": {"value": 25.5, "type": "Double"},
        "paid": {"value": true, "type": "Boolean"},
        "due": {"value": "2025-01-23T14:42:45.000+0200", "type": "Date"},
        "day": {"value": "2025-01-23T14:42:45.000+0200", "type": "Date"},
        "local_ts": {"value": "2025-01-23T14:42:45.000+0200", "type": "Date"},
        "note": {"value": null, "type": "Null"},
        "meta": {"value": "{\"gift\":true,\"tags\":[\"a\",\"b\"]}", "type": "Json"},
        "ref": {"value": "6f1c7c3e-8a40-4b3b-9d57-0f8d2f6b1a11", "type": "String"},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_procos_typed_variables_land_in_postgres_and_a_duplicate_is_the_caught_bpmn_error()
{
    let url = database().await;
    let engine = engine().await;
    let rest = Rest::new(&engine.url);
    let work = shop_workdir("");
    let procos = daemon(&work, &engine.url, &url);
    rest.wait_deployed("insert_process", T).await;

    let pi = rest.start_typed("insert_process", typed_order("E-1")).await;
    let vars = rest.wait_ended(&pi, T).await;
    assert_eq!(vars["count"], json!(1), "{vars:?}");
    let pi = rest.start("find_process", json!({"order_id": "E-1"})).await;
    let vars = rest.wait_ended(&pi, T).await;
    assert_eq!(vars["order"], expected_order("E-1"));

    // The same order again: the unique violation is the BPMN error the boundary event catches.
    let pi = rest.start_typed("insert_process", typed_order("E-1")).await;
    rest.wait_ended(&pi, T).await;
    let stats = rest.stats().await;
    assert_eq!(stats["bpmn_error_calls"], json!(1), "{stats}");
    assert!(rest.incidents(&pi).await.is_empty());

    // A syntax error: an incident at once (no retries), naming the statement.
    let pi = rest.start("broken_process", json!({})).await;
    assert!(
        eventually(T, || async { !rest.incidents(&pi).await.is_empty() }).await,
        "an incident"
    );
    let task = &rest
        .get(&format!("/external-task?processInstanceId={pi}"))
        .await[0];
    assert_eq!(task["retries"], json!(0));
    let message = task["errorMessage"].as_str().unwrap_or("");
    assert!(
        message.contains("database `shop` statement `broken`") && message.contains("syntax"),
        "{task}"
    );
    assert_eq!(rest.stats().await["failure_calls"], json!(1));

    let logs = procos.log_lines().join("\n");
    assert!(
        !logs.contains(PASSWORD),
        "the URL's password is in a log line"
    );
    assert!(!message.contains(PASSWORD));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_is_a_transient_failure_and_the_task_is_done_once_it_is_back() {
    let url = database().await;
    let switch = TcpSwitch::start(false).await;
    let engine = engine().await;
    let rest = Rest::new(&engine.url);
    let work = shop_workdir("  probe: { enabled: false }\n");
    let procos = daemon(&work, &engine.url, &switch.url(&url));
    rest.wait_deployed("insert_process", T).await;
    // Up: the setup runs and one order goes in.
    let pi = rest.start_typed("insert_process", typed_order("D-1")).await;
    rest.wait_ended(&pi, T).await;

    switch.set_down(true);
    let pi = rest.start_typed("insert_process", typed_order("D-2")).await;
    let failed = eventually(T, || async {
        let tasks = rest
            .get(&format!("/external-task?processInstanceId={pi}"))
            .await;
        tasks[0]["retries"].as_i64().is_some_and(|r| r < 5)
    })
    .await;
    assert!(failed, "the failure is reported");
    let task = &rest
        .get(&format!("/external-task?processInstanceId={pi}"))
        .await[0];
    assert!(
        task["retries"].as_i64().unwrap_or(0) > 0,
        "retries left: {task}"
    );
    assert!(rest.incidents(&pi).await.is_empty(), "not an incident");
    let message = task["errorMessage"].as_str().unwrap_or("");
    assert!(message.contains("statement `insert_order`"), "{task}");
    // The URL is named, without its credentials.
    assert!(message.contains("postgres://***@127.0.0.1:"), "{message}");
    assert!(!message.contains(PASSWORD), "{message}");

    switch.set_down(false);
    let vars = rest.wait_ended(&pi, T).await;
    assert_eq!(vars["count"], json!(1));
    let logs = procos.log_lines().join("\n");
    assert!(
        !logs.contains(PASSWORD),
        "the URL's password is in a log line"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_needs_no_server_setup_creates_the_table_and_tasks_read_what_others_wrote() {
    let engine = engine().await;
    let rest = Rest::new(&engine.url);
    let cfg = config(
        "",
        &["notes"],
        "  add_note: { pool: gp, endpoints: [notes] }\n  read_notes: { pool: gp, endpoints: [notes] }",
        "  notes:\n    type: database\n    url: sqlite://notes.db?mode=rwc\n    \
         setup: ['CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL, done BOOLEAN)']\n    \
         statements:\n      add_note: { sql: 'INSERT INTO notes (body, done) VALUES (?, ?)', params: [body, done], returns: count }\n      \
         read_notes: { sql: 'SELECT id, body, done FROM notes ORDER BY id', variable: notes }\n",
    );
    let work = Workdir::new(
        &cfg,
        &[
            (
                "add.bpmn",
                &one_task_bpmn("add_process", "add_note", "NEVER"),
            ),
            (
                "read.bpmn",
                &one_task_bpmn("read_process", "read_notes", "NEVER"),
            ),
        ],
    );
    let _procos = daemon(&work, &engine.url, "unused");
    rest.wait_deployed("read_process", T).await;
    for (body, done) in [("buy milk", true), ("call Ada", false)] {
        let pi = rest
            .start("add_process", json!({"body": body, "done": done}))
            .await;
        assert_eq!(rest.wait_ended(&pi, T).await["count"], json!(1));
    }
    let pi = rest.start("read_process", json!({})).await;
    let vars = rest.wait_ended(&pi, T).await;
    assert_eq!(
        vars["notes"],
        json!([
            {"id": 1, "body": "buy milk", "done": true},
            {"id": 2, "body": "call Ada", "done": false}
        ])
    );
    assert!(work.path().join("notes.db").exists());
}

#[test]
fn procos_validate_refuses_a_template_in_sql_and_a_param_that_is_not_a_name_with_their_paths() {
    let cfg = config(
        "",
        &["db"],
        "  find: { pool: gp, endpoints: [db] }",
        "  db:\n    type: database\n    url: sqlite://x.db\n    statements:\n      \
         find: { sql: \"SELECT * FROM t WHERE id = '{{ id }}'\" }\n      \
         other: { sql: 'SELECT $1', params: ['customer.id'] }\n",
    );
    let work = Workdir::new(&cfg, &[]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_procos"))
        .args(["validate", "--config", "pde.yaml"])
        .current_dir(work.path())
        .env("CAMUNDA_URL", "http://127.0.0.1:9/engine-rest")
        .output()
        .expect("procos validate runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("endpoints.db.statements.find.sql") && text.contains("template syntax `{{`"),
        "{text}"
    );
    assert!(
        text.contains("endpoints.db.statements.other.params[0]")
            && text.contains("plain variable name"),
        "{text}"
    );
}

#[test]
fn the_readme_database_example_is_valid() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    let section = &readme[readme.find("### Database endpoint").expect("section")..];
    let start = section.find("```yaml\n").expect("yaml block") + "```yaml\n".len();
    let yaml = &section[start..start + section[start..].find("```").expect("block end")];
    let yaml = yaml.replace(
        "${SHOP_DB_URL}",
        "postgres://shop:pw-readme-1@db.example:5432/shop",
    );
    let doc: serde_yaml::Value = serde_yaml::from_str(&yaml).expect("YAML");
    let body = doc["endpoints"]["shop_db"].clone();
    let procos::endpoints::EndpointConfig::Database(config) =
        serde_yaml::from_value(body).expect("a database endpoint")
    else {
        panic!("not a database endpoint")
    };
    assert_eq!(config.validate(), Vec::<(String, String)>::new());
    assert_eq!(config.statements.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_select_1_probe_opens_the_breaker_while_postgres_is_down_and_closes_it_after() {
    use procos::endpoints::health::BreakerState;
    use procos::endpoints::{BuildContext, EndpointConfig};
    let url = database().await;
    let switch = TcpSwitch::start(true).await;
    let yaml = format!(
        "type: database\nurl: {}\nconnect_timeout: 500ms\ncircuit: {{ failure_threshold: 2 }}\n\
         probe: {{ every: 100ms, timeout: 2s }}\n\
         statements: {{ one: {{ sql: 'SELECT 1 AS n', returns: one }} }}\n",
        switch.url(&url)
    );
    let config: EndpointConfig = serde_yaml::from_str(&yaml).expect("config");
    let cx = BuildContext::default();
    let stacked = config.build("shop", &cx).expect("builds");
    let health = cx.health().clone();

    let opened = eventually(T, || async {
        let h = health.get("shop");
        h.breaker == BreakerState::Open && h.last_probe.is_some_and(|(_, passed)| !passed)
    })
    .await;
    assert!(
        opened,
        "a failing SELECT 1 opens the breaker: {:?}",
        health.get("shop")
    );
    let last_error = health.get("shop").last_error.unwrap_or_default();
    assert!(last_error.contains("probe (SELECT 1)"), "{last_error}");
    assert!(!last_error.contains(PASSWORD), "{last_error}");
    let refused = stacked.call(&request("one", json!({}))).await.unwrap_err();
    assert_eq!(refused.code.as_deref(), Some("circuit_open"));

    switch.set_down(false);
    let recovered = eventually(T, || async {
        health
            .get("shop")
            .last_probe
            .is_some_and(|(_, passed)| passed)
            && stacked.call(&request("one", json!({}))).await.is_ok()
    })
    .await;
    assert!(recovered, "{:?}", health.get("shop"));
    let row = stacked
        .call(&request("one", json!({})))
        .await
        .expect("a row");
    assert_eq!(row.output, json!({"row": {"n": 1}}));
    cx.shutdown().cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_holds_at_most_max_connections_and_the_others_wait_for_one() {
    let url = database().await;
    let db = std::sync::Arc::new(endpoint(
        &url,
        "  max_connections: 2\n  connect_timeout: 10s\n",
    ));
    let calls: Vec<_> = (0..5)
        .map(|_| {
            let db = db.clone();
            tokio::spawn(async move { db.call(&request("nap", json!({}))).await })
        })
        .collect();
    let observer = sqlx::PgPool::connect(&url).await.expect("connect");
    let mut most = 0;
    while calls.iter().any(|c| !c.is_finished()) {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = 'procos'",
        )
        .fetch_one(&observer)
        .await
        .expect("count");
        most = most.max(n);
    }
    for call in calls {
        call.await
            .expect("joined")
            .expect("every call is served in turn");
    }
    assert_eq!(most, 2, "connections of the pool at most");
}
