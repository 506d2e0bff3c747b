//! The shape of a plain workers' config (`workers.yaml`): what such configs typically carry, in
//! snake_case or the Camunda clients' camelCase (`maxTasks`, `lockDuration`, `baseUrl`, …).
//!
//! Not strict on purpose: a key this shape does not know is not an error but a warning naming its
//! path (collected by `serde_ignored` in [`super::parse`]), because a worker config carries
//! settings of its own runtime that have no counterpart in procos.

use std::fmt;
use std::num::NonZeroUsize;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor, value::MapAccessDeserializer};

/// The whole file.
#[derive(Debug, Deserialize)]
pub(super) struct WorkersFile {
    /// Worker name → worker, in file order.
    pub workers: Named<Worker>,
    /// The client settings shared by every worker.
    #[serde(default, alias = "client")]
    pub camunda: Camunda,
}

/// Client settings shared by the workers (the engine, and defaults for each worker).
#[derive(Debug, Default, Deserialize)]
pub(super) struct Camunda {
    /// engine-rest's URL.
    #[serde(alias = "base_url", alias = "baseUrl")]
    pub url: Option<String>,
    /// The id the client polled with.
    #[serde(alias = "workerId")]
    pub worker_id: Option<String>,
    /// Default `max_tasks` of a worker that sets none.
    #[serde(alias = "maxTasks")]
    pub max_tasks: Option<NonZeroUsize>,
    /// Default lock duration (milliseconds, or a duration such as `60s`).
    #[serde(alias = "lockDuration")]
    pub lock_duration: Option<Millis>,
    /// How long one fetchAndLock may wait for work.
    #[serde(alias = "asyncResponseTimeout")]
    pub async_response_timeout: Option<Millis>,
    /// Default retries of a failed task.
    pub retries: Option<u32>,
    /// Default wait before a failed task is offered again.
    #[serde(alias = "retryTimeout")]
    pub retry_timeout: Option<Millis>,
}

/// One plain worker: the topics it subscribed to and how it fetched them.
#[derive(Debug, Deserialize)]
pub(super) struct Worker {
    /// Topic names, or `{name, lock_duration, variables}`.
    pub topics: Vec<TopicEntry>,
    /// Tasks fetched (and so run) at once.
    #[serde(alias = "maxTasks")]
    pub max_tasks: Option<NonZeroUsize>,
    /// Lock duration of its topics.
    #[serde(alias = "lockDuration")]
    pub lock_duration: Option<Millis>,
    /// Its long poll.
    #[serde(alias = "asyncResponseTimeout")]
    pub async_response_timeout: Option<Millis>,
    /// The id it polled with.
    #[serde(alias = "workerId")]
    pub worker_id: Option<String>,
    /// The engine it polled (engine-rest's URL).
    #[serde(alias = "baseUrl")]
    pub base_url: Option<String>,
    /// Retries of a failed task.
    pub retries: Option<u32>,
    /// Wait before a failed task is offered again.
    #[serde(alias = "retryTimeout")]
    pub retry_timeout: Option<Millis>,
    /// Variables fetched with its tasks.
    pub variables: Option<Vec<String>>,
    /// The service an HTTP worker called (a hint for the endpoint stub).
    pub url: Option<String>,
    /// The model an AI worker used (a hint for the endpoint stub).
    pub model: Option<String>,
    /// The script a script worker ran (a hint for the endpoint stub).
    pub script: Option<String>,
}

/// A subscribed topic: a name, or a mapping with per-topic settings.
#[derive(Debug)]
pub(super) struct TopicEntry {
    /// The topic.
    pub name: String,
    /// Its own lock duration, if set.
    pub lock_duration: Option<Millis>,
    /// Its own variables, if set.
    pub variables: Option<Vec<String>>,
}

/// The mapping form of [`TopicEntry`].
#[derive(Deserialize)]
struct TopicSpec {
    #[serde(alias = "topicName", alias = "topic")]
    name: String,
    #[serde(alias = "lockDuration")]
    lock_duration: Option<Millis>,
    variables: Option<Vec<String>>,
}

impl<'de> Deserialize<'de> for TopicEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct EntryVisitor;
        impl<'de> Visitor<'de> for EntryVisitor {
            type Value = TopicEntry;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a topic name or a mapping `{name, lock_duration, variables}`")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<TopicEntry, E> {
                Ok(TopicEntry {
                    name: name.to_string(),
                    lock_duration: None,
                    variables: None,
                })
            }
            fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<TopicEntry, M::Error> {
                let spec = TopicSpec::deserialize(MapAccessDeserializer::new(map))?;
                Ok(TopicEntry {
                    name: spec.name,
                    lock_duration: spec.lock_duration,
                    variables: spec.variables,
                })
            }
        }
        d.deserialize_any(EntryVisitor)
    }
}

/// A duration as worker configs write it: a number of milliseconds (`60000`, as the Camunda
/// clients take it) or a duration (`60s`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Millis(pub Duration);

impl<'de> Deserialize<'de> for Millis {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct MillisVisitor;
        impl Visitor<'_> for MillisVisitor {
            type Value = Millis;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("milliseconds (`60000`) or a duration (`60s`)")
            }
            fn visit_u64<E: de::Error>(self, ms: u64) -> Result<Millis, E> {
                Ok(Millis(Duration::from_millis(ms)))
            }
            fn visit_i64<E: de::Error>(self, ms: i64) -> Result<Millis, E> {
                u64::try_from(ms)
                    .map(|ms| Millis(Duration::from_millis(ms)))
                    .map_err(|_| E::custom(format!("{ms} ms: a duration cannot be negative")))
            }
            fn visit_f64<E: de::Error>(self, ms: f64) -> Result<Millis, E> {
                Duration::try_from_secs_f64(ms / 1000.0)
                    .map(Millis)
                    .map_err(|_| E::custom(format!("{ms} ms is not a duration")))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Millis, E> {
                if let Ok(ms) = text.trim().parse::<u64>() {
                    return Ok(Millis(Duration::from_millis(ms)));
                }
                humantime::parse_duration(text.trim())
                    .map(Millis)
                    .map_err(|e| E::custom(format!("`{text}` is not a duration ({e})")))
            }
        }
        d.deserialize_any(MillisVisitor)
    }
}

/// Entries of a mapping in file order (a name given twice is refused earlier, by the YAML parse
/// of the whole document).
#[derive(Debug)]
pub(super) struct Named<T>(pub Vec<(String, T)>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Named<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct NamedVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for NamedVisitor<T> {
            type Value = Named<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping of worker names to workers")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Named<T>, M::Error> {
                let mut entries: Vec<(String, T)> = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    let value = map.next_value()?;
                    entries.push((name, value));
                }
                Ok(Named(entries))
            }
        }
        d.deserialize_map(NamedVisitor(std::marker::PhantomData))
    }
}
