//! OpenTelemetry traces: one span per task, a child per pipeline block and per endpoint attempt,
//! exported over OTLP/HTTP; the W3C `traceparent` of the current span put into outgoing calls.
//!
//! ```text
//!  task  (Pipeline::run; attributes: task id, topic, process instance, business key, outcome)
//!   ├─ test ─ gateway ─ validation ─ completion          (block spans, pde/mod.rs)
//!   │                     └─ endpoint <name>              (one per attempt, stack/observe.rs;
//!   │                          │                           name, kind, attempt, result)
//!   │                          └─ traceparent ─► http / openai / ollama request ([`inject`])
//!  batch span processor (tokio task) ─► OTLP/HTTP protobuf POST <endpoint>/v1/traces
//! ```
//!
//! Spans are made with the OpenTelemetry API directly rather than bridged from `tracing` spans:
//! the exporter is configured by `pde.yaml`, which is read after the log subscriber is installed,
//! and the log output must not change (block spans would otherwise become the "current span" of
//! every JSON log line and hide the task's fields). The current span travels with the futures as
//! an OpenTelemetry [`Context`] (`FutureExt::with_context`), never across threads by hand.
//!
//! Off (no endpoint configured): [`init`] is never given settings, [`enabled`] is one atomic load
//! that says no, and every helper here returns at once — no span objects, no headers.
//!
//! Log lines: the task's `tracing` span has a `trace_id` field, recorded when the task is sampled
//! ([`TaskTrace::record_in_logs`]), so every log line of the task carries it (JSON: `span.trace_id`;
//! pretty: `task{… trace_id=…}`).

use std::future::Future;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures::FutureExt as _;
use futures::future::Either;
use opentelemetry::context::{FutureExt as _, WithContext};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, Tracer};
use reqwest::header::HeaderMap;

use crate::config::telemetry::{Resolved, TelemetryConfig};

/// The tracer, once [`init`] built one; its absence is "traces off".
static TRACER: OnceLock<Tracer> = OnceLock::new();

/// Why traces could not be started.
#[derive(Debug, thiserror::Error)]
pub enum TracesError {
    /// The OTLP exporter or its HTTP client could not be built (the message never holds the
    /// endpoint URL or a header value).
    #[error("telemetry.otlp: cannot build the OTLP exporter: {0}")]
    Exporter(String),
    /// An `OTEL_EXPORTER_OTLP_*` variable is not valid (the message names it, not its value).
    #[error("{0}")]
    Environment(String),
    /// `init` ran twice in one process.
    #[error("telemetry: traces were already started in this process")]
    AlreadyStarted,
}

/// Owns the exporter pipeline; [`Traces::shutdown`] flushes what is still batched.
#[derive(Debug)]
pub struct Traces {
    provider: SdkTracerProvider,
}

/// True when traces are being recorded (an exporter is configured). One atomic load.
pub fn enabled() -> bool {
    TRACER.get().is_some()
}

/// Starts traces when `telemetry:` or `OTEL_EXPORTER_OTLP_ENDPOINT` names a collector (the
/// file wins); `Ok(None)`: traces stay off. Call once, inside the runtime, before tasks run.
pub fn start(config: &TelemetryConfig) -> Result<Option<Traces>, TracesError> {
    let resolved = config
        .resolve(|k| std::env::var(k).ok())
        .map_err(TracesError::Environment)?;
    resolved.map(|settings| init(&settings)).transpose()
}

/// Starts the exporter: a batch span processor on the current tokio runtime sending OTLP/HTTP
/// protobuf to `settings.traces_url`. Call once, inside the runtime, before tasks run.
pub fn init(settings: &Resolved) -> Result<Traces, TracesError> {
    let client = reqwest::Client::builder()
        .timeout(settings.timeout)
        .build()
        .map_err(|e| TracesError::Exporter(crate::config::secret::redact(&e.to_string())))?;
    let headers = settings
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.expose().to_string()))
        .collect();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(OtlpClient(client))
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(settings.traces_url.clone())
        .with_headers(headers)
        .with_timeout(settings.timeout)
        .build()
        // The builder's message may repeat the endpoint, which may hold credentials.
        .map_err(|_| TracesError::Exporter("the endpoint or a header is not valid".into()))?;
    let processor =
        opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
            exporter,
            opentelemetry_sdk::runtime::Tokio,
        )
        .build();
    let resource = opentelemetry_sdk::Resource::builder_empty()
        .with_service_name(settings.service_name.clone())
        .with_attributes([KeyValue::new("service.version", env!("CARGO_PKG_VERSION"))])
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            settings.sampling_ratio,
        ))))
        .with_resource(resource)
        .build();
    use opentelemetry::trace::TracerProvider as _;
    TRACER
        .set(provider.tracer("procos"))
        .map_err(|_| TracesError::AlreadyStarted)?;
    tracing::info!(
        service_name = %settings.service_name,
        sampling_ratio = settings.sampling_ratio,
        "Traces are exported over OTLP."
    );
    Ok(Traces { provider })
}

impl Traces {
    /// Flushes the spans still batched and stops the exporter, waiting at most `grace`. Runs
    /// the SDK's blocking shutdown off the async workers (the batch task must keep running).
    pub async fn shutdown(self, grace: Duration) {
        let provider = self.provider;
        let done = tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(grace));
        match tokio::time::timeout(grace + Duration::from_secs(1), done).await {
            Ok(Ok(Ok(()))) => tracing::debug!("Traces flushed."),
            Ok(Ok(Err(e))) => tracing::warn!(
                error = %crate::config::secret::redact(&e.to_string()),
                "Could not flush the last traces."
            ),
            _ => tracing::warn!("Flushing the last traces took too long; some are lost."),
        }
    }
}

/// The span of one engine task (the Start block's span). Inert when traces are off.
#[derive(Debug, Clone)]
pub struct TaskTrace {
    cx: Option<Context>,
}

/// What describes a task on its span. Business key and ids only: never variable values.
#[derive(Debug, Clone, Copy)]
pub struct TaskFields<'a> {
    /// External task id.
    pub task_id: &'a str,
    /// Its topic.
    pub topic: &'a str,
    /// Process instance id, when the engine gave one.
    pub process_instance_id: Option<&'a str>,
    /// Business key, when set.
    pub business_key: Option<&'a str>,
    /// BPMN activity id, when the engine gave one.
    pub activity_id: Option<&'a str>,
}

impl TaskTrace {
    /// Starts a task span, a root (a task is fetched, not called: no incoming context).
    pub fn start(fields: TaskFields<'_>) -> Self {
        let Some(tracer) = TRACER.get() else {
            return Self { cx: None };
        };
        let mut attributes = vec![
            KeyValue::new("procos.task.id", fields.task_id.to_string()),
            KeyValue::new("procos.task.topic", fields.topic.to_string()),
        ];
        let optional = [
            ("procos.process_instance.id", fields.process_instance_id),
            ("procos.business_key", fields.business_key),
            ("procos.activity.id", fields.activity_id),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                attributes.push(KeyValue::new(key, value.to_string()));
            }
        }
        let span = tracer
            .span_builder(format!("task {}", fields.topic))
            .with_kind(SpanKind::Consumer)
            .with_attributes(attributes)
            .start_with_context(tracer, &Context::new());
        Self {
            cx: Some(Context::new().with_span(span)),
        }
    }

    /// The trace id (32 hex digits) when this task is traced and sampled.
    pub fn trace_id(&self) -> Option<String> {
        let cx = self.cx.as_ref()?;
        let sc = cx.span().span_context().clone();
        (sc.is_valid() && sc.is_sampled()).then(|| sc.trace_id().to_string())
    }

    /// Records the trace id on `span`'s `trace_id` field (the task's log span), so every log
    /// line of the task names its trace. Nothing when off or not sampled.
    pub fn record_in_logs(&self, span: &tracing::Span) {
        if let Some(id) = self.trace_id() {
            span.record("trace_id", id.as_str());
        }
    }

    /// Runs `work` with this task's span as the current span (its blocks become children).
    pub fn scope<F: Future>(&self, work: F) -> impl Future<Output = F::Output> {
        in_context(self.cx.clone(), work)
    }

    /// Ends the span with the task's outcome (`completed`, `failed`, …); `error` sets the error
    /// status (the task failed or raised an incident; a BPMN error is a business outcome).
    pub fn finish(self, outcome: &'static str, error: bool) {
        let Some(cx) = self.cx else { return };
        let span = cx.span();
        span.set_attribute(KeyValue::new("procos.task.outcome", outcome));
        if error {
            span.set_status(Status::error(outcome));
        }
        span.end();
    }
}

/// Runs one pipeline block (`test`, `validation`, `completion`) as a child span of the current
/// span. `failed` says whether the block's result is a failure, and why (an error class, never
/// a value). Nothing extra when off or outside a traced task.
pub fn block<F, T>(
    name: &'static str,
    work: F,
    failed: impl FnOnce(&T) -> Option<String>,
) -> impl Future<Output = T>
where
    F: Future<Output = T>,
{
    let cx = child(name, SpanKind::Internal, Vec::new());
    in_context(cx.clone(), work).map(move |out| {
        if let Some(cx) = &cx {
            end(cx, failed(&out));
        }
        out
    })
}

/// `work`, run with `cx` as the current context when there is one. A plain combinator rather
/// than an `async fn` taking `work`: such a function holds its argument twice (as received and
/// as awaited), and these wrap every task and every endpoint call — a task's future was 17 KiB.
fn in_context<F: Future>(cx: Option<Context>, work: F) -> Either<WithContext<F>, F> {
    match cx {
        Some(cx) => Either::Left(work.with_context(cx)),
        None => Either::Right(work),
    }
}

/// [`block`] for a synchronous block (`gateway`).
pub fn block_sync<T>(
    name: &'static str,
    work: impl FnOnce() -> T,
    failed: impl FnOnce(&T) -> Option<String>,
) -> T {
    let Some(cx) = child(name, SpanKind::Internal, Vec::new()) else {
        return work();
    };
    let out = {
        let _attached = cx.clone().attach(); // synchronous: no await while attached
        work()
    };
    end(&cx, failed(&out));
    out
}

/// One endpoint call's scope (the outermost stack layer opens it): counts its attempts, so
/// each attempt's span says which one it is. Nested calls (a `sub_pde` endpoint's sub-tasks)
/// open their own.
#[derive(Debug, Clone, Default)]
struct CallScope(Option<Arc<AtomicU32>>);

/// Runs a whole endpoint call (retries included) in a fresh attempt count, unless one is already
/// open for this call (an inner layer of the same stack). Called by every stack layer.
pub fn endpoint_call<F: Future>(work: F) -> impl Future<Output = F::Output> {
    let opens = || {
        let current = Context::current();
        let open =
            current.has_active_span() && current.get::<CallScope>().is_none_or(|s| s.0.is_none());
        open.then(|| current.with_value(CallScope(Some(Arc::new(AtomicU32::new(0))))))
    };
    in_context(if enabled() { opens() } else { None }, work)
}

/// A finished attempt's result class (`ok`, `transient`, …) and whether it is a failure.
pub type AttemptResult = (&'static str, bool);

/// Runs one attempt of endpoint `name` (of `kind`) as a child span (kind client) of the current
/// span; the attempt's requests carry its `traceparent`. `classify` names the result.
pub fn endpoint_attempt<F, T>(
    name: &str,
    kind: &'static str,
    work: F,
    classify: impl FnOnce(&T) -> AttemptResult,
) -> impl Future<Output = T>
where
    F: Future<Output = T>,
{
    let cx = attempt_span(name, kind);
    // The endpoint's own calls (a sub_pde's sub-tasks) count their attempts afresh.
    let inner = cx.as_ref().map(|cx| cx.with_value(CallScope(None)));
    in_context(inner, work).map(move |out| {
        if let Some(cx) = &cx {
            let (result, failure) = classify(&out);
            cx.span()
                .set_attribute(KeyValue::new("procos.endpoint.result", result));
            end(cx, failure.then(|| result.to_string()));
        }
        out
    })
}

/// The span of one attempt of endpoint `name`, numbered in the current call's scope; `None`
/// when traces are off or there is no task span.
fn attempt_span(name: &str, kind: &'static str) -> Option<Context> {
    if !enabled() {
        return None;
    }
    let current = Context::current();
    let attempt = current
        .get::<CallScope>()
        .and_then(|s| s.0.as_ref())
        .map_or(1, |n| n.fetch_add(1, Ordering::Relaxed) + 1);
    let attributes = vec![
        KeyValue::new("procos.endpoint.name", name.to_string()),
        KeyValue::new("procos.endpoint.kind", kind),
        KeyValue::new("procos.endpoint.attempt", i64::from(attempt)),
    ];
    child_of(
        &current,
        format!("endpoint {name}"),
        SpanKind::Client,
        attributes,
    )
}

/// Adds the current span's W3C `traceparent` (and `tracestate`) to `headers`, for an outgoing
/// request of an endpoint. Leaves `headers` alone when traces are off, outside a span, or when
/// the request already has a `traceparent` (configured by the user: theirs wins, no duplicate).
pub fn inject(headers: &mut HeaderMap) {
    if !enabled() || headers.contains_key("traceparent") {
        return;
    }
    let cx = Context::current();
    if !cx.span().span_context().is_valid() {
        return;
    }
    TraceContextPropagator::new()
        .inject_context(&cx, &mut opentelemetry_http::HeaderInjector(headers));
}

/// A child span of the current context, when traces are on and a span is current.
fn child(name: &'static str, kind: SpanKind, attributes: Vec<KeyValue>) -> Option<Context> {
    if !enabled() {
        return None;
    }
    child_of(&Context::current(), name, kind, attributes)
}

fn child_of(
    parent: &Context,
    name: impl Into<std::borrow::Cow<'static, str>>,
    kind: SpanKind,
    attributes: Vec<KeyValue>,
) -> Option<Context> {
    let tracer = TRACER.get()?;
    if !parent.has_active_span() {
        return None;
    }
    let span = tracer
        .span_builder(name)
        .with_kind(kind)
        .with_attributes(attributes)
        .start_with_context(tracer, parent);
    Some(parent.with_span(span))
}

fn end(cx: &Context, failure: Option<String>) {
    let span = cx.span();
    if let Some(why) = failure {
        span.set_status(Status::error(why));
    }
    span.end();
}

/// The exporter's HTTP client: procos's reqwest (0.12, rustls) behind OpenTelemetry's
/// [`HttpClient`](opentelemetry_http::HttpClient) trait, so no second HTTP stack is linked.
#[derive(Debug)]
struct OtlpClient(reqwest::Client);

/// Collectors answer with a small status message; a larger body is cut off here.
const MAX_COLLECTOR_REPLY: usize = 64 * 1024;

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for OtlpClient {
    async fn send_bytes(
        &self,
        request: opentelemetry_http::Request<opentelemetry_http::Bytes>,
    ) -> Result<
        opentelemetry_http::Response<opentelemetry_http::Bytes>,
        opentelemetry_http::HttpError,
    > {
        let request = reqwest::Request::try_from(request)?;
        let mut response = self.0.execute(request).await?;
        let mut reply = opentelemetry_http::Response::builder().status(response.status());
        if let Some(headers) = reply.headers_mut() {
            *headers = std::mem::take(response.headers_mut());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            let room = MAX_COLLECTOR_REPLY.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if room <= chunk.len() {
                break;
            }
        }
        Ok(reply.body(opentelemetry_http::Bytes::from(body))?)
    }
}
