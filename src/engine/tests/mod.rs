//! Engine tests through the REST router (no sockets), plus a few over real TCP.

mod deployment;
mod long_poll;
mod mapping;
mod process;
mod rest_compat;
mod tasks;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::bpmn::tests::order_process;
use super::{Engine, EngineOptions};

/// One multipart part of a deployment.
#[derive(Clone)]
pub(super) struct Part<'a> {
    pub name: &'a str,
    pub filename: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub data: String,
}

impl<'a> Part<'a> {
    pub fn text(name: &'a str, value: &str) -> Self {
        Self {
            name,
            filename: None,
            content_type: None,
            data: value.to_owned(),
        }
    }
    pub fn file(name: &'a str, filename: &'a str, data: String) -> Self {
        Self {
            name,
            filename: Some(filename),
            content_type: Some("application/octet-stream"),
            data,
        }
    }
}

/// A test client on a fresh engine.
pub(super) struct Api {
    pub engine: Engine,
    router: Router,
}

/// An answer: status, parsed JSON (or the text, or null), raw headers.
pub(super) struct Answer {
    pub status: StatusCode,
    pub body: Value,
    pub headers: axum::http::HeaderMap,
    pub bytes: bytes::Bytes,
}

impl Api {
    pub fn new() -> Self {
        let engine = Engine::new(EngineOptions {
            quiet: true,
            ..Default::default()
        });
        Self {
            router: engine.router(),
            engine,
        }
    }

    pub async fn send(&self, req: Request<Body>) -> Answer {
        let resp = self
            .router
            .clone()
            .oneshot(req)
            .await
            .expect("infallible router");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Answer {
            status,
            body,
            headers,
            bytes,
        }
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Answer {
        let builder = Request::builder()
            .method(method)
            .uri(format!("/engine-rest{path}"));
        let req = match body {
            Some(b) => builder
                .header("content-type", "application/json")
                .body(Body::from(b.to_string())),
            None => builder.body(Body::empty()),
        };
        self.send(req.expect("request")).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.call("GET", path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.call("POST", path, Some(body)).await
    }

    pub async fn deploy(&self, parts: &[Part<'_>]) -> Answer {
        let boundary = "procosBoundary7MA4YWxk";
        let mut body = String::new();
        for p in parts {
            body.push_str(&format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"",
                p.name
            ));
            if let Some(f) = p.filename {
                body.push_str(&format!("; filename=\"{f}\""));
            }
            body.push_str("\r\n");
            if let Some(ct) = p.content_type {
                body.push_str(&format!("Content-Type: {ct}\r\n"));
            }
            body.push_str(&format!("\r\n{}\r\n", p.data));
        }
        body.push_str(&format!("--{boundary}--\r\n"));
        let req = Request::builder()
            .method("POST")
            .uri("/engine-rest/deployment/create")
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(Body::from(body))
            .expect("request");
        self.send(req).await
    }

    /// Deploys the shared order process under `key`.
    pub async fn deploy_order(&self, key: &str) -> Answer {
        let answer = self
            .deploy(&[
                Part::text("deployment-name", key),
                Part::file("data", "order.bpmn", order_process(key)),
            ])
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        answer
    }

    /// Starts `key` with typed variables; returns the instance id.
    pub async fn start(&self, key: &str, variables: Value) -> String {
        let a = self
            .post(
                &format!("/process-definition/key/{key}/start"),
                json!({"businessKey": "bk-1", "variables": variables}),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        a.body["id"].as_str().expect("instance id").to_owned()
    }

    /// fetchAndLock of one topic without long polling.
    pub async fn fetch(&self, worker: &str, topic: &str) -> Vec<Value> {
        let a = self
            .post(
                "/external-task/fetchAndLock",
                json!({"workerId": worker, "maxTasks": 10, "topics": [{"topicName": topic, "lockDuration": 10_000}]}),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        a.body.as_array().cloned().unwrap_or_default()
    }

    /// Fetches exactly one task of `topic` and returns its id.
    pub async fn fetch_one(&self, worker: &str, topic: &str) -> String {
        let tasks = self.fetch(worker, topic).await;
        assert_eq!(tasks.len(), 1, "{tasks:?}");
        tasks[0]["id"].as_str().expect("task id").to_owned()
    }

    pub async fn complete(&self, task: &str, worker: &str, variables: Value) -> Answer {
        self.post(
            &format!("/external-task/{task}/complete"),
            json!({"workerId": worker, "variables": variables}),
        )
        .await
    }

    pub async fn history_state(&self, instance: &str) -> String {
        let a = self
            .get(&format!("/history/process-instance/{instance}"))
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        a.body["state"].as_str().unwrap_or_default().to_owned()
    }
}

/// `{"amount": Integer}` variables.
pub(super) fn amount(n: i64) -> Value {
    json!({"amount": {"value": n, "type": "Integer"}})
}
