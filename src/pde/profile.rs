//! The task profile: what kind of task this is, computed once per task before the Gateway, so
//! that routing can learn per kind. Its [`class`](TaskProfile::class) is part of the learner's
//! key (topic, endpoint, class): long inputs can be learned onto a different endpoint than short
//! ones.
//!
//! ```text
//!  variables + pde.prompt ──► estimated prompt tokens ──► size bucket  s | m | l
//!  pde.capabilities       ──► declared needs (vision, json, …)  ──► class `l+vision`
//! ```
//!
//! Tokens are estimated as characters ÷ 4 (the usual rule of thumb for English text and
//! JSON): routing needs the bucket, not an exact count, and no tokenizer of any one model fits
//! every endpoint.

use crate::endpoints::EndpointRequest;

/// Extension property that declares what a task needs, comma-separated (`vision, json`).
pub const CAPABILITIES_PROPERTY: &str = "pde.capabilities";

/// Estimated prompt tokens below which a task is small (`s`).
pub const SMALL_TOKENS: u64 = 1_000;

/// Estimated prompt tokens below which a task is medium (`m`); from here on it is large (`l`),
/// past the context window of many small local models.
pub const LARGE_TOKENS: u64 = 8_000;

/// Capabilities kept per task: the class stays of low cardinality (it is a learner key).
const MAX_CAPABILITIES: usize = 4;

/// What the Gateway and the learner know about one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskProfile {
    /// Characters of the input: the variables as JSON, plus a `pde.prompt`.
    pub input_chars: usize,
    /// Estimated prompt tokens (characters ÷ 4, rounded up).
    pub estimated_tokens: u64,
    /// Declared capabilities, lower case, sorted, at most four.
    pub capabilities: Vec<String>,
    /// The learner's class: the size bucket, then `+capability` for each declared one.
    pub class: String,
}

impl TaskProfile {
    /// Profiles one task's request.
    pub fn of(request: &EndpointRequest) -> Self {
        let variables = serde_json::to_string(&request.variables).map_or(0, |s| s.len());
        let prompt = request.properties.get("pde.prompt").map_or(0, String::len);
        let input_chars = variables + prompt;
        let estimated_tokens = (input_chars as u64).div_ceil(4);
        let mut capabilities: Vec<String> = request
            .properties
            .get(CAPABILITIES_PROPERTY)
            .map(|list| {
                list.split(',')
                    .map(|c| c.trim().to_ascii_lowercase())
                    .filter(|c| valid_capability(c))
                    .collect()
            })
            .unwrap_or_default();
        capabilities.sort();
        capabilities.dedup();
        capabilities.truncate(MAX_CAPABILITIES);
        let mut class = size_bucket(estimated_tokens).to_string();
        for c in &capabilities {
            class.push('+');
            class.push_str(c);
        }
        Self {
            input_chars,
            estimated_tokens,
            capabilities,
            class,
        }
    }
}

/// `s`, `m` or `l` for an estimated prompt size.
pub fn size_bucket(estimated_tokens: u64) -> &'static str {
    if estimated_tokens < SMALL_TOKENS {
        "s"
    } else if estimated_tokens < LARGE_TOKENS {
        "m"
    } else {
        "l"
    }
}

/// A capability name: 1–32 of `a-z 0-9 _ -` (anything else is ignored, so a typo in a BPMN file
/// cannot put arbitrary text into metrics or the store).
fn valid_capability(c: &str) -> bool {
    (1..=32).contains(&c.len())
        && c.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(text: &str, capabilities: Option<&str>) -> EndpointRequest {
        let mut r = EndpointRequest::default();
        r.variables.insert("text".into(), json!(text));
        if let Some(c) = capabilities {
            r.properties.insert(CAPABILITIES_PROPERTY.into(), c.into());
        }
        r
    }

    #[test]
    fn the_class_is_the_size_bucket_of_the_estimated_prompt() {
        assert_eq!(TaskProfile::of(&request("hello", None)).class, "s");
        let medium = TaskProfile::of(&request(&"x".repeat(8_000), None));
        assert_eq!(
            (medium.class.as_str(), medium.estimated_tokens / 100),
            ("m", 20)
        );
        assert_eq!(
            TaskProfile::of(&request(&"x".repeat(40_000), None)).class,
            "l"
        );
    }

    #[test]
    fn declared_capabilities_join_the_class_sorted_and_cleaned() {
        let p = TaskProfile::of(&request("hi", Some(" Vision,json, json,no way!")));
        assert_eq!(p.capabilities, vec!["json", "vision"]);
        assert_eq!(p.class, "s+json+vision");
    }
}
