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
    /// `objectTypeName`, `serializationDataFormat`, `filename`, `mimetype`, `transient`, …
    #[serde(default, skip_serializing_if = "Map::is_empty")]
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
