//! Typed process variables: checking what a client sends and rendering what the engine returns.
//!
//! On the wire a variable is `{ "value": …, "type": "String", "valueInfo": { … } }`. The engine
//! checks each value against its type the way Camunda's REST layer converts it (lenient where
//! Jackson coerces, strict where Camunda rejects), keeps `type` + `valueInfo` as sent, and never
//! stores `valueInfo.transient` variables. `File` contents are kept as bytes and are absent
//! (`null`) on output, downloadable from `/process-instance/{id}/variables/{name}/data`.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::errors::ApiError;

/// The value types Camunda 7 knows (with the Spin plugin's `Json` and `Xml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VarType {
    Boolean,
    Bytes,
    Date,
    Double,
    Integer,
    Long,
    Short,
    Null,
    String,
    Number,
    Object,
    File,
    Json,
    Xml,
}

impl VarType {
    const ALL: [VarType; 14] = [
        VarType::Boolean,
        VarType::Bytes,
        VarType::Date,
        VarType::Double,
        VarType::Integer,
        VarType::Long,
        VarType::Short,
        VarType::Null,
        VarType::String,
        VarType::Number,
        VarType::Object,
        VarType::File,
        VarType::Json,
        VarType::Xml,
    ];

    /// The canonical name, as the engine writes it in responses.
    pub(crate) fn name(self) -> &'static str {
        match self {
            VarType::Boolean => "Boolean",
            VarType::Bytes => "Bytes",
            VarType::Date => "Date",
            VarType::Double => "Double",
            VarType::Integer => "Integer",
            VarType::Long => "Long",
            VarType::Short => "Short",
            VarType::Null => "Null",
            VarType::String => "String",
            VarType::Number => "Number",
            VarType::Object => "Object",
            VarType::File => "File",
            VarType::Json => "Json",
            VarType::Xml => "Xml",
        }
    }

    /// Parses a type name; only the first letter is case-insensitive, like Camunda.
    pub(crate) fn parse(name: &str) -> Option<VarType> {
        let mut chars = name.chars();
        let first = chars.next()?.to_ascii_uppercase();
        let normalized: String = std::iter::once(first).chain(chars).collect();
        Self::ALL.into_iter().find(|t| t.name() == normalized)
    }
}

/// A variable as a client sends it (`VariableValueDto`). Unknown fields are ignored and `null`
/// for any field means it is absent, as engine-rest's Jackson reads it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct VariableIn {
    #[serde(default)]
    value: Value,
    #[serde(rename = "type", default)]
    type_name: Option<String>,
    #[serde(default)]
    value_info: Option<Map<String, Value>>,
}

/// Variables in a request body: name → value.
pub(crate) type VariablesIn = BTreeMap<String, VariableIn>;

/// A stored, checked variable value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TypedValue {
    pub ty: VarType,
    /// The value as it goes out on the wire (`Null` for `File`).
    pub value: Value,
    pub value_info: Map<String, Value>,
    /// Contents of a `File` variable.
    pub file: Option<Bytes>,
}

/// Variables of one scope, ordered by name.
pub(crate) type VarMap = BTreeMap<String, TypedValue>;

/// Why a variable was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum VariableError {
    #[error("Unsupported value type '{ty}' of variable '{name}'")]
    UnknownType { name: String, ty: String },
    #[error(
        "Cannot convert value '{value}' of type '{ty}' of variable '{name}' to java type {java}"
    )]
    Convert {
        name: String,
        ty: &'static str,
        value: String,
        java: &'static str,
    },
    #[error(
        "Must provide 'null' or String value for value of SerializableValue type '{ty}' (variable '{name}')"
    )]
    NotSerialized { name: String, ty: &'static str },
    #[error("Variable '{name}' of type 'File' needs valueInfo.filename")]
    NoFilename { name: String },
    #[error(
        "Cannot deserialize object in variable '{name}': no 'objectTypeName' provided for non-null value."
    )]
    NoObjectTypeName { name: String },
    #[error(
        "ENGINE-17007 Cannot set variable with name {name}. Java serialization format is prohibited"
    )]
    JavaSerialization { name: String },
}

impl From<VariableError> for ApiError {
    fn from(err: VariableError) -> Self {
        ApiError::invalid(err.to_string())
    }
}

/// Checks every variable of a request; transient variables are left out of the result.
pub(crate) fn check_all(
    input: Option<VariablesIn>,
) -> Result<Vec<(String, TypedValue)>, VariableError> {
    let mut out = Vec::new();
    for (name, var) in input.unwrap_or_default() {
        let transient = var
            .value_info
            .as_ref()
            .and_then(|i| i.get("transient"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let typed = check(&name, var)?;
        if !transient {
            out.push((name, typed));
        }
    }
    Ok(out)
}

/// Checks one variable and converts its value the way Camunda's REST layer would.
pub(crate) fn check(name: &str, var: VariableIn) -> Result<TypedValue, VariableError> {
    let value_info = var.value_info.unwrap_or_default();
    let ty = match &var.type_name {
        Some(t) => VarType::parse(t).ok_or_else(|| VariableError::UnknownType {
            name: name.to_owned(),
            ty: t.clone(),
        })?,
        None => guess(name, &var.value)?,
    };
    let value = var.value;
    let convert = |java: &'static str| VariableError::Convert {
        name: name.to_owned(),
        ty: ty.name(),
        value: value_text(&value),
        java,
    };
    let mut file = None;
    let checked = match ty {
        VarType::Null => Value::Null,
        _ if value.is_null() => Value::Null,
        VarType::Boolean => match &value {
            Value::Bool(b) => Value::Bool(*b),
            Value::String(s) if s == "true" || s == "false" => Value::Bool(s == "true"),
            _ => return Err(convert("java.lang.Boolean")),
        },
        VarType::Integer => integer(&value, i32::MIN.into(), i32::MAX.into())
            .ok_or_else(|| convert("java.lang.Integer"))?,
        VarType::Short => integer(&value, i16::MIN.into(), i16::MAX.into())
            .ok_or_else(|| convert("java.lang.Short"))?,
        VarType::Long => {
            integer(&value, i64::MIN, i64::MAX).ok_or_else(|| convert("java.lang.Long"))?
        }
        VarType::Double | VarType::Number => match &value {
            Value::Number(_) => value.clone(),
            Value::String(s) => s
                .parse::<f64>()
                .ok()
                .and_then(|f| serde_json::Number::from_f64(f).map(Value::Number))
                .ok_or_else(|| convert("java.lang.Double"))?,
            _ => return Err(convert("java.lang.Double")),
        },
        VarType::String => match &value {
            Value::String(_) => value.clone(),
            Value::Number(n) => Value::String(n.to_string()),
            Value::Bool(b) => Value::String(b.to_string()),
            _ => return Err(convert("java.lang.String")),
        },
        VarType::Date => match value.as_str() {
            Some(s) if parse_date(s).is_some() => value.clone(),
            _ => return Err(convert("java.util.Date")),
        },
        VarType::Bytes => match value.as_str() {
            Some(s) if BASE64.decode(s).is_ok() => value.clone(),
            _ => return Err(convert("byte[]")),
        },
        VarType::Object if !value.is_null() => {
            // Camunda needs the Java type to deserialize into, and refuses Java-serialized
            // objects over REST by default.
            if value_info
                .get("objectTypeName")
                .and_then(Value::as_str)
                .is_none()
            {
                return Err(VariableError::NoObjectTypeName {
                    name: name.to_owned(),
                });
            }
            if value_info
                .get("serializationDataFormat")
                .and_then(Value::as_str)
                == Some("application/x-java-serialized-object")
            {
                return Err(VariableError::JavaSerialization {
                    name: name.to_owned(),
                });
            }
            match &value {
                Value::String(_) => value.clone(),
                _ => {
                    return Err(VariableError::NotSerialized {
                        name: name.to_owned(),
                        ty: ty.name(),
                    });
                }
            }
        }
        VarType::Object | VarType::Json | VarType::Xml => match &value {
            Value::String(_) => value.clone(),
            _ => {
                return Err(VariableError::NotSerialized {
                    name: name.to_owned(),
                    ty: ty.name(),
                });
            }
        },
        VarType::File => {
            if value_info.get("filename").and_then(Value::as_str).is_none() {
                return Err(VariableError::NoFilename {
                    name: name.to_owned(),
                });
            }
            let bytes = value
                .as_str()
                .and_then(|s| BASE64.decode(s).ok())
                .ok_or_else(|| convert("byte[]"))?;
            file = Some(Bytes::from(bytes));
            Value::Null
        }
    };
    let mut value_info = value_info;
    value_info.remove("transient");
    if ty == VarType::File {
        // FileValueTypeImpl keeps only these three (camelCase `mimeType`; a `mimetype` some
        // clients send is not read, so the download is `application/octet-stream`).
        value_info.retain(|k, v| {
            matches!(k.as_str(), "filename" | "mimeType" | "encoding") && !v.is_null()
        });
    }
    Ok(TypedValue {
        ty,
        value: checked,
        value_info,
        file,
    })
}

/// The type Camunda infers for an untyped value.
fn guess(name: &str, value: &Value) -> Result<VarType, VariableError> {
    Ok(match value {
        Value::Null => VarType::Null,
        Value::Bool(_) => VarType::Boolean,
        Value::String(_) => VarType::String,
        Value::Number(n) if n.is_i64() => match n.as_i64() {
            Some(i) if i32::try_from(i).is_ok() => VarType::Integer,
            _ => VarType::Long,
        },
        Value::Number(_) => VarType::Double,
        Value::Array(_) | Value::Object(_) => {
            return Err(VariableError::UnknownType {
                name: name.to_owned(),
                ty: "<none: untyped object or array>".to_owned(),
            });
        }
    })
}

fn integer(value: &Value, min: i64, max: i64) -> Option<Value> {
    let i = match value {
        Value::Number(n) => n.as_i64()?,
        Value::String(s) => s.trim().parse::<i64>().ok()?,
        _ => return None,
    };
    (min..=max).contains(&i).then(|| Value::from(i))
}

fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Parses Camunda's date format `yyyy-MM-dd'T'HH:mm:ss.SSSZ` (`Z` = `+0200`) as strictly as
/// Java's SimpleDateFormat does: the milliseconds are required (chrono's `%.3f` alone would make
/// them optional).
pub(crate) fn parse_date(s: &str) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    let has_millis = s.get(19..20) == Some(".")
        && s.get(20..23)
            .is_some_and(|d| d.bytes().all(|b| b.is_ascii_digit()));
    if !has_millis {
        return None;
    }
    chrono::DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.3f%z").ok()
}

/// Formats a wall-clock time the way the engine writes dates.
pub(crate) fn format_date(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3f%z").to_string()
}

impl TypedValue {
    /// The wire form `{type, value, valueInfo}`. With `deserialize`, `Object` values in
    /// `application/json` format are sent as parsed JSON, as the real engine does for maps.
    pub(crate) fn to_json(&self, deserialize: bool) -> Value {
        let value = (deserialize && self.is_json_object())
            .then(|| self.json_document())
            .flatten()
            .unwrap_or_else(|| self.value.clone());
        json!({ "type": self.ty.name(), "value": value, "valueInfo": self.value_info })
    }

    /// An `Object` serialized as `application/json` (how the REST API carries maps and lists).
    pub(crate) fn is_json_object(&self) -> bool {
        self.ty == VarType::Object
            && self
                .value_info
                .get("serializationDataFormat")
                .and_then(Value::as_str)
                == Some("application/json")
    }

    /// The parsed document of a `Json` variable or a JSON-format `Object`; `None` for any other
    /// type, or text that is not JSON.
    pub(crate) fn json_document(&self) -> Option<Value> {
        if self.ty != VarType::Json && !self.is_json_object() {
            return None;
        }
        self.value
            .as_str()
            .and_then(|s| serde_json::from_str(s).ok())
    }
}

/// Renders a variable map, optionally only the named variables.
pub(crate) fn render(vars: &VarMap, only: Option<&[String]>, deserialize: bool) -> Value {
    let out: Map<String, Value> = vars
        .iter()
        .filter(|(name, _)| only.is_none_or(|names| names.iter().any(|n| n == *name)))
        .map(|(name, v)| (name.clone(), v.to_json(deserialize)))
        .collect();
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(v: Value) -> VariableIn {
        serde_json::from_value(v).expect("variable json")
    }

    #[test]
    fn type_first_letter_is_case_insensitive_and_unknown_types_are_refused() {
        assert_eq!(VarType::parse("string"), Some(VarType::String));
        assert_eq!(VarType::parse("json"), Some(VarType::Json));
        assert_eq!(VarType::parse("STRING"), None);
        let err = check("x", var(json!({"value": 1, "type": "Decimal"})));
        assert!(matches!(err, Err(VariableError::UnknownType { .. })));
    }

    #[test]
    fn objects_need_a_type_name_and_java_serialization_is_refused() {
        let no_type = check(
            "o",
            var(json!({"value": "{}", "type": "Object",
            "valueInfo": {"serializationDataFormat": "application/json"}})),
        );
        assert!(matches!(
            no_type,
            Err(VariableError::NoObjectTypeName { .. })
        ));
        let java = check(
            "o",
            var(json!({"value": "rO0AB", "type": "Object",
            "valueInfo": {"objectTypeName": "java.util.HashMap", "serializationDataFormat": "application/x-java-serialized-object"}})),
        );
        assert!(matches!(java, Err(VariableError::JavaSerialization { .. })));
        let ok = check(
            "o",
            var(json!({"value": "{}", "type": "Object",
            "valueInfo": {"objectTypeName": "com.acme.Order", "serializationDataFormat": "application/json"}})),
        );
        assert!(ok.is_ok());
        assert!(
            check("o", var(json!({"value": null, "type": "Object"}))).is_ok(),
            "null needs no type name"
        );
    }

    #[test]
    fn dates_need_milliseconds_like_simpledateformat() {
        assert!(parse_date("2025-01-23T14:42:45.000+0200").is_some());
        assert!(parse_date("2025-01-23T14:42:45+0200").is_none());
        assert!(parse_date("2025-01-23T14:42:45.5+0200").is_none());
        assert!(parse_date("2025-01-23T14:42:45.000Z").is_none());
    }

    #[test]
    fn values_are_converted_or_refused_like_camunda() {
        let i = check("n", var(json!({"value": "42", "type": "Integer"}))).expect("int");
        assert_eq!(i.value, json!(42));
        assert!(check("n", var(json!({"value": "abc", "type": "Integer"}))).is_err());
        assert!(
            check(
                "n",
                var(json!({"value": 3_000_000_000_i64, "type": "Integer"}))
            )
            .is_err()
        );
        assert!(check("j", var(json!({"value": {"a": 1}, "type": "Json"}))).is_err());
        let j = check("j", var(json!({"value": "{\"a\":1}", "type": "Json"}))).expect("json");
        assert_eq!(j.value, json!("{\"a\":1}"));
        assert!(
            check(
                "d",
                var(json!({"value": "2025-01-23T14:42:45.000+0200", "type": "Date"}))
            )
            .is_ok()
        );
        assert!(check("d", var(json!({"value": "2025-01-23", "type": "Date"}))).is_err());
    }

    #[test]
    fn files_keep_bytes_and_go_out_without_value() {
        let f = check(
            "f",
            var(json!({"value": BASE64.encode(b"hello"), "type": "File",
                       "valueInfo": {"filename": "a.txt", "mimetype": "text/plain"}})),
        )
        .expect("file");
        assert_eq!(f.file.as_deref(), Some(&b"hello"[..]));
        let out = f.to_json(false);
        assert_eq!(out["value"], Value::Null);
        assert_eq!(out["valueInfo"]["filename"], "a.txt");
        assert!(check("f", var(json!({"value": "aGk=", "type": "File"}))).is_err());
    }

    #[test]
    fn transient_variables_are_not_stored_and_unknown_fields_are_ignored() {
        let input: VariablesIn = serde_json::from_value(json!({
            "keep": {"value": "a", "type": "String"},
            "drop": {"value": "b", "type": "String", "valueInfo": {"transient": true}}
        }))
        .expect("vars");
        let checked = check_all(Some(input)).expect("valid");
        assert_eq!(checked.len(), 1);
        assert_eq!(checked[0].0, "keep");
        let lenient: VariableIn = serde_json::from_value(
            json!({"value": 1, "type": null, "valueInfo": null, "typ": "x"}),
        )
        .expect("unknown fields and nulls are accepted");
        let typed = check("n", lenient).expect("an untyped number");
        assert_eq!(
            typed.ty,
            VarType::Integer,
            "the type is guessed as Camunda does"
        );
    }
}
