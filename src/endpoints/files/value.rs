//! A File variable inside an endpoint's JSON result.
//!
//! Results are plain JSON, which the Completion block encodes with a type guessed from each
//! value; a file's bytes need the engine's `File` type instead (base64 `value`, `valueInfo`
//! `filename` and `mimeType`), which Cockpit offers for download and the next task loads through
//! [`FileSource`](crate::endpoints::FileSource). A result marks such a value with one reserved
//! key:
//!
//! ```text
//! {"$procos_file": {"filename": "invoice.pdf", "mimeType": "application/pdf", "base64": "JVBERi0…"}}
//!    ──► pde::completion::map_output (through `typed_variable`) ──►
//! {"type": "File", "value": "JVBERi0…", "valueInfo": {"filename": "invoice.pdf", "mimeType": "application/pdf"}}
//! ```
//!
//! It survives everything between the endpoint and the completion as JSON (the output mapping's
//! pointers, the result cache, `sub_pde` combining), and an output `mapping` names the variable
//! (`document: /content`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};

use crate::camunda::TypedValue;

/// The reserved key that marks a File value.
pub const FILE_KEY: &str = "$procos_file";

/// A File value for a result: `content` with its file name and MIME type.
pub fn file_value(filename: &str, mime_type: &str, content: &[u8]) -> Value {
    json!({ FILE_KEY: {
        "filename": filename,
        "mimeType": mime_type,
        "base64": BASE64.encode(content),
    }})
}

/// The engine's File variable for a value made by [`file_value`]; `None` for any other value
/// (which keeps its guessed type) and for a marked value whose parts are not strings.
pub fn typed_variable(value: &Value) -> Option<TypedValue> {
    let object = value.as_object()?;
    if object.len() != 1 {
        return None;
    }
    let file = object.get(FILE_KEY)?.as_object()?;
    let text = |key: &str| file.get(key).and_then(Value::as_str);
    let data = text("base64")?;
    let mut info = Map::new();
    info.insert("filename".into(), text("filename")?.into());
    if let Some(mime) = text("mimeType") {
        info.insert("mimeType".into(), mime.into());
    }
    Some(TypedValue {
        value: Value::String(data.to_string()),
        type_name: Some("File".into()),
        value_info: info,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_value_becomes_a_file_variable_with_its_name_type_and_bytes() {
        let value = file_value("a.pdf", "application/pdf", b"%PDF-1\x00\xff");
        let typed = typed_variable(&value).expect("a File variable");
        assert_eq!(typed.type_name.as_deref(), Some("File"));
        assert_eq!(typed.value_info["filename"], "a.pdf");
        assert_eq!(typed.value_info["mimeType"], "application/pdf");
        let bytes = BASE64
            .decode(typed.value.as_str().expect("base64 text"))
            .expect("base64");
        assert_eq!(bytes, b"%PDF-1\x00\xff");
    }

    /// What the engine is sent: the Completion block's output mapping turns the File value at
    /// the mapped pointer into a File variable and leaves the rest as guessed.
    #[test]
    fn the_output_mapping_sends_a_file_value_as_a_file_variable() {
        let rules: crate::config::file::OutputConfig =
            serde_yaml::from_str("mapping: { document: /content, size: /size }").expect("rules");
        let output = json!({"content": file_value("a.txt", "text/plain", b"hi"), "size": 2});
        let (variables, local) = crate::pde::completion::map_output(&rules, output);
        assert!(local.is_empty());
        assert_eq!(variables["document"].type_name.as_deref(), Some("File"));
        assert_eq!(variables["document"].value, json!(BASE64.encode(b"hi")));
        assert_eq!(variables["document"].value_info["filename"], "a.txt");
        assert_eq!(variables["size"].type_name.as_deref(), Some("Integer"));
    }

    #[test]
    fn other_values_are_not_files() {
        for value in [
            json!("text"),
            json!({"filename": "a.pdf"}),
            json!({FILE_KEY: {"filename": "a.pdf"}}),
            json!({FILE_KEY: {"filename": 1, "base64": ""}}),
            json!({FILE_KEY: {"filename": "a", "base64": ""}, "other": 1}),
        ] {
            assert!(typed_variable(&value).is_none(), "{value}");
        }
    }
}
