//! Unit tests: config validation with YAML paths, statement choice, and every step of a task
//! against a real SQLite file (the PostgreSQL side runs in tests/e2e_database.rs against a real
//! server).

use serde_json::json;

use super::*;
use crate::endpoints::ErrorKind;

fn config(yaml: &str) -> DatabaseConfig {
    serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"))
}

fn problems(yaml: &str) -> Vec<(String, String)> {
    config(yaml).validate()
}

fn paths(yaml: &str) -> Vec<String> {
    problems(yaml).into_iter().map(|(p, _)| p).collect()
}

const SQLITE: &str = "url: 'sqlite::memory:'\n";

#[test]
fn a_good_config_has_no_problems() {
    let yaml = format!(
        "{SQLITE}statements:\n  insert_order: {{ sql: 'INSERT INTO orders (id, amount) VALUES ($1, $2)', \
         params: [order_id, amount], returns: count }}\n  \
         two: {{ steps: [{{ sql: 'DELETE FROM a WHERE id = ?', params: [id] }}, {{ sql: 'SELECT 1' }}] }}\n"
    );
    assert_eq!(problems(&yaml), []);
}

#[test]
fn a_template_in_sql_is_refused_at_its_path() {
    for (sql, found) in [
        ("SELECT * FROM t WHERE id = {{ id }}", "{{"),
        ("SELECT * FROM t {% if x %}", "{%"),
        ("SELECT * FROM ${TABLE}", "${"),
    ] {
        let yaml = format!("{SQLITE}statements:\n  find: {{ sql: '{sql}' }}\n");
        let ps = problems(&yaml);
        assert_eq!(ps.len(), 1, "{ps:?}");
        assert_eq!(ps[0].0, "statements.find.sql");
        assert!(
            ps[0].1.contains(&format!("template syntax `{found}`")),
            "{}",
            ps[0].1
        );
        assert!(ps[0].1.contains("bound parameters"), "{}", ps[0].1);
    }
    let yaml = format!(
        "{SQLITE}statements:\n  s: {{ steps: [{{ sql: 'SELECT 1' }}, {{ sql: 'SELECT {{{{ x }}}}' }}] }}\n\
         setup: ['CREATE TABLE {{{{ t }}}} (id INT)']\n"
    );
    assert_eq!(paths(&yaml), ["statements.s.steps[1].sql", "setup[0]"]);
}

#[test]
fn a_param_that_is_not_a_plain_variable_name_is_refused() {
    let yaml = format!(
        "{SQLITE}statements:\n  s: {{ sql: 'SELECT $1, $2, $3', params: [ok_name, '{{{{ x }}}}', customer.id] }}\n"
    );
    assert_eq!(
        paths(&yaml),
        ["statements.s.params[1]", "statements.s.params[2]"]
    );
}

#[test]
fn placeholders_must_match_params() {
    let yaml = format!("{SQLITE}statements:\n  s: {{ sql: 'SELECT $1, $2', params: [a] }}\n");
    let ps = problems(&yaml);
    assert_eq!(ps[0].0, "statements.s.params");
    assert!(
        ps[0].1.contains("names 1 variable(s) but `sql` takes 2"),
        "{}",
        ps[0].1
    );
    let yaml = format!("{SQLITE}statements:\n  s: {{ sql: 'SELECT $1, $3', params: [a, b, c] }}\n");
    assert_eq!(
        problems(&yaml)[0],
        (
            "statements.s.sql".into(),
            "uses parameters up to $3 but not $2".into()
        )
    );
}

#[test]
fn shape_limits_url_and_codes_are_checked() {
    let yaml = "url: 'mysql://u:hunter2secret@db/x'\nstatements: {}\nmax_connections: 0\n\
                statement_timeout: 0s\nconstraint_error_code: 'a b'\n";
    let ps = problems(yaml);
    let got: Vec<&str> = ps.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        got,
        [
            "url",
            "statements",
            "max_connections",
            "statement_timeout",
            "constraint_error_code"
        ]
    );
    assert!(
        ps.iter().all(|(_, m)| !m.contains("hunter2secret")),
        "{ps:?}"
    );
    let yaml = format!(
        "{SQLITE}statements:\n  s: {{ sql: 'SELECT 1', steps: [{{ sql: 'SELECT 2' }}] }}\n  t: {{ returns: one }}\n"
    );
    assert_eq!(paths(&yaml), ["statements.s.steps", "statements.t.sql"]);
    let unknown: Result<DatabaseConfig, _> = serde_yaml::from_str(&format!(
        "{SQLITE}statements: {{ s: {{ sql: x, retruns: one }} }}\n"
    ));
    assert!(
        unknown
            .unwrap_err()
            .to_string()
            .contains("unknown field `retruns`")
    );
}

#[test]
fn a_bad_postgres_url_never_shows_its_password() {
    let yaml = "url: 'postgres://app:pg-unit-SECRET-77@db:notaport/shop'\nstatements: { s: { sql: 'SELECT 1' } }\n";
    let ps = problems(yaml);
    assert_eq!(ps.len(), 1, "{ps:?}");
    assert_eq!(ps[0].0, "url");
    assert!(!ps[0].1.contains("pg-unit-SECRET-77"), "{}", ps[0].1);
    let e = DatabaseEndpoint::new("db", &config(yaml)).unwrap_err();
    assert!(!e.message.contains("pg-unit-SECRET-77"), "{}", e.message);
    let ok = config(
        "url: 'postgres://app:pg-unit-SECRET-78@db:5432/shop'\nstatements: { s: { sql: 'SELECT 1' } }\n",
    );
    let endpoint = DatabaseEndpoint::new("db", &ok).unwrap();
    assert_eq!(endpoint.location, "postgres://***@db:5432/shop");
    assert!(!format!("{endpoint:?}").contains("SECRET"));
}

fn request(topic: &str, variables: Value) -> EndpointRequest {
    let Value::Object(variables) = variables else {
        panic!("an object")
    };
    EndpointRequest {
        task_id: "t1".into(),
        topic: topic.into(),
        variables,
        ..Default::default()
    }
}

#[test]
fn a_task_picks_its_statement_by_property_then_topic_then_the_only_one() {
    let two = config(&format!(
        "{SQLITE}statements:\n  add: {{ sql: 'SELECT 1' }}\n  find: {{ sql: 'SELECT 2' }}\n"
    ));
    let e = DatabaseEndpoint::new("db", &two).unwrap();
    assert_eq!(
        e.statement_for(&request("find", json!({}))).unwrap().0,
        "find"
    );
    let mut r = request("find", json!({}));
    r.properties.insert(STATEMENT_PROPERTY.into(), "add".into());
    assert_eq!(e.statement_for(&r).unwrap().0, "add");
    let err = e.statement_for(&request("other", json!({}))).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Permanent);
    assert!(
        err.message
            .contains("no statement named like topic `other`")
            && err.message.contains("add, find"),
        "{}",
        err.message
    );
    r.properties
        .insert(STATEMENT_PROPERTY.into(), "nope".into());
    assert!(
        e.statement_for(&r)
            .unwrap_err()
            .message
            .contains("has no statement `nope`")
    );
    let one = config(&format!(
        "{SQLITE}statements:\n  only: {{ sql: 'SELECT 1' }}\n"
    ));
    let e = DatabaseEndpoint::new("db", &one).unwrap();
    assert_eq!(
        e.statement_for(&request("anything", json!({}))).unwrap().0,
        "only"
    );
}

/// An endpoint on a fresh SQLite file with an `orders` table and `statements` (YAML lines
/// indented by four spaces), plus `extra` top-level lines.
fn sqlite(dir: &tempfile::TempDir, statements: &str, extra: &str) -> DatabaseEndpoint {
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("db.sqlite").display()
    );
    let yaml = format!(
        "url: '{url}'\nsetup:\n  - CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, amount REAL, \
         qty INTEGER, paid BOOLEAN, due TEXT, note TEXT, meta TEXT)\n\
         statement_timeout: 2s\n{extra}statements:\n{statements}"
    );
    let c = config(&yaml);
    assert_eq!(c.validate(), [], "{yaml}");
    DatabaseEndpoint::new("shop", &c).unwrap()
}

const INSERT: &str = "    insert_order:\n      sql: INSERT INTO orders (id, amount, qty, paid, due, note, meta) VALUES ($1, $2, $3, $4, $5, $6, $7)\n      params: [order_id, amount, qty, paid, due, note, meta]\n      returns: count\n";
const FIND: &str = "    find_order:\n      sql: SELECT id, amount, qty, paid, due, note, meta FROM orders WHERE id = $1\n      params: [order_id]\n      returns: one\n      variable: order\n";
const LIST: &str = "    list_orders:\n      sql: SELECT id FROM orders ORDER BY id\n";

fn order(id: &str) -> Value {
    json!({
        "order_id": id, "amount": 12.5, "qty": 3, "paid": true,
        "due": "2025-01-23T14:42:45.000+0200", "note": null, "meta": {"gift": true, "tags": ["a"]}
    })
}

#[tokio::test]
async fn sqlite_round_trips_every_variable_kind_with_rows_one_and_count() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite(&dir, &format!("{INSERT}{FIND}{LIST}"), "");
    let out = db
        .call(&request("insert_order", order("A-1")))
        .await
        .unwrap();
    assert_eq!(out.output, json!({"count": 1}));
    db.call(&request("insert_order", order("A-2")))
        .await
        .unwrap();

    let found = db
        .call(&request("find_order", json!({"order_id": "A-1"})))
        .await
        .unwrap();
    assert_eq!(
        found.output,
        json!({"order": {
            "id": "A-1", "amount": 12.5, "qty": 3, "paid": true,
            "due": "2025-01-23T14:42:45.000+0200", "note": null,
            "meta": r#"{"gift":true,"tags":["a"]}"#
        }})
    );
    let all = db.call(&request("list_orders", json!({}))).await.unwrap();
    assert_eq!(all.output, json!({"rows": [{"id": "A-1"}, {"id": "A-2"}]}));
}

#[tokio::test]
async fn one_without_a_row_is_the_no_row_bpmn_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite(&dir, FIND, "no_row_error_code: ORDER_UNKNOWN\n");
    let e = db
        .call(&request("find_order", json!({"order_id": "none"})))
        .await
        .unwrap_err();
    assert_eq!(
        e.kind,
        ErrorKind::Business {
            error_code: "ORDER_UNKNOWN".into()
        }
    );
    assert_eq!(e.code.as_deref(), Some(class::DB_NO_ROW));
    assert!(
        e.message.contains("statement `find_order`"),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn a_unique_violation_is_the_constraint_bpmn_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite(&dir, INSERT, "");
    db.call(&request("insert_order", order("A-1")))
        .await
        .unwrap();
    let e = db
        .call(&request("insert_order", order("A-1")))
        .await
        .unwrap_err();
    assert_eq!(
        e.kind,
        ErrorKind::Business {
            error_code: "db_constraint".into()
        }
    );
    assert_eq!(e.code.as_deref(), Some(class::DB_CONSTRAINT));
    assert!(
        e.message.contains("UNIQUE constraint failed"),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn a_syntax_error_is_permanent_and_names_the_statement() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite(
        &dir,
        "    broken: { sql: 'SELEC id FROM orders' }\n    missing: { sql: 'SELECT nope FROM orders' }\n",
        "",
    );
    for name in ["broken", "missing"] {
        let e = db.call(&request(name, json!({}))).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Permanent, "{e:?}");
        assert_eq!(e.code.as_deref(), Some(class::DB_STATEMENT));
        assert!(
            e.message
                .contains(&format!("database `shop` statement `{name}`")),
            "{}",
            e.message
        );
    }
}

#[tokio::test]
async fn a_failing_later_step_rolls_back_the_earlier_ones() {
    let dir = tempfile::tempdir().unwrap();
    let statements = format!(
        "{INSERT}{LIST}    insert_twice:\n      steps:\n        - {{ sql: 'INSERT INTO orders (id) VALUES ($1)', params: [first] }}\n        - {{ sql: 'INSERT INTO orders (id) VALUES ($1)', params: [second] }}\n      returns: count\n"
    );
    let db = sqlite(&dir, &statements, "");
    db.call(&request("insert_order", order("taken")))
        .await
        .unwrap();
    let e = db
        .call(&request(
            "insert_twice",
            json!({"first": "new", "second": "taken"}),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code.as_deref(), Some(class::DB_CONSTRAINT));
    assert!(
        e.message.contains("statement `insert_twice` step 2"),
        "{}",
        e.message
    );
    let all = db.call(&request("list_orders", json!({}))).await.unwrap();
    assert_eq!(
        all.output,
        json!({"rows": [{"id": "taken"}]}),
        "`new` was rolled back"
    );
    db.call(&request(
        "insert_twice",
        json!({"first": "x", "second": "y"}),
    ))
    .await
    .unwrap();
    let all = db.call(&request("list_orders", json!({}))).await.unwrap();
    assert_eq!(all.output["rows"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn a_missing_variable_is_a_param_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite(&dir, FIND, "");
    let e = db
        .call(&request("find_order", json!({})))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Permanent);
    assert_eq!(e.code.as_deref(), Some(class::DB_PARAM));
    assert!(
        e.message.contains("parameter $1 (variable `order_id`)"),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn more_rows_than_max_rows_fail_the_task() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite(&dir, &format!("{INSERT}{LIST}"), "max_rows: 1\n");
    for id in ["a", "b"] {
        db.call(&request("insert_order", order(id))).await.unwrap();
    }
    let e = db
        .call(&request("list_orders", json!({})))
        .await
        .unwrap_err();
    assert_eq!(e.code.as_deref(), Some(class::RESPONSE_TOO_LARGE));
}

#[tokio::test]
async fn a_statement_longer_than_statement_timeout_is_stopped_and_fails_transiently() {
    let dir = tempfile::tempdir().unwrap();
    // A recursive CTE that counts far: seconds of CPU, no sleeping function needed.
    let statements = "    slow:\n      sql: WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 \
                      FROM c WHERE x < 100000000) SELECT max(x) AS n FROM c\n    \
                      quick:\n      sql: SELECT 1 AS n\n";
    let db = sqlite(&dir, statements, "max_connections: 1\n");
    let db = DatabaseEndpoint {
        statement_timeout: Duration::from_millis(200),
        ..db
    };
    let started = std::time::Instant::now();
    let e = db.call(&request("slow", json!({}))).await.unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Transient { .. }), "{e:?}");
    assert_eq!(e.code.as_deref(), Some(class::TIMEOUT));
    assert!(
        e.message.contains("statement `slow`") && e.message.contains("200ms"),
        "{}",
        e.message
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // The statement was stopped inside SQLite, not left running: the pool's one connection
    // serves the next task at once.
    let started = std::time::Instant::now();
    let ok = db.call(&request("quick", json!({}))).await.unwrap();
    assert_eq!(ok.output, json!({"rows": [{"n": 1}]}));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}
