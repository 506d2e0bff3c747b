//! A fault-injecting HTTP proxy for end-to-end tests: it sits between procos and the engine and
//! misbehaves on command, the way a network, a load balancer or a struggling Camunda does.
//!
//! ```text
//! procos ──► FaultProxy (127.0.0.1:P) ──► engine (in-process or `procos engine` child)
//!              │ every request: count → freeze? → 5xx / drop? → delay → freeze? → forward
//!              │                 → delay reply → freeze? → lose / truncate / pass the reply back
//! ```
//!
//! Every control can be switched while procos runs:
//! - [`FaultProxy::delay`] / [`FaultProxy::delay_reply`]: hold requests whose path contains a
//!   pattern before forwarding them (the engine acts late) or hold their reply (it acted on time,
//!   the worker learns late);
//! - [`FaultProxy::fail_next`]: a burst of 500/503 answers (with a Camunda error body), not
//!   forwarded;
//! - [`FaultProxy::drop_next`]: close the connection without forwarding;
//!   [`FaultProxy::lose_reply_next`]: forward, then close the connection (the engine acted, the
//!   worker never hears of it);
//! - [`FaultProxy::truncate_next`]: the reply's head promises the whole body, half of it arrives,
//!   then the connection closes;
//! - [`FaultProxy::freeze`] / [`FaultProxy::resume`]: every request and every reply is held (an
//!   engine stopped with SIGSTOP, or a long GC pause);
//! - [`FaultProxy::down`] / [`FaultProxy::up`]: live connections are cut and new ones refused
//!   (the listening socket is closed and later bound again on the same port) — an engine
//!   restart as a worker sees it.
//!
//! A request gets at most one counted fault (500/503, drop, lost reply, truncation, in that
//! order of precedence); delays and freezes add to it. [`FaultProxy::count`] tells how many
//! requests arrived per last path segment (`fetchAndLock`, `complete`, `extendLock`, …),
//! faulted ones included; [`FaultProxy::faults_left`] whether every counted fault happened.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::body::{Body, Bytes};
use futures::StreamExt;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// What the per-request service fails with; hyper then closes the connection without a reply.
/// (A concrete type: hyper's connection future is not `Send` with a boxed `dyn Error` here.)
type Cut = std::io::Error;

fn cut(why: impl std::fmt::Display) -> Cut {
    std::io::Error::other(format!("fault proxy: {why}"))
}

/// A running proxy; it stops when dropped.
pub struct FaultProxy {
    /// The engine-rest base URL through the proxy (`http://127.0.0.1:P/engine-rest`).
    pub url: String,
    /// The proxy's bound address (kept across [`FaultProxy::down`] / [`FaultProxy::up`]).
    pub addr: SocketAddr,
    state: Arc<State>,
    stop: CancellationToken,
}

/// A rule that applies to the next `remaining` requests whose path contains `path`.
#[derive(Debug, Clone)]
struct Burst {
    path: String,
    remaining: usize,
}

#[derive(Debug, Default)]
struct Rules {
    /// (path pattern, hold before forwarding, hold the reply).
    delays: Vec<(String, Duration, Duration)>,
    failures: Vec<(Burst, u16)>,
    drops: Vec<Burst>,
    lost_replies: Vec<Burst>,
    truncations: Vec<Burst>,
}

struct State {
    upstream: String,
    client: reqwest::Client,
    rules: Mutex<Rules>,
    counts: Mutex<BTreeMap<String, u64>>,
    frozen: watch::Sender<bool>,
    down: watch::Sender<bool>,
    /// Whether the accept loop has its socket open (what `down` / `up` wait for).
    listening: watch::Sender<bool>,
    /// Cancelled (and replaced) by `down`: cuts every live connection.
    connections: Mutex<CancellationToken>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Test harness state: a panicking holder leaves plain counters and rule lists, still usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Takes one use of the first matching rule with uses left; true if one applied.
fn take(bursts: &mut [Burst], path: &str) -> bool {
    bursts
        .iter_mut()
        .find(|b| b.remaining > 0 && path.contains(&b.path))
        .map(|b| b.remaining -= 1)
        .is_some()
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port in front of `engine_url` (an engine-rest base URL
    /// such as `http://127.0.0.1:1234/engine-rest`).
    pub async fn start(engine_url: &str) -> FaultProxy {
        let parsed = reqwest::Url::parse(engine_url).expect("engine url parses");
        let upstream = format!(
            "{}://{}:{}",
            parsed.scheme(),
            parsed.host_str().expect("engine url has a host"),
            parsed
                .port_or_known_default()
                .expect("engine url has a port")
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy binds");
        let addr = listener.local_addr().expect("proxy address");
        let state = Arc::new(State {
            upstream,
            // No pool timeout games: long polls may take their full asyncResponseTimeout.
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("proxy client"),
            rules: Mutex::default(),
            counts: Mutex::default(),
            frozen: watch::channel(false).0,
            down: watch::channel(false).0,
            listening: watch::channel(true).0,
            connections: Mutex::new(CancellationToken::new()),
        });
        let stop = CancellationToken::new();
        tokio::spawn(accept_loop(listener, addr, state.clone(), stop.clone()));
        FaultProxy {
            url: format!("http://{addr}{}", parsed.path().trim_end_matches('/')),
            addr,
            state,
            stop,
        }
    }

    /// Holds every request whose path contains `path` for `by` before forwarding it.
    pub fn delay(&self, path: &str, by: Duration) {
        lock(&self.state.rules)
            .delays
            .push((path.into(), by, Duration::ZERO));
    }

    /// Forwards every request whose path contains `path` at once and holds its reply for `by`.
    pub fn delay_reply(&self, path: &str, by: Duration) {
        lock(&self.state.rules)
            .delays
            .push((path.into(), Duration::ZERO, by));
    }

    /// Removes every delay.
    pub fn clear_delays(&self) {
        lock(&self.state.rules).delays.clear();
    }

    /// The next `n` requests whose path contains `path` get `status` with a Camunda-style error
    /// body, without reaching the engine.
    pub fn fail_next(&self, path: &str, n: usize, status: u16) {
        lock(&self.state.rules).failures.push((
            Burst {
                path: path.into(),
                remaining: n,
            },
            status,
        ));
    }

    /// The next `n` requests whose path contains `path` have their connection closed without
    /// reaching the engine.
    pub fn drop_next(&self, path: &str, n: usize) {
        lock(&self.state.rules).drops.push(Burst {
            path: path.into(),
            remaining: n,
        });
    }

    /// The next `n` requests whose path contains `path` reach the engine, then their connection
    /// is closed before the reply: the engine acted, the caller cannot know it.
    pub fn lose_reply_next(&self, path: &str, n: usize) {
        lock(&self.state.rules).lost_replies.push(Burst {
            path: path.into(),
            remaining: n,
        });
    }

    /// The next `n` replies to requests whose path contains `path` announce their whole length
    /// but only half the body arrives before the connection closes.
    pub fn truncate_next(&self, path: &str, n: usize) {
        lock(&self.state.rules).truncations.push(Burst {
            path: path.into(),
            remaining: n,
        });
    }

    /// Uses left of the counted faults (`fail_next`, `drop_next`, `lose_reply_next`,
    /// `truncate_next`): 0 once every injected fault happened.
    pub fn faults_left(&self) -> usize {
        let rules = lock(&self.state.rules);
        let left = |b: &[Burst]| b.iter().map(|b| b.remaining).sum::<usize>();
        rules
            .failures
            .iter()
            .map(|(b, _)| b.remaining)
            .sum::<usize>()
            + left(&rules.drops)
            + left(&rules.lost_replies)
            + left(&rules.truncations)
    }

    /// Holds every request and every reply until [`FaultProxy::resume`].
    pub fn freeze(&self) {
        self.state.frozen.send_replace(true);
    }

    /// Lets held requests and replies go on.
    pub fn resume(&self) {
        self.state.frozen.send_replace(false);
    }

    /// Cuts every live connection (requests on the wire get no reply) and refuses new ones
    /// until [`FaultProxy::up`]; returns once the socket is closed.
    pub async fn down(&self) {
        self.state.down.send_replace(true);
        let _ = self.state.listening.subscribe().wait_for(|l| !*l).await;
        // After the socket closed: a connection accepted just before is cut too.
        let old = std::mem::replace(
            &mut *lock(&self.state.connections),
            CancellationToken::new(),
        );
        old.cancel();
    }

    /// Accepts connections again on the same port; returns once it listens.
    pub async fn up(&self) {
        self.state.down.send_replace(false);
        let _ = self.state.listening.subscribe().wait_for(|l| *l).await;
    }

    /// Requests received whose last path segment is `segment` (`fetchAndLock`, `complete`, …).
    pub fn count(&self, segment: &str) -> u64 {
        lock(&self.state.counts).get(segment).copied().unwrap_or(0)
    }

    /// Requests received per last path segment.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        lock(&self.state.counts).clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.cancel();
        lock(&self.state.connections).cancel();
    }
}

async fn accept_loop(
    mut listener: TcpListener,
    addr: SocketAddr,
    state: Arc<State>,
    stop: CancellationToken,
) {
    let mut down = state.down.subscribe();
    loop {
        if *down.borrow_and_update() {
            // Close the socket so that connects are refused, as with a stopped engine.
            drop(listener);
            state.listening.send_replace(false);
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = down.wait_for(|d| !*d) => {}
            }
            listener = loop {
                match TcpListener::bind(addr).await {
                    Ok(l) => break l,
                    // The port is free again within moments (SO_REUSEADDR is set by tokio).
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            };
            state.listening.send_replace(true);
            continue;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = down.changed() => continue,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let cut = lock(&state.connections).clone();
                let state = state.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move { handle(state, req).await }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        _ = conn => {}
                        _ = cut.cancelled() => {}
                    }
                });
            }
        }
    }
}

impl State {
    async fn wait_unfrozen(&self) {
        let mut frozen = self.frozen.subscribe();
        // The sender lives as long as the state; an error cannot happen while we hold it.
        let _ = frozen.wait_for(|f| !*f).await;
    }
}

/// One request: the fault pipeline described in the module docs. An `Err` makes hyper close the
/// connection without a reply.
async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Body>, Cut> {
    let path = req.uri().path().to_string();
    let segment = path.rsplit('/').next().unwrap_or("").to_string();
    *lock(&state.counts).entry(segment).or_default() += 1;
    state.wait_unfrozen().await;

    let (failure, dropped, lose, truncate, hold, hold_reply) = {
        let mut rules = lock(&state.rules);
        let failure = rules
            .failures
            .iter_mut()
            .find(|(b, _)| b.remaining > 0 && path.contains(&b.path))
            .map(|(b, status)| {
                b.remaining -= 1;
                *status
            });
        // One fault per request: the first that applies, in this order.
        let dropped = failure.is_none() && take(&mut rules.drops, &path);
        let lose = failure.is_none() && !dropped && take(&mut rules.lost_replies, &path);
        let truncate =
            failure.is_none() && !dropped && !lose && take(&mut rules.truncations, &path);
        let (hold, hold_reply) = rules
            .delays
            .iter()
            .filter(|(p, _, _)| path.contains(p.as_str()))
            .fold((Duration::ZERO, Duration::ZERO), |(a, b), (_, x, y)| {
                (a.max(*x), b.max(*y))
            });
        (failure, dropped, lose, truncate, hold, hold_reply)
    };
    if let Some(status) = failure {
        let body = serde_json::json!({
            "type": "ProcessEngineException",
            "message": format!("fault proxy: injected HTTP {status}"),
        });
        return Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .map_err(cut);
    }
    if dropped {
        return Err(cut("connection dropped"));
    }
    tokio::time::sleep(hold).await;
    state.wait_unfrozen().await;

    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(Body::new(body), usize::MAX)
        .await
        .map_err(cut)?;
    let target = format!(
        "{}{}",
        state.upstream,
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    );
    let mut upstream = state.client.request(parts.method, target).body(body);
    for (name, value) in &parts.headers {
        if name != hyper::header::HOST && name != hyper::header::CONTENT_LENGTH {
            upstream = upstream.header(name, value);
        }
    }
    let reply = match upstream.send().await {
        Ok(reply) => reply,
        Err(err) => {
            return Response::builder()
                .status(StatusCode::BAD_GATEWAY)
                .body(Body::from(format!(
                    "fault proxy: engine unreachable: {err}"
                )))
                .map_err(cut);
        }
    };
    let status = reply.status();
    let headers = reply.headers().clone();
    let bytes = reply.bytes().await.map_err(cut)?;

    tokio::time::sleep(hold_reply).await;
    state.wait_unfrozen().await;
    if lose {
        return Err(cut("reply lost"));
    }
    let mut response = Response::builder().status(status);
    for (name, value) in &headers {
        if name != hyper::header::TRANSFER_ENCODING
            && name != hyper::header::CONNECTION
            && name != hyper::header::CONTENT_LENGTH
        {
            response = response.header(name, value);
        }
    }
    response = response.header(hyper::header::CONTENT_LENGTH, bytes.len());
    let body = if truncate {
        let half = bytes.slice(..bytes.len() / 2);
        // The half goes out (hyper flushes it) before the stream breaks and the connection
        // closes; breaking at once could lose the head too.
        let half = futures::stream::iter([Ok::<Bytes, Cut>(half)]);
        let then_break = futures::stream::once(async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Err(cut("body truncated"))
        });
        Body::from_stream(half.chain(then_break))
    } else {
        Body::from(bytes)
    };
    response.body(body).map_err(cut)
}
