//! End to end: adaptive routing through the real `procos` binary and the in-repo engine, over
//! three fake OpenAI-compatible servers with the best one listed last; then a restart on the same
//! `state_dir`, after which the learned preference holds from the first task on.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use support::ai::completion;
use support::{Procos, Rest, Workdir, config, engine, one_task_bpmn, with_state_dir};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const T: Duration = Duration::from_secs(60);

const VALID: &str = r#"{"category": "billing", "urgency": "high"}"#;

/// Every other call answers `bad`, the others a valid classification.
struct EveryOther {
    calls: AtomicUsize,
    bad: ResponseTemplate,
}

impl Respond for EveryOther {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        if self.calls.fetch_add(1, Ordering::Relaxed).is_multiple_of(2) {
            self.bad.clone()
        } else {
            ResponseTemplate::new(200).set_body_json(completion(VALID))
        }
    }
}

async fn server(respond: impl Respond + 'static) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(respond)
        .mount(&server)
        .await;
    server
}

fn endpoint(name: &str, server: &MockServer) -> String {
    format!(
        "  {name}:\n    type: openai\n    base_url: {}/v1\n    api_key: test-key\n    model: gpt-test\n    response_format: json_object\n    prompt: \"Classify: {{{{ text }}}}\"\n    max_retries: 0\n",
        server.uri()
    )
}

async fn calls(server: &MockServer) -> usize {
    server.received_requests().await.unwrap_or_default().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_warm_up_most_tasks_go_to_the_best_endpoint_listed_last_and_the_preference_survives_a_restart()
 {
    let engine = engine().await;
    let rest = Rest::new(&engine.url);
    // `flaky` fails every other call (503), `sloppy` answers every other call with broken JSON,
    // `best` always answers well. Listed flaky, sloppy, best.
    let flaky = server(EveryOther {
        calls: AtomicUsize::new(0),
        bad: ResponseTemplate::new(503).set_body_json(json!({"error": {"message": "overloaded"}})),
    })
    .await;
    let sloppy = server(EveryOther {
        calls: AtomicUsize::new(0),
        bad: ResponseTemplate::new(200).set_body_json(completion("Sure! It is about billing.")),
    })
    .await;
    let best =
        server(|_: &Request| ResponseTemplate::new(200).set_body_json(completion(VALID))).await;
    let topic = "  classify:\n    pool: gp\n    endpoints: [flaky, sloppy, best]\n    retries: 3\n    retry_timeout: 100ms\n    output: { required: [category, urgency] }\n    routing: { strategy: adaptive, explore: 0.0, min_samples: 5, route_variable: pde_route }\n";
    let endpoints = [
        endpoint("flaky", &flaky),
        endpoint("sloppy", &sloppy),
        endpoint("best", &best),
    ]
    .concat();
    let cfg = with_state_dir(&config("", &["flaky", "sloppy", "best"], topic, &endpoints));
    let bpmn = one_task_bpmn("route", "classify", "NEVER");
    let work = Workdir::new(&cfg, &[("route.bpmn", &bpmn)]);
    let mut procos = Procos::daemon(&work, &engine.url);
    rest.wait_deployed("route", T).await;

    let mut firsts = Vec::new();
    for wave in [20, 40] {
        firsts.extend(run_wave(&rest, wave).await);
    }
    let after_warm_up = &firsts[20..];
    let to_best = after_warm_up.iter().filter(|e| *e == "best").count();
    assert!(
        to_best >= 36,
        "after warm-up {to_best} of 40 tasks went first to `best`: {after_warm_up:?}"
    );
    assert!(calls(&best).await >= 36);
    // Every choice is logged with its reason, on the task's one INFO line.
    let routes: Vec<Value> = procos
        .log_json()
        .into_iter()
        .filter(|l| l["message"] == "Task finished.")
        .collect();
    assert!(routes.len() >= 60, "one line per task: {}", routes.len());
    assert!(
        routes
            .iter()
            .all(|l| l["strategy"] == "adaptive" && l["reason"].is_string())
    );
    // Each was measured during the warm-up (`min_samples: 5`) before the policy trusted it.
    assert!(calls(&flaky).await >= 5 && calls(&sloppy).await >= 5);

    // A restart on the same state_dir: what was learned is loaded, not learned again.
    procos.sigterm();
    assert_eq!(
        procos.exit_code(T).await,
        0,
        "a clean stop flushes the learner"
    );
    let (flaky_before, sloppy_before) = (calls(&flaky).await, calls(&sloppy).await);
    let procos = Procos::daemon(&work, &engine.url);
    let after_restart = run_wave(&rest, 20).await;
    let to_best = after_restart.iter().filter(|e| *e == "best").count();
    assert!(
        to_best >= 19,
        "after the restart {to_best} of 20 tasks went first to `best`: {after_restart:?}"
    );
    assert!(
        calls(&flaky).await - flaky_before + calls(&sloppy).await - sloppy_before <= 2,
        "no second warm-up after the restart"
    );
    assert!(
        procos
            .log_json()
            .iter()
            .any(|l| l["message"] == "Learner loaded." && l["statistics"].as_u64() >= Some(3)),
        "the start-up log says what was loaded"
    );
}

/// Starts `n` instances, waits for each to complete, and returns the endpoint each route put first.
async fn run_wave(rest: &Rest, n: usize) -> Vec<String> {
    let mut pis = Vec::new();
    for i in 0..n {
        pis.push(
            rest.start("route", json!({"text": format!("ticket {i}")}))
                .await,
        );
    }
    let mut firsts = Vec::new();
    for pi in pis {
        let vars = rest.wait_ended(&pi, T).await;
        assert_eq!(
            vars["category"],
            json!("billing"),
            "every task completes: {vars:?}"
        );
        firsts.push(
            vars["pde_route"]["endpoint"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        );
    }
    firsts
}
