//! Routing, measured: the six strategies on one seeded load, through the real pipeline code
//! (Test → Gateway with the topic's router → Validation feeding the learner; the engine's retry
//! of a failed task simulated with the topic's own `retries` from `completion::decide`).
//!
//!     cargo bench --bench routing                 # 6000 tasks per strategy
//!     BENCH_TASKS=20000 cargo bench --bench routing
//!     BENCH_SEED=7 cargo bench --bench routing    # another load of the same rates
//!
//! Three in-process fake endpoints, listed `a, b, c` (the issue's load):
//!
//! | endpoint | fails | answers invalid JSON | latency | price per call |
//! |---|---|---|---|---|
//! | a | 25% | 0 | 400 ms | 0.010 |
//! | b | 0 | 25% | 800 ms | 0.006 |
//! | c | 1% → 80% from the middle task on | 0 | 300 ms | 0.002 |
//!
//! A second load has every endpoint failing 5–30% (a 30%, b 15%, c 5%; nothing degrades): the
//! success target holds there too.
//!
//! Whether a call fails is a hash of (seed, endpoint, task, run), so every strategy meets the
//! same load. Time is tokio's paused clock: a task arrives every 100 ms of simulated time,
//! calls take their latency, the engine offers a failed task again after `retry_timeout`; the
//! learner's clock is the same simulated clock, so `half_life: 10s` means 100 arrivals, as it
//! would at 10 tasks/s in production. The whole run takes seconds of real time.
//!
//! Figures (not a test, nothing asserted):
//! - success: tasks completed within the engine's retries (`retries: 3`).
//! - to c: share of tasks routed first to c, tasks 300 to the middle (the best endpoint).
//! - served c: share of those tasks whose result came from c.
//! - calls/task, cost/task: endpoint calls and money per task, engine retries included.
//! - move away: tasks after c degrades until fewer than half of 20 consecutive tasks go to c
//!   first.
//! - regret: Σ over tasks of (money + 0.01 per second of the task's endpoint time + 1.00 per
//!   task not completed) minus the same expected for the best fixed order of a, b, c in each
//!   phase (the oracle that knows the rates) — what the strategy's choices cost over the ideal.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use procos::camunda::Report;
use procos::config::file::TopicConfig;
use procos::endpoints::{Endpoint, EndpointError, EndpointReply, EndpointRequest, Usage};
use procos::learner::Learner;
use procos::pde::routing::{self, Busy};
use procos::pde::start::TaskContext;
use procos::pde::{StageTimings, TopicRuntime, Verdict, checked_work_routed, completion};
use serde_json::json;

/// The default seed; `BENCH_SEED` picks another load.
const SEED: u64 = 0x5eed_2026;

fn seed() -> u64 {
    static SEED_NOW: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SEED_NOW.get_or_init(|| {
        std::env::var("BENCH_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(SEED)
    })
}
const ARRIVAL: Duration = Duration::from_millis(100);
const WARM_UP: usize = 300;
const TIME_PRICE_PER_S: f64 = 0.01;
const FAILURE_PRICE: f64 = 1.0;

/// One fake endpoint's behaviour.
#[derive(Debug, Clone, Copy)]
struct Profile {
    fail: f64,
    invalid: f64,
    latency_ms: f64,
    price: f64,
}

const A: Profile = Profile {
    fail: 0.25,
    invalid: 0.0,
    latency_ms: 400.0,
    price: 0.010,
};
const B: Profile = Profile {
    fail: 0.0,
    invalid: 0.25,
    latency_ms: 800.0,
    price: 0.006,
};
const C: Profile = Profile {
    fail: 0.01,
    invalid: 0.0,
    latency_ms: 300.0,
    price: 0.002,
};
const C_DEGRADED: f64 = 0.80;

/// A load: the three endpoints, and c's failure rate from the middle task on.
#[derive(Debug, Clone, Copy)]
struct Load {
    a: Profile,
    b: Profile,
    c: Profile,
    c_later: f64,
}

/// The issue's load: c is best, then degrades.
const ISSUE: Load = Load {
    a: A,
    b: B,
    c: C,
    c_later: C_DEGRADED,
};

/// Every endpoint failing 5–30% (no invalid answers, nothing degrades; c still best).
const SPREAD: Load = Load {
    a: Profile { fail: 0.30, ..A },
    b: Profile {
        fail: 0.15,
        invalid: 0.0,
        ..B
    },
    c: Profile { fail: 0.05, ..C },
    c_later: 0.05,
};

/// Per task: calls, money and endpoint time spent.
#[derive(Debug, Default, Clone, Copy)]
struct Spent {
    calls: u32,
    money: f64,
    seconds: f64,
}

#[derive(Debug)]
struct Fake {
    name: &'static str,
    salt: u64,
    profile: Profile,
    /// The failure rate now, as f64 bits (c degrades mid-run).
    fail: AtomicU64,
    ledger: Arc<Mutex<BTreeMap<usize, Spent>>>,
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A uniform draw in [0, 1) fixed by (seed, endpoint, task, run, what).
fn draw(salt: u64, task: usize, run: u64, what: u64) -> f64 {
    let h = splitmix(seed() ^ splitmix(salt ^ splitmix(task as u64 ^ (run << 40) ^ (what << 56))));
    (h >> 11) as f64 / (1u64 << 53) as f64
}

#[async_trait]
impl Endpoint for Fake {
    fn name(&self) -> &str {
        self.name
    }
    fn kind(&self) -> &'static str {
        "fake"
    }
    fn side_effects(&self) -> bool {
        false
    }
    async fn call(&self, request: &EndpointRequest) -> Result<EndpointReply, EndpointError> {
        let task: usize = request.variables["task"].as_u64().unwrap_or(0) as usize;
        let run = request.variables["run"].as_u64().unwrap_or(0);
        let jitter = 0.8 + 0.4 * draw(self.salt, task, run, 3);
        let seconds = self.profile.latency_ms * jitter / 1000.0;
        tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
        {
            let mut ledger = self.ledger.lock().expect("ledger");
            let spent = ledger.entry(task).or_default();
            spent.calls += 1;
            spent.money += self.profile.price;
            spent.seconds += seconds;
        }
        let fail = f64::from_bits(self.fail.load(Ordering::Relaxed));
        if draw(self.salt, task, run, 1) < fail {
            return Err(EndpointError::transient("503 Service Unavailable").code("http_503"));
        }
        if draw(self.salt, task, run, 2) < self.profile.invalid {
            return Err(
                EndpointError::invalid_output("reply is not valid JSON").code("invalid_json")
            );
        }
        Ok(EndpointReply {
            output: json!({"label": "ok"}),
            usage: Some(Usage {
                model: Some(self.name.to_string()),
                input_tokens: 100,
                output_tokens: 10,
                cost: Some(self.profile.price),
            }),
        })
    }
}

/// One task's record.
#[derive(Debug, Clone, Default)]
struct Record {
    first: String,
    served: Option<String>,
    done: bool,
}

struct Row {
    strategy: &'static str,
    success: f64,
    to_best: f64,
    served_best: f64,
    calls: f64,
    cost: f64,
    /// `None`: the strategy never preferred c, so it had nothing to move away from.
    move_away: Option<Option<usize>>,
    regret: f64,
}

/// Runs of one task: the first, and the engine's retries of a failed one (`retries: 3` gives
/// three runs, see `completion::decide`).
const RUNS: i32 = 3;

/// Expected (money + time price + failure price) of a task routed in `order` on every run,
/// with these rates; one call per endpoint, as `attempts: 1` does.
fn expected(order: &[Profile]) -> f64 {
    let (mut reach, mut run) = (1.0, 0.0);
    for p in order {
        run += reach * (p.price + TIME_PRICE_PER_S * p.latency_ms / 1000.0);
        reach *= 1.0 - (1.0 - p.fail) * (1.0 - p.invalid);
    }
    // A run fails with probability `reach`; the engine runs it again, up to RUNS in all.
    let runs: f64 = (0..RUNS).map(|k| reach.powi(k)).sum();
    run * runs + reach.powi(RUNS) * FAILURE_PRICE
}

/// The oracle: the cheapest fixed order of the three in a phase.
fn oracle(load: &Load, c_fail: f64) -> f64 {
    let c = Profile {
        fail: c_fail,
        ..load.c
    };
    let all = [load.a, load.b, c];
    let orders = [
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
    ];
    orders
        .iter()
        .map(|o| expected(&[all[o[0]], all[o[1]], all[o[2]]]))
        .fold(f64::INFINITY, f64::min)
}

async fn run(strategy: &'static str, routing: &str, tasks: usize, load: &Load) -> Row {
    let ledger = Arc::new(Mutex::new(BTreeMap::new()));
    let fake = |name, salt, profile: Profile| {
        Arc::new(Fake {
            name,
            salt,
            profile,
            fail: AtomicU64::new(profile.fail.to_bits()),
            ledger: ledger.clone(),
        })
    };
    let (a, b, c) = (
        fake("a", 1, load.a),
        fake("b", 2, load.b),
        fake("c", 3, load.c),
    );
    let registry: BTreeMap<String, Arc<dyn Endpoint>> = [
        ("a".to_string(), a as Arc<dyn Endpoint>),
        ("b".to_string(), b as Arc<dyn Endpoint>),
        ("c".to_string(), c.clone() as Arc<dyn Endpoint>),
    ]
    .into();
    let config: TopicConfig = serde_yaml::from_str(&format!(
        "{{pool: p, endpoints: [a, b, c], retries: 3, retry_timeout: 10s, \
         output: {{required: [label]}}, routing: {routing}}}"
    ))
    .expect("topic yaml");
    let pool = ["a".to_string(), "b".to_string(), "c".to_string()];
    let start = tokio::time::Instant::now();
    // The learner reads the simulated clock: decay follows simulated time.
    let learner = Learner::default().with_clock(move || 1.7e9 + start.elapsed().as_secs_f64());
    let mut topic =
        TopicRuntime::build("bench", &config, &pool, &registry, Duration::from_secs(30))
            .expect("topic builds")
            .learning(Arc::new(learner), Arc::new(Busy::default()));
    topic.router = routing::build(&topic.routing.kind, Some(seed()));
    let topic = Arc::new(topic);

    let records: Arc<Mutex<Vec<Record>>> = Arc::new(Mutex::new(vec![Record::default(); tasks]));
    let middle = tasks / 2;
    let mut running = tokio::task::JoinSet::new();
    for i in 0..tasks {
        if i == middle {
            c.fail.store(load.c_later.to_bits(), Ordering::Relaxed);
        }
        let (topic, records) = (topic.clone(), records.clone());
        running.spawn(async move {
            let mut retries_left: Option<i32> = None;
            for run in 0u64.. {
                let mut request = EndpointRequest::default();
                request.variables.insert("task".into(), json!(i));
                request.variables.insert("run".into(), json!(run));
                request
                    .variables
                    .insert("text".into(), json!("Please classify this ticket."));
                let ctx = TaskContext { request };
                let (verdict, note) =
                    checked_work_routed(&ctx, &topic, &mut StageTimings::default(), None).await;
                if run == 0 {
                    records.lock().expect("records")[i].first =
                        note.map(|n| n.endpoint).unwrap_or_default();
                }
                if let Verdict::Done { endpoint, .. } = &verdict {
                    let mut r = records.lock().expect("records");
                    r[i].done = true;
                    r[i].served = Some(endpoint.clone());
                    return;
                }
                // What the engine would do: the real outcome table decides the retries.
                match completion::decide(retries_left, &topic, verdict) {
                    Some(Report::Failure {
                        retries,
                        retry_timeout,
                        ..
                    }) if retries > 0 => {
                        retries_left = Some(retries);
                        tokio::time::sleep(retry_timeout).await;
                    }
                    _ => return,
                }
            }
        });
        tokio::time::sleep(ARRIVAL).await;
    }
    while running.join_next().await.is_some() {}

    let records = records.lock().expect("records").clone();
    let ledger = ledger.lock().expect("ledger").clone();
    let n = tasks as f64;
    let done = records.iter().filter(|r| r.done).count() as f64;
    let window = &records[WARM_UP.min(middle)..middle];
    let share = |f: &dyn Fn(&Record) -> bool| {
        window.iter().filter(|r| f(r)).count() as f64 / window.len().max(1) as f64
    };
    let to_best = share(&|r| r.first == "c");
    let served_best = share(&|r| r.served.as_deref() == Some("c"));
    let spent: Vec<Spent> = (0..tasks)
        .map(|i| ledger.get(&i).copied().unwrap_or_default())
        .collect();
    let calls = spent.iter().map(|s| f64::from(s.calls)).sum::<f64>() / n;
    let cost = spent.iter().map(|s| s.money).sum::<f64>() / n;
    let move_away = (middle..tasks.saturating_sub(20))
        .find(|&k| records[k..k + 20].iter().filter(|r| r.first == "c").count() < 10);
    let realized: f64 = spent
        .iter()
        .zip(&records)
        .map(|(s, r)| {
            s.money + TIME_PRICE_PER_S * s.seconds + if r.done { 0.0 } else { FAILURE_PRICE }
        })
        .sum();
    let ideal = middle as f64 * oracle(load, load.c.fail)
        + (tasks - middle) as f64 * oracle(load, load.c_later);
    Row {
        strategy,
        success: done / n,
        to_best,
        served_best,
        calls,
        cost,
        move_away: (to_best >= 0.5).then(|| move_away.map(|k| k - middle)),
        regret: realized - ideal,
    }
}

fn main() {
    let tasks: usize = std::env::var("BENCH_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    let strategies: [(&str, &str); 6] = [
        ("ordered", "{}"),
        ("weighted", "{strategy: weighted}"),
        ("least_busy", "{strategy: least_busy}"),
        ("latency", "{strategy: latency}"),
        ("cost", "{strategy: cost}"),
        ("adaptive", "{strategy: adaptive, half_life: 10s}"),
    ];
    for (title, load) in [
        (
            format!(
                "The issue's load: a fails 25%, b answers invalid JSON 25%, c fails 1% and is \
                 cheapest, listed a, b, c; c fails {:.0}% from task {}",
                C_DEGRADED * 100.0,
                tasks / 2
            ),
            ISSUE,
        ),
        (
            "Every endpoint failing 5-30%: a 30%, b 15%, c 5% (c cheapest), nothing degrades"
                .to_string(),
            SPREAD,
        ),
    ] {
        println!(
            "\n{title}; {tasks} tasks per strategy, one every {} ms (simulated)",
            ARRIVAL.as_millis()
        );
        table(&runtime, &strategies, tasks, &load);
    }
}

fn table(
    runtime: &tokio::runtime::Runtime,
    strategies: &[(&'static str, &str)],
    tasks: usize,
    load: &Load,
) {
    println!(
        "\n| strategy | success | to c after {WARM_UP} | served by c | calls/task | cost/task | move away | regret |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for &(name, routing) in strategies {
        let real = std::time::Instant::now();
        let row = runtime.block_on(run(name, routing, tasks, load));
        println!(
            "| {} | {:.2}% | {:.1}% | {:.1}% | {:.3} | {:.5} | {} | {:.2} |",
            row.strategy,
            row.success * 100.0,
            row.to_best * 100.0,
            row.served_best * 100.0,
            row.calls,
            row.cost,
            match row.move_away {
                _ if load.c_later == load.c.fail => "— (c does not degrade)".to_string(),
                None => "— (not on c)".to_string(),
                Some(None) => "never".to_string(),
                Some(Some(k)) => format!("{k} tasks"),
            },
            row.regret,
        );
        eprintln!("({name}: {:.1} s real time)", real.elapsed().as_secs_f64());
    }
}
