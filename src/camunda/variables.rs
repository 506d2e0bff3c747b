//! Camunda typed variables.
//!
//! On the wire a variable is `{value, type, valueInfo}` ([`TypedValue`]). procos decodes each to a
//! [`Variable`]: plain JSON for endpoints and templates, with the Camunda type kept so that it can
//! be written back with the same type. Output always carries an explicit `type` (the engine
//! guesses otherwise).
//!
//! | type | decoded JSON | encoded from JSON |
//! |---|---|---|
//! | String, Date (string), Xml | string | string → String |
//! | Integer, Short, Long, Double, Number | number | integer → Integer (Long past i32), float → Double |
//! | Boolean | bool | bool → Boolean |
//! | Null | null | null → Null |
//! | Json, Object (application/json) | the parsed JSON | object/array → Json (serialized string) |
//! | Object (Java serialized) | the base64 string, untouched | — |
//! | Bytes | base64 string | — |
//! | File | `null` (content is downloaded on demand) | — |

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Variables on the wire: name → typed value.
pub type VariableMap = BTreeMap<String, TypedValue>;

/// One variable as engine-rest sends and receives it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TypedValue {
    /// The value (absent for File variables fetched from the engine).
    #[serde(default)]
    pub value: Value,
    /// Type name (`String`, `Integer`, …). Always set on output.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_name: Option<String>,
    /// `objectTypeName`, `serializationDataFormat`, `filename`, `mimeType`, `transient`, …
    /// (`null` from the engine reads as empty).
    #[serde(
        default,
        skip_serializing_if = "Map::is_empty",
        deserialize_with = "super::models::null_as_default"
    )]
    pub value_info: Map<String, Value>,
}

/// Camunda's value types. Parsing the name ignores the case of its first letter, as the engine does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VarType {
    String,
    Integer,
    Long,
    Short,
    Double,
    Number,
    Boolean,
    Date,
    Null,
    Json,
    Xml,
    Object,
    Bytes,
    File,
}

/// A decoded variable: its value as plain JSON plus what is needed to write it back.
#[derive(Debug, Clone, PartialEq)]
pub struct Variable {
    /// The Camunda type it came with (or will be sent with).
    pub var_type: VarType,
    /// The value as JSON (see the module table).
    pub value: Value,
    /// `valueInfo` as received (kept for Object and File).
    pub info: Map<String, Value>,
}

/// A variable that cannot be decoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("variable `{name}`: {message}")]
pub struct VariableError {
    /// The variable's name.
    pub name: String,
    /// What is wrong with it.
    pub message: String,
}

/// `serializationDataFormat` of Object variables whose value is JSON text.
const JSON_FORMAT: &str = "application/json";

impl VarType {
    /// Every type, in the module table's order (for tests and validation messages).
    pub const ALL: [VarType; 14] = [
        VarType::String,
        VarType::Integer,
        VarType::Long,
        VarType::Short,
        VarType::Double,
        VarType::Number,
        VarType::Boolean,
        VarType::Date,
        VarType::Null,
        VarType::Json,
        VarType::Xml,
        VarType::Object,
        VarType::Bytes,
        VarType::File,
    ];

    /// Parses a type name as the engine does: the first letter in either case, the rest exact
    /// (`string` and `String` are the same type, `STRING` is unknown).
    pub fn parse(name: &str) -> Option<VarType> {
        let mut chars = name.chars();
        let first = chars.next()?;
        let rest = chars.as_str();
        let first_upper = first.to_ascii_uppercase();
        VarType::ALL.into_iter().find(|t| {
            let canonical = t.as_str();
            canonical.starts_with(first_upper) && &canonical[1..] == rest
        })
    }

    /// The canonical type name, as sent on the wire.
    pub fn as_str(&self) -> &'static str {
        match self {
            VarType::String => "String",
            VarType::Integer => "Integer",
            VarType::Long => "Long",
            VarType::Short => "Short",
            VarType::Double => "Double",
            VarType::Number => "Number",
            VarType::Boolean => "Boolean",
            VarType::Date => "Date",
            VarType::Null => "Null",
            VarType::Json => "Json",
            VarType::Xml => "Xml",
            VarType::Object => "Object",
            VarType::Bytes => "Bytes",
            VarType::File => "File",
        }
    }
}

impl std::fmt::Display for VarType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Variable {
    /// Decodes a wire value into plain JSON plus its type (see the module table).
    ///
    /// Fails when the type is unknown, the value does not fit the type (e.g. a number for a
    /// String), or a Json / Object (application/json) value is not valid JSON text.
    pub fn decode(name: &str, wire: &TypedValue) -> Result<Variable, VariableError> {
        let err = |message: String| VariableError {
            name: name.to_owned(),
            message,
        };
        let Some(type_name) = wire.type_name.as_deref() else {
            // No type: guess from the JSON, as the engine would.
            let mut guessed = Variable::from_json(wire.value.clone());
            guessed.info = wire.value_info.clone();
            return Ok(guessed);
        };
        let var_type =
            VarType::parse(type_name).ok_or_else(|| err(format!("unknown type `{type_name}`")))?;
        let value = &wire.value;
        let mismatch = || {
            err(format!(
                "a {} value cannot be {}",
                var_type.as_str(),
                json_kind(value)
            ))
        };
        let decoded = match var_type {
            VarType::String | VarType::Date | VarType::Xml | VarType::Bytes => match value {
                Value::String(_) | Value::Null => value.clone(),
                _ => return Err(mismatch()),
            },
            VarType::Integer | VarType::Short | VarType::Long => match value {
                Value::Number(n) if n.is_i64() || n.is_u64() => value.clone(),
                Value::Null => Value::Null,
                _ => return Err(mismatch()),
            },
            VarType::Double | VarType::Number => match value {
                Value::Number(_) | Value::Null => value.clone(),
                _ => return Err(mismatch()),
            },
            VarType::Boolean => match value {
                Value::Bool(_) | Value::Null => value.clone(),
                _ => return Err(mismatch()),
            },
            VarType::Null | VarType::File => Value::Null,
            VarType::Json => {
                parse_json_text(value).map_err(|e| err(format!("invalid Json: {e}")))?
            }
            VarType::Object => {
                if is_json_object(&wire.value_info) {
                    parse_json_text(value).map_err(|e| err(format!("invalid JSON object: {e}")))?
                } else {
                    // Java-serialized (base64) or another format procos cannot read: keep as is.
                    value.clone()
                }
            }
        };
        Ok(Variable {
            var_type,
            value: decoded,
            info: wire.value_info.clone(),
        })
    }

    /// Chooses an explicit type for a plain JSON value: string → String, bool → Boolean,
    /// integer within i32 → Integer (else Long), other numbers → Double, null → Null,
    /// object/array → Json.
    pub fn from_json(value: Value) -> Variable {
        let var_type = match &value {
            Value::Null => VarType::Null,
            Value::Bool(_) => VarType::Boolean,
            Value::String(_) => VarType::String,
            Value::Number(n) => match n.as_i64() {
                Some(i) if i32::try_from(i).is_ok() => VarType::Integer,
                Some(_) => VarType::Long,
                // A float, or a u64 past i64::MAX (too big for a Long; a Double keeps its magnitude).
                None => VarType::Double,
            },
            Value::Array(_) | Value::Object(_) => VarType::Json,
        };
        Variable {
            var_type,
            value,
            info: Map::new(),
        }
    }

    /// The wire form, always with an explicit type. Json and JSON Objects are sent as their
    /// serialized text (the engine requires a string); `valueInfo` is kept.
    pub fn encode(&self) -> TypedValue {
        let value = match self.var_type {
            VarType::Json if !self.value.is_null() => Value::String(self.value.to_string()),
            VarType::Object if is_json_object(&self.info) && !self.value.is_null() => {
                Value::String(self.value.to_string())
            }
            VarType::Null | VarType::File if self.value.is_null() => Value::Null,
            _ => self.value.clone(),
        };
        TypedValue {
            value,
            type_name: Some(self.var_type.as_str().to_owned()),
            value_info: self.info.clone(),
        }
    }
}

/// True when an Object's `valueInfo` says its value is JSON text.
fn is_json_object(info: &Map<String, Value>) -> bool {
    info.get("serializationDataFormat")
        .and_then(Value::as_str)
        .is_some_and(|f| f.starts_with(JSON_FORMAT))
}

/// Parses serialized JSON text; null stays null and an already-parsed value is kept.
fn parse_json_text(value: &Value) -> Result<Value, serde_json::Error> {
    match value {
        Value::String(text) => serde_json::from_str(text),
        other => Ok(other.clone()),
    }
}

/// "a string", "a number", … for error messages.
fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Decodes every variable of a wire map; fails on the first that cannot be decoded.
pub fn decode_all(vars: &VariableMap) -> Result<BTreeMap<String, Variable>, VariableError> {
    vars.iter()
        .map(|(name, wire)| Ok((name.clone(), Variable::decode(name, wire)?)))
        .collect()
}

/// The plain JSON view (name → decoded value) that endpoints and templates see.
pub fn to_json_map(vars: &BTreeMap<String, Variable>) -> Map<String, Value> {
    vars.iter()
        .map(|(name, var)| (name.clone(), var.value.clone()))
        .collect()
}

/// Encodes plain JSON outputs (e.g. an endpoint's result) for the engine, each with an explicit type.
pub fn encode_json_map(values: &Map<String, Value>) -> VariableMap {
    values
        .iter()
        .map(|(name, value)| (name.clone(), Variable::from_json(value.clone()).encode()))
        .collect()
}

/// Formats a Date value as the engine expects: `yyyy-MM-dd'T'HH:mm:ss.SSSZ`
/// (e.g. `2025-01-23T14:42:45.000+0200`).
pub fn format_date(dt: DateTime<FixedOffset>) -> String {
    dt.format("%Y-%m-%dT%H:%M:%S%.3f%z").to_string()
}

/// Parses an engine date (`2025-01-23T14:42:45.000+0200`), also accepting RFC 3339 offsets
/// (`+02:00`, `Z`) and a missing fraction. Used for `lockExpirationTime` and Date variables.
pub fn parse_date(s: &str) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z")
        .or_else(|_| DateTime::parse_from_rfc3339(s))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn wire(v: Value) -> TypedValue {
        serde_json::from_value(v).expect("valid wire value")
    }

    fn decode(v: Value) -> Variable {
        Variable::decode("v", &wire(v)).expect("decodes")
    }

    #[test]
    fn every_type_round_trips_through_the_wire() {
        let cases = [
            json!({"value": "hi", "type": "String"}),
            json!({"value": 7, "type": "Integer"}),
            json!({"value": 9_000_000_000_i64, "type": "Long"}),
            json!({"value": 3, "type": "Short"}),
            json!({"value": 1.5, "type": "Double"}),
            json!({"value": 2.5, "type": "Number"}),
            json!({"value": true, "type": "Boolean"}),
            json!({"value": "2025-01-23T14:42:45.000+0200", "type": "Date"}),
            json!({"value": null, "type": "Null"}),
            json!({"value": "{\"a\":[1,2],\"b\":null}", "type": "Json"}),
            json!({"value": "<a>x</a>", "type": "Xml"}),
            json!({"value": "{\"k\":\"v\"}", "type": "Object",
                   "valueInfo": {"objectTypeName": "java.util.HashMap",
                                 "serializationDataFormat": "application/json"}}),
            json!({"value": "rO0ABXNyABFqYXZh", "type": "Object",
                   "valueInfo": {"objectTypeName": "com.acme.Order",
                                 "serializationDataFormat": "application/x-java-serialized-object"}}),
            json!({"value": "aGVsbG8=", "type": "Bytes"}),
            json!({"value": null, "type": "File",
                   "valueInfo": {"filename": "a.pdf", "mimetype": "application/pdf"}}),
        ];
        let mut seen = std::collections::HashSet::new();
        for case in cases {
            let original = wire(case.clone());
            let var = Variable::decode("v", &original).expect("decodes");
            seen.insert(var.var_type);
            assert_eq!(var.encode(), original, "wire form preserved for {case}");
            let again = Variable::decode("v", &var.encode()).expect("re-decodes");
            assert_eq!(again, var, "decoded form preserved for {case}");
        }
        assert_eq!(
            seen.len(),
            VarType::ALL.len(),
            "the table covers every type"
        );
    }

    #[test]
    fn json_and_json_objects_arrive_parsed() {
        let json_var = decode(json!({"value": "{\"a\":[1,2]}", "type": "Json"}));
        assert_eq!(json_var.value, json!({"a": [1, 2]}));
        let obj = decode(json!({"value": "[1,\"x\"]", "type": "Object",
            "valueInfo": {"serializationDataFormat": "application/json",
                          "objectTypeName": "java.util.ArrayList"}}));
        assert_eq!(obj.value, json!([1, "x"]));
        assert_eq!(obj.info["objectTypeName"], "java.util.ArrayList");
    }

    #[test]
    fn java_serialized_objects_stay_base64_and_files_have_no_value() {
        let java = decode(json!({"value": "rO0ABXQABWhlbGxv", "type": "Object",
            "valueInfo": {"serializationDataFormat": "application/x-java-serialized-object"}}));
        assert_eq!(java.value, json!("rO0ABXQABWhlbGxv"));
        let file = decode(json!({"type": "File",
            "valueInfo": {"filename": "scan.png", "mimetype": "image/png"}}));
        assert_eq!(file.var_type, VarType::File);
        assert_eq!(file.value, Value::Null);
        assert_eq!(file.info["filename"], "scan.png");
    }

    #[test]
    fn type_names_ignore_the_case_of_the_first_letter_only() {
        assert_eq!(VarType::parse("string"), Some(VarType::String));
        assert_eq!(VarType::parse("json"), Some(VarType::Json));
        assert_eq!(VarType::parse("Long"), Some(VarType::Long));
        assert_eq!(VarType::parse("STRING"), None);
        assert_eq!(VarType::parse(""), None);
        assert_eq!(
            decode(json!({"value": 5, "type": "integer"})).var_type,
            VarType::Integer
        );
        for t in VarType::ALL {
            assert_eq!(VarType::parse(t.as_str()), Some(t));
        }
    }

    #[test]
    fn bad_values_name_the_variable() {
        let err = Variable::decode("total", &wire(json!({"value": "x", "type": "Integer"})))
            .expect_err("string is no Integer");
        assert_eq!(err.name, "total");
        assert!(err.message.contains("Integer"), "{err}");
        let err = Variable::decode("doc", &wire(json!({"value": "{oops", "type": "Json"})))
            .expect_err("broken Json");
        assert!(
            err.to_string().starts_with("variable `doc`: invalid Json"),
            "{err}"
        );
        let err = Variable::decode("x", &wire(json!({"value": 1, "type": "Money"})))
            .expect_err("unknown type");
        assert!(err.message.contains("unknown type `Money`"), "{err}");
    }

    #[test]
    fn plain_json_gets_explicit_types() {
        let t = |v: Value| Variable::from_json(v).encode().type_name.expect("typed");
        assert_eq!(t(json!("a")), "String");
        assert_eq!(t(json!(true)), "Boolean");
        assert_eq!(t(json!(i32::MAX)), "Integer");
        assert_eq!(t(json!(i32::MIN)), "Integer");
        assert_eq!(t(json!(i64::from(i32::MAX) + 1)), "Long");
        assert_eq!(t(json!(-5_000_000_000_i64)), "Long");
        assert_eq!(t(json!(0.25)), "Double");
        assert_eq!(t(json!(null)), "Null");
        assert_eq!(t(json!([1])), "Json");
        let outputs = json!({"order": {"id": 7}, "n": 1});
        let encoded = encode_json_map(outputs.as_object().expect("object"));
        assert_eq!(encoded["order"].value, json!("{\"id\":7}"));
        assert_eq!(encoded["order"].type_name.as_deref(), Some("Json"));
        assert_eq!(encoded["n"].value, json!(1));
    }

    #[test]
    fn untyped_values_are_guessed_and_views_are_plain() {
        let vars: VariableMap = serde_json::from_value(json!({
            "a": {"value": 3_000_000_000_i64},
            "b": {"value": "{\"x\":1}", "type": "Json"},
        }))
        .expect("wire map");
        let decoded = decode_all(&vars).expect("decodes");
        assert_eq!(decoded["a"].var_type, VarType::Long);
        let view = to_json_map(&decoded);
        assert_eq!(
            Value::Object(view),
            json!({"a": 3_000_000_000_i64, "b": {"x": 1}})
        );
    }

    #[test]
    fn dates_use_the_engine_format_and_parse_its_variants() {
        let dt = parse_date("2025-01-23T14:42:45.000+0200").expect("engine format");
        assert_eq!(format_date(dt), "2025-01-23T14:42:45.000+0200");
        let colon = parse_date("2025-01-23T14:42:45.123+02:00").expect("colon offset");
        assert_eq!(format_date(colon), "2025-01-23T14:42:45.123+0200");
        let zulu = parse_date("2025-01-23T12:42:45Z").expect("zulu");
        assert_eq!(zulu, dt);
        assert_eq!(parse_date("23.01.2025"), None);
    }
}
