//! Property tests: whatever the engine sends — typed variables, fetchAndLock replies, error
//! bodies — decoding never panics, and a variable that cannot be decoded names itself.

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::client::tests_support::{engine_error_for, truncate_for};
use super::models::{Deployment, LockedTask, ProcessInstance};
use super::variables::{TypedValue, VarType, Variable, decode_all, parse_date};

/// Any JSON value, a few levels deep, with the awkward corners: huge and negative numbers,
/// floats, unicode, empty containers.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,6}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A type name: every real one in both first-letter cases, and junk.
fn type_name() -> impl Strategy<Value = Option<String>> {
    let real = prop::sample::select(VarType::ALL.to_vec()).prop_flat_map(|t| {
        let name = t.as_str().to_string();
        let lower = name[..1].to_lowercase() + &name[1..];
        prop::sample::select(vec![name, lower])
    });
    prop_oneof![
        4 => real.prop_map(Some),
        1 => ".{0,10}".prop_map(Some),
        1 => Just(None),
    ]
}

/// `valueInfo`: sometimes saying JSON, sometimes Java serialization, sometimes anything.
fn value_info() -> impl Strategy<Value = Map<String, Value>> {
    prop_oneof![
        Just(Map::new()),
        Just(
            json!({"serializationDataFormat": "application/json"})
                .as_object()
                .cloned()
                .unwrap_or_default()
        ),
        Just(
            json!({"serializationDataFormat": "application/x-java-serialized-object"})
                .as_object()
                .cloned()
                .unwrap_or_default()
        ),
        json().prop_map(|v| match v {
            Value::Object(m) => m,
            other => [("serializationDataFormat".to_string(), other)]
                .into_iter()
                .collect(),
        }),
    ]
}

fn typed_value() -> impl Strategy<Value = TypedValue> {
    // Json and Object values are often JSON *text*: give them valid and broken text too.
    let value = prop_oneof![
        3 => json(),
        1 => json().prop_map(|v| Value::String(v.to_string())),
        1 => ".{0,20}".prop_map(|s| Value::String(format!("{{{s}"))),
    ];
    (value, type_name(), value_info()).prop_map(|(value, type_name, value_info)| TypedValue {
        value,
        type_name,
        value_info,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decoding_any_typed_value_never_panics_and_an_error_names_the_variable(
        name in "[a-zA-Z_][a-zA-Z0-9_]{0,12}",
        wire in typed_value(),
    ) {
        match Variable::decode(&name, &wire) {
            Ok(var) => {
                // What decodes can be written back and decodes to the same thing.
                let again = Variable::decode(&name, &var.encode());
                prop_assert_eq!(again.as_ref().map(|v| &v.value), Ok(&var.value));
            }
            Err(e) => {
                prop_assert_eq!(&e.name, &name);
                prop_assert!(e.to_string().starts_with(&format!("variable `{name}`: ")), "{}", e);
            }
        }
    }

    #[test]
    fn any_plain_json_output_round_trips_through_the_wire(value in json()) {
        let wire = Variable::from_json(value.clone()).encode();
        prop_assert!(wire.type_name.is_some(), "output always carries a type");
        let back = Variable::decode("out", &wire).map(|v| v.value);
        prop_assert_eq!(back, Ok(value));
    }

    #[test]
    fn any_variables_body_decodes_or_fails_naming_a_variable(body in json()) {
        if let Ok(map) = serde_json::from_value::<super::VariableMap>(body)
            && let Err(e) = decode_all(&map)
        {
            prop_assert!(map.contains_key(&e.name), "{}", e);
        }
    }

    #[test]
    fn any_fetch_and_lock_reply_parses_or_is_refused_without_a_panic(body in json()) {
        let _ = serde_json::from_value::<Vec<LockedTask>>(body.clone());
        let _ = serde_json::from_value::<LockedTask>(body.clone());
        let _ = serde_json::from_value::<Deployment>(body.clone());
        let _ = serde_json::from_value::<ProcessInstance>(body);
    }

    #[test]
    fn any_reply_bytes_parse_or_are_refused_without_a_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = serde_json::from_slice::<Vec<LockedTask>>(&bytes);
        let _ = serde_json::from_slice::<super::VariableMap>(&bytes);
    }

    #[test]
    fn any_error_body_becomes_an_engine_error_with_a_bounded_message(
        status in 400u16..600,
        body in prop_oneof![
            json().prop_map(|v| v.to_string().into_bytes()),
            (json(), json(), json()).prop_map(|(t, m, c)| {
                json!({"type": t, "message": m, "code": c, "details": t}).to_string().into_bytes()
            }),
            prop::collection::vec(any::<u8>(), 0..4096),
        ],
    ) {
        let err = engine_error_for(status, &body);
        prop_assert_eq!(err.status(), Some(status));
        // The message quotes at most 2 KiB of the body (plus the call and status).
        prop_assert!(err.to_string().len() < 2048 + 512, "{} bytes", err.to_string().len());
    }

    #[test]
    fn truncation_never_splits_a_character(text in ".{0,64}", max in 0usize..80) {
        let cut = truncate_for(&text, max);
        prop_assert!(cut.len() <= max + '…'.len_utf8());
        prop_assert!(text.starts_with(cut.trim_end_matches('…')));
    }

    #[test]
    fn any_date_text_parses_or_is_refused_without_a_panic(text in ".{0,40}") {
        let _ = parse_date(&text);
    }
}
