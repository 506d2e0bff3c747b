//! The shipped deployment files keep their promises: every Kubernetes manifest under
//! `deploy/kubernetes/` parses and holds the invariants an operator relies on, its ConfigMap's
//! pde.yaml passes `procos validate` and runs, and every metric the Grafana dashboard queries
//! exists in the `/metrics` of a real procos after tasks ran (not a hand-kept list).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use support::ai::completion;
use support::{Procos, Rest, Workdir, engine, repo};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The admin port the probes, the Service and Prometheus use.
const ADMIN_PORT: u64 = 9464;

fn kube_dir() -> PathBuf {
    repo().join("deploy/kubernetes")
}

/// Every document of every manifest, as JSON values, with the file it came from.
fn manifests() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(kube_dir())
        .expect("deploy/kubernetes")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read");
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: not YAML: {e}", file.display()));
            if !value.is_null() {
                out.push((
                    file.file_name().expect("name").to_string_lossy().into(),
                    value,
                ));
            }
        }
    }
    out
}

fn kind<'a>(all: &'a [(String, Value)], kind: &str) -> &'a Value {
    let found: Vec<_> = all.iter().filter(|(_, v)| v["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "exactly one {kind}");
    &found[0].1
}

/// The ConfigMap's pde.yaml, as text and parsed.
fn pde_yaml(all: &[(String, Value)]) -> (String, Value) {
    let text = kind(all, "ConfigMap")["data"]["pde.yaml"]
        .as_str()
        .expect("ConfigMap data pde.yaml")
        .to_string();
    let parsed: Value = serde_yaml::from_str(&text).expect("pde.yaml parses");
    (text, parsed)
}

fn seconds(humantime: &str) -> u64 {
    humantime::parse_duration(humantime)
        .expect("a duration")
        .as_secs()
}

/// `${VAR}` names (without `:-default`) a config requires from the environment.
fn required_vars(text: &str) -> BTreeSet<String> {
    let re = regex::Regex::new(r"\$\{([A-Z_][A-Z0-9_]*)(:-[^}]*)?\}").expect("regex");
    re.captures_iter(text)
        .filter(|c| c.get(2).is_none())
        .map(|c| c[1].to_string())
        .collect()
}

#[test]
fn every_manifest_parses_and_keeps_the_operators_invariants() {
    let all = manifests();
    let files: BTreeSet<&str> = all.iter().map(|(f, _)| f.as_str()).collect();
    // kustomization lists every manifest, and each exists.
    let kustomization = kind(&all, "Kustomization");
    let listed: BTreeSet<&str> = kustomization["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| r.as_str().expect("a file"))
        .collect();
    let others: BTreeSet<&str> = files
        .iter()
        .copied()
        .filter(|f| *f != "kustomization.yaml")
        .collect();
    assert_eq!(listed, others, "kustomization.yaml lists every manifest");

    let deployment = kind(&all, "Deployment");
    let spec = &deployment["spec"];
    assert!(
        spec["replicas"].as_u64().expect("replicas") > 1,
        "more than one replica"
    );
    let pod = &spec["template"]["spec"];
    let containers = pod["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    // Probes on the admin server's port and paths.
    let ports: BTreeMap<&str, u64> = c["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap_or(""),
                p["containerPort"].as_u64().expect("port"),
            )
        })
        .collect();
    let port_of = |probe: &Value| match &probe["httpGet"]["port"] {
        Value::String(name) => ports.get(name.as_str()).copied(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    };
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(port_of(&c["readinessProbe"]), Some(ADMIN_PORT));
    assert_eq!(port_of(&c["livenessProbe"]), Some(ADMIN_PORT));
    // The drain fits in the grace period: shutdown_grace + preStop < terminationGracePeriod.
    let (text, config) = pde_yaml(&all);
    let grace = seconds(
        config["pde_manager"]["shutdown_grace"]
            .as_str()
            .expect("shutdown_grace set"),
    );
    let pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .expect("a preStop sleep");
    let termination = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("terminationGracePeriodSeconds");
    assert!(
        termination > grace + pre_stop,
        "terminationGracePeriodSeconds {termination} must exceed shutdown_grace {grace} + preStop {pre_stop}"
    );
    // Non-root, bounded.
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert!(c["resources"]["requests"]["memory"].is_string());
    assert!(c["resources"]["limits"]["memory"].is_string());
    // Each pod its own worker id: the pod name, used by the config.
    let env = c["env"].as_array().expect("env");
    let worker = env
        .iter()
        .find(|e| e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name")
        .expect("an env var from the pod name");
    let worker_var = worker["name"].as_str().expect("name");
    assert_eq!(
        config["camunda"]["worker_id"],
        json!(format!("${{{worker_var}}}")),
        "camunda.worker_id comes from the pod name"
    );
    // The admin server the probes reach: on the pod's addresses at the probes' port, so with a
    // token (from the Secret; procos refuses a non-loopback admin server without one).
    let listen = config["admin"]["listen"]
        .as_str()
        .expect("admin.listen set");
    let addr: std::net::SocketAddr = listen.parse().expect("admin.listen is an address");
    assert!(!addr.ip().is_loopback(), "probes cannot reach loopback");
    assert_eq!(u64::from(addr.port()), ADMIN_PORT);
    assert!(
        config["admin"]["token"]
            .as_str()
            .is_some_and(|t| t.starts_with("${") && !t.contains(":-")),
        "admin.token is required from the environment"
    );
    // The learner is shared (replicas learn together), from the Secret.
    assert!(
        config["pde_manager"]["state"]
            .as_str()
            .is_some_and(|s| s.starts_with("${"))
    );
    // Every variable the config requires is set: from the pod, or a key of the Secret.
    let secret = kind(&all, "Secret");
    let secret_name = secret["metadata"]["name"].as_str().expect("name");
    assert!(
        c["envFrom"]
            .as_array()
            .expect("envFrom")
            .iter()
            .any(|e| e["secretRef"]["name"] == secret_name),
        "the container reads the Secret"
    );
    let keys: BTreeSet<String> = secret["stringData"]
        .as_object()
        .expect("stringData")
        .keys()
        .cloned()
        .chain(std::iter::once(worker_var.to_string()))
        .collect();
    for var in required_vars(&text) {
        assert!(keys.contains(&var), "${{{var}}} is set nowhere");
    }
    // The Secret is a template: placeholders, no real values.
    for (k, v) in secret["stringData"].as_object().expect("stringData") {
        assert!(
            v.as_str().is_some_and(|v| v.contains('<')),
            "{k} is a placeholder"
        );
    }
    // The ConfigMap is mounted where the args read it.
    let args: Vec<&str> = c["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let config_path = args
        .windows(2)
        .find(|w| w[0] == "--config")
        .map(|w| w[1])
        .expect("--config");
    let mount = c["volumeMounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .find(|m| config_path.starts_with(m["mountPath"].as_str().unwrap_or("-")))
        .expect("the config is mounted");
    let volume = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("volume");
    assert_eq!(
        volume["configMap"]["name"],
        kind(&all, "ConfigMap")["metadata"]["name"]
    );

    // The Service and the ServiceMonitor reach the admin port's /metrics.
    let service = kind(&all, "Service");
    let admin = &service["spec"]["ports"][0];
    assert_eq!(admin["port"], ADMIN_PORT);
    assert_eq!(admin["targetPort"], "admin");
    let monitor = kind(&all, "ServiceMonitor");
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], admin["name"]);
    assert_eq!(endpoint["path"], "/metrics");
    assert_eq!(endpoint["bearerTokenSecret"]["name"], secret_name);
    let selector = &monitor["spec"]["selector"]["matchLabels"];
    for (k, v) in selector.as_object().expect("labels") {
        assert_eq!(
            &service["metadata"]["labels"][k], v,
            "the monitor selects the Service"
        );
        assert_eq!(
            &spec["template"]["metadata"]["labels"][k], v,
            "the Service selects the pods"
        );
    }
}

/// A work dir with the repo's bpmn/ and scripts/ and the ConfigMap's pde.yaml, its per-pod
/// `state_dir` moved into the work dir (the only change).
fn configmap_workdir() -> Workdir {
    let (text, _) = pde_yaml(&manifests());
    let work = Workdir::from_repo();
    let text = text.replace("state_dir: /var/lib/procos", "state_dir: state");
    std::fs::write(work.path().join("pde.yaml"), text).expect("write");
    work
}

#[test]
fn the_configmaps_config_passes_procos_validate() {
    let work = configmap_workdir();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_procos"))
        .args(["validate", "--config", "pde.yaml"])
        .current_dir(work.path())
        .env("CAMUNDA_URL", "http://camunda:8080/engine-rest")
        .env("PROCOS_WORKER_ID", "procos-7d9f-abcde")
        .env("PROCOS_ADMIN_TOKEN", "admin-token-for-the-test")
        .env(
            "PROCOS_STATE_URL",
            "postgres://procos:pw@postgres:5432/procos",
        )
        .output()
        .expect("procos validate runs");
    assert!(
        out.status.success(),
        "procos validate: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every `procos_*` metric name in the dashboard's queries.
fn dashboard_metrics() -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo().join("deploy/grafana/procos-dashboard.json"))
        .expect("dashboard");
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    assert!(dashboard["title"].is_string() && dashboard["panels"].is_array());
    let re = regex::Regex::new(r"\bprocos_[a-z0-9_]+").expect("regex");
    let mut names = BTreeSet::new();
    let mut queries = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("a PromQL expr");
            queries += 1;
            let found: Vec<_> = re.find_iter(expr).map(|m| m.as_str().to_string()).collect();
            assert!(!found.is_empty(), "a query over no procos metric: {expr}");
            names.extend(found);
        }
    }
    assert!(queries >= 10, "the dashboard has its panels");
    names
}

/// The names in a Prometheus text exposition (sample lines).
fn exposed(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_queries_exists_on_a_running_procos() {
    let wanted = dashboard_metrics();
    let pg = support::postgres::database().await;
    let engine = engine().await;
    let rest = Rest::new(&engine.url);
    let openai = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(completion(r#"{"category": "billing", "urgency": "high"}"#)),
        )
        .mount(&openai)
        .await;
    let work = configmap_workdir();
    let metrics = format!("127.0.0.1:{}", support::free_port());
    let base = format!("{}/v1", openai.uri());
    let procos = Procos::spawn(
        work.path(),
        &["--config", "pde.yaml", "--metrics-listen", &metrics],
        &[
            ("CAMUNDA_URL", &engine.url),
            ("PROCOS_WORKER_ID", "procos-0"),
            ("PROCOS_STATE_URL", &pg),
            ("PROCOS_ADMIN_TOKEN", "admin-token-for-the-test"),
            ("OPENAI_API_KEY", "sk-test"),
            ("OPENAI_BASE_URL", &base),
        ],
    );
    let t = Duration::from_secs(60);
    rest.wait_deployed("order_check", t).await;
    rest.wait_deployed("support_ticket", t).await;
    let mut instances = vec![
        rest.start("order_check", json!({"amount": 120.0, "order_id": "A-1"}))
            .await,
    ];
    for _ in 0..2 {
        // The same ticket twice: a cache miss, then a hit.
        instances.push(
            rest.start(
                "support_ticket",
                json!({"text": "I was charged twice for my order"}),
            )
            .await,
        );
    }
    for pi in &instances {
        rest.wait_ended(pi, t).await;
    }
    // The learner's gauges are refreshed at its flush (every few seconds).
    let url = format!("http://{metrics}/metrics");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let (missing, last) = loop {
        let last = rest
            .http
            .get(&url)
            .bearer_auth("admin-token-for-the-test")
            .send()
            .await
            .expect("scrape")
            .text()
            .await
            .expect("text");
        let have = exposed(&last);
        let missing: Vec<String> = wanted
            .iter()
            .filter(|m| !have.contains(*m))
            .cloned()
            .collect();
        if missing.is_empty() || std::time::Instant::now() > deadline {
            break (missing, last);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics procos does not expose: {missing:?}\n/metrics:\n{last}\nlogs:\n{}",
        procos.log_lines().join("\n")
    );
}

/// `docker compose up` beside a local `procos dev`: both admin servers must be reachable on the
/// host. compose publishes procos's admin port on another host port than the default
/// `admin.listen` (127.0.0.1:9464, which a local procos binds; the second to start would exit
/// naming `admin.listen`), on loopback only, and the README's link is that port.
#[test]
fn compose_publishes_the_admin_server_beside_a_local_procos() {
    let text = std::fs::read_to_string(repo().join("docker-compose.yml")).expect("compose file");
    let compose: Value = serde_yaml::from_str(&text).expect("compose is YAML");
    let ports: Vec<String> = compose["services"]["procos"]["ports"]
        .as_array()
        .expect("procos publishes ports")
        .iter()
        .map(|p| p.as_str().expect("a port mapping").to_string())
        .collect();
    let admin = ports
        .iter()
        .find(|p| p.ends_with(&format!(":{ADMIN_PORT}")))
        .expect("the admin port is published");
    let (host, host_port) = admin
        .rsplit_once(':')
        .and_then(|(rest, _)| rest.rsplit_once(':'))
        .expect("host address:host port:container port");
    assert_eq!(host, "127.0.0.1", "loopback only: {admin}");
    let default = procos::config::admin::AdminConfig::default().listen;
    assert_ne!(
        host_port,
        default.port().to_string(),
        "{admin}: the default admin.listen {default} of a local procos"
    );
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README");
    let link = format!("http://localhost:{host_port}/?token=");
    assert!(readme.contains(&link), "the README links {link}");
}

/// A ConfigMap update reaches procos only through a folder mount (the kubelet swaps `..data`
/// there, which procos watches); a `subPath` mount is never updated.
#[test]
fn the_config_is_mounted_as_a_folder_so_updates_reach_procos() {
    let all = manifests();
    let pod = &kind(&all, "Deployment")["spec"]["template"]["spec"];
    let mounts: Vec<Value> = pod["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .flat_map(|c| c["volumeMounts"].as_array().cloned().unwrap_or_default())
        .filter(|m| m["name"] == "config")
        .collect();
    assert_eq!(mounts.len(), 1, "one config mount");
    assert!(mounts[0].get("subPath").is_none(), "{}", mounts[0]);
    let args = pod["containers"][0]["args"].to_string();
    let dir = mounts[0]["mountPath"].as_str().expect("a path");
    assert!(
        args.contains(&format!("{dir}/pde.yaml")),
        "--config names the file in the mounted folder: {args}"
    );
}
