//! Property test over deployments: mutated BPMN never panics, aborts or stalls the engine; it
//! answers 200 with the deployment or 400 with a message.
//!
//! Run longer (the default here is 64 cases per property, to keep the suite quick):
//!
//! ```text
//! PROPTEST_CASES=20000 cargo test --lib engine::tests::deployment::proptests
//! ```
//! A failure is shrunk to a small input and its seed saved under `proptest-regressions/`; keep
//! that file in the repository so the case is re-run first.

use axum::http::StatusCode;
use proptest::prelude::*;

use super::hostile::{chain_model, multipart};
use crate::engine::bpmn::tests::order_process;
use crate::engine::tests::Api;

/// One way to damage a valid model.
#[derive(Debug, Clone)]
enum Mutation {
    /// Keep only the first `n` per mille of the bytes.
    Truncate(u16),
    /// XOR the byte at each (per-mille position) with the value.
    Flip(Vec<(u16, u8)>),
    /// Insert random bytes at a per-mille position.
    Insert(u16, Vec<u8>),
    /// Rename every element with this local name to a random name.
    Rename(&'static str, String),
    /// Nest `depth` elements of this name inside the service task.
    Nest(String, usize),
    /// Give the process a huge attribute.
    HugeAttribute(usize),
    /// Nest `depth` unknown elements outside the process.
    DeepOutside(usize),
}

const ELEMENTS: [&str; 10] = [
    "definitions",
    "process",
    "startEvent",
    "serviceTask",
    "sequenceFlow",
    "exclusiveGateway",
    "conditionExpression",
    "boundaryEvent",
    "errorEventDefinition",
    "endEvent",
];

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (0u16..1000).prop_map(Mutation::Truncate),
        prop::collection::vec((0u16..1000, 1u8..=255), 1..8).prop_map(Mutation::Flip),
        (0u16..1000, prop::collection::vec(any::<u8>(), 1..32))
            .prop_map(|(at, bytes)| Mutation::Insert(at, bytes)),
        (
            prop::sample::select(&ELEMENTS[..]),
            "[a-zA-Z_][a-zA-Z0-9_.:-]{0,12}"
        )
            .prop_map(|(from, to)| Mutation::Rename(from, to)),
        (
            prop::sample::select(vec!["foo", "bpmn:serviceTask", "bpmn:process", "x:y"]),
            1usize..12_000
        )
            .prop_map(|(tag, depth)| Mutation::Nest(tag.to_owned(), depth)),
        (1usize..2_000_000).prop_map(Mutation::HugeAttribute),
        (1usize..12_000).prop_map(Mutation::DeepOutside),
    ]
}

fn at(len: usize, per_mille: u16) -> usize {
    len * usize::from(per_mille) / 1000
}

fn apply(mut bytes: Vec<u8>, m: &Mutation) -> Vec<u8> {
    let text = || String::from_utf8_lossy(&bytes).into_owned();
    match m {
        Mutation::Truncate(p) => bytes.truncate(at(bytes.len(), *p)),
        Mutation::Flip(flips) => {
            for (p, x) in flips {
                let i = at(bytes.len(), *p);
                if let Some(b) = bytes.get_mut(i) {
                    *b ^= x;
                }
            }
        }
        Mutation::Insert(p, extra) => {
            let i = at(bytes.len(), *p);
            bytes.splice(i..i, extra.iter().copied());
        }
        Mutation::Rename(from, to) => {
            return text()
                .replace(&format!("<bpmn:{from}"), &format!("<bpmn:{to}"))
                .replace(&format!("</bpmn:{from}>"), &format!("</bpmn:{to}>"))
                .into_bytes();
        }
        Mutation::Nest(tag, depth) => {
            let nested = format!("<{tag}>").repeat(*depth) + &format!("</{tag}>").repeat(*depth);
            return text()
                .replacen(
                    "<bpmn:extensionElements>",
                    &(nested + "<bpmn:extensionElements>"),
                    1,
                )
                .into_bytes();
        }
        Mutation::HugeAttribute(n) => {
            return text()
                .replacen(
                    "isExecutable=",
                    &format!("huge=\"{}\" isExecutable=", "a".repeat(*n)),
                    1,
                )
                .into_bytes();
        }
        Mutation::DeepOutside(depth) => {
            let nested = "<u>".repeat(*depth) + &"</u>".repeat(*depth);
            return text()
                .replace("</bpmn:definitions>", &(nested + "</bpmn:definitions>"))
                .into_bytes();
        }
    }
    bytes
}

/// Deploys `bytes` as `m.bpmn` and checks the answer is a deployment or a 400 with a message.
fn check(rt: &tokio::runtime::Runtime, api: &Api, bytes: &[u8]) -> Result<(), TestCaseError> {
    let a = rt.block_on(api.send(multipart(&[("m.bpmn", bytes)])));
    if a.status == StatusCode::OK {
        let defs = a.body["deployedProcessDefinitions"].as_object();
        prop_assert!(defs.is_some(), "{}", a.body);
        for def in defs.into_iter().flat_map(|m| m.values()) {
            prop_assert!(
                def["key"].is_string() && def["version"].is_u64(),
                "{}",
                a.body
            );
        }
    } else {
        prop_assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
        let message = a.body["message"].as_str().unwrap_or_default();
        prop_assert!(!message.is_empty(), "{}", a.body);
        if a.body["type"] == "ParseException" {
            prop_assert!(message.contains("m.bpmn"), "{}", a.body);
            prop_assert!(
                a.body["details"]["m.bpmn"]["errors"][0]["message"].is_string(),
                "{}",
                a.body
            );
        }
    }
    Ok(())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

/// 64 cases, or `PROPTEST_CASES`.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn a_mutated_model_answers_a_deployment_or_a_400(
        base in prop::sample::select(vec![0usize, 1]),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let model = if base == 0 { order_process("order") } else { chain_model("chain", 3, 5) };
        let bytes = mutations.iter().fold(model.into_bytes(), apply);
        let rt = runtime();
        check(&rt, &Api::new(), &bytes)?;
    }

    #[test]
    fn arbitrary_bytes_are_refused_with_a_400(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let rt = runtime();
        let a = rt.block_on(Api::new().send(multipart(&[("m.bpmn", &bytes)])));
        prop_assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
        prop_assert_eq!(&a.body["type"], "ParseException", "{}", a.body);
        prop_assert!(a.body["details"]["m.bpmn"]["errors"][0]["message"].is_string(), "{}", a.body);
    }
}
