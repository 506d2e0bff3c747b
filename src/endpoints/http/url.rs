//! The request URL: a marked template rendered, its variable parts encoded by where they land.
//!
//! ```text
//!   https://api.example.com/v1/{{ id }}/items?q={{ q }}&key=${KEY}
//!   └── template text ─────┘    │              │
//!                path value ────┘ one segment: `/ ? # %` and the rest percent-encoded
//!                query value ──────────────────┘ a component: only A-Z a-z 0-9 - . _ ~ stay
//!   {{ base }}/v1 ── a value before the host ends is used as is: it chooses the host, so the
//!                    SSRF guard checks the request (see `net_guard`)
//! ```
//!
//! `{{ x | safe }}` opts a value out of encoding (a ready-made query string, several path
//! segments). Messages about a bad URL quote only variable text, capped, never the template's
//! own text: that is config and may hold an interpolated key.

use ::url::Origin;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Url;

use super::super::template::{MarkedTemplate, Piece, TemplateContext, TemplateError};
use crate::config::secret::quote;
use crate::endpoints::class;

/// Everything but RFC 3986 unreserved characters: a query or fragment value.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A path segment: unreserved, sub-delims, `:` and `@` stay; `/`, `?`, `#`, `%`, `\` do not.
const SEGMENT: &AsciiSet = &COMPONENT
    .remove(b'!')
    .remove(b'$')
    .remove(b'&')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*')
    .remove(b'+')
    .remove(b',')
    .remove(b';')
    .remove(b'=')
    .remove(b':')
    .remove(b'@');

/// Where in a URL the text written so far has reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// Before `://`: the scheme.
    Scheme,
    /// After `://`, before the host ends.
    Authority,
    Path,
    Query,
    Fragment,
}

impl Part {
    /// The part after `c`, written in `part`; `text` is everything written so far, `c` included.
    fn after(self, c: char, text: &str) -> Part {
        match (self, c) {
            (Part::Scheme, _) if text.ends_with("://") => Part::Authority,
            (Part::Authority, '/' | '\\') => Part::Path,
            (Part::Authority | Part::Path, '?') => Part::Query,
            (Part::Authority | Part::Path | Part::Query, '#') => Part::Fragment,
            (part, _) => part,
        }
    }
}

/// A URL template, compiled once.
#[derive(Debug, Clone)]
pub(super) struct UrlTemplate {
    template: MarkedTemplate,
    /// The origin (scheme, host, port) when the template's own text fixes it (its text before
    /// the first template tag reaches past the host); `None` when a variable can choose the host.
    fixed_origin: Option<Origin>,
}

/// A URL built for one task.
#[derive(Debug)]
pub(super) struct BuiltUrl {
    /// The URL to request. Its text may hold a secret: never put it in a message.
    pub url: Url,
    /// True when a variable chose the host (or could have): the SSRF guard applies.
    pub host_from_variable: bool,
}

/// Why a URL could not be built: an error class and a message naming the variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct UrlProblem {
    /// `template` (rendering failed) or `invalid_url`.
    pub code: &'static str,
    /// Starts with `url: `; quotes only variable values, capped and redacted.
    pub message: String,
}

impl UrlTemplate {
    /// Compiles the template named `name` (a config path).
    pub fn compile(name: &str, source: &str) -> Result<Self, TemplateError> {
        let template = MarkedTemplate::compile(name, source)?;
        let prefix_end = ["{{", "{%", "{#"]
            .iter()
            .filter_map(|tag| source.find(tag))
            .min()
            .unwrap_or(source.len());
        let prefix = &source[..prefix_end];
        let fixed_origin = prefix
            .split_once("://")
            .filter(|(_, rest)| rest.contains(['/', '?', '#', '\\']) || prefix_end == source.len())
            .and_then(|_| Url::parse(prefix.trim()).ok())
            .filter(|u| u.host_str().is_some())
            .map(|u| u.origin());
        Ok(Self {
            template,
            fixed_origin,
        })
    }

    /// Renders and encodes the URL for one task; checks it is an http(s) URL with a host.
    pub fn build(&self, ctx: &TemplateContext) -> Result<BuiltUrl, UrlProblem> {
        let pieces = self.template.render(ctx).map_err(|e| UrlProblem {
            code: class::TEMPLATE,
            message: format!("url: {e}"),
        })?;
        let problem = |what: String| UrlProblem {
            code: class::INVALID_URL,
            message: format!("url: {}, {what}", self.blame(&pieces)),
        };
        let text = encode(&pieces).map_err(|dots| {
            problem(format!(
                "and `{dots}` as a path segment would climb out of the configured path"
            ))
        })?;
        let url = Url::parse(text.trim())
            .map_err(|e| problem(format!("which is not a valid URL ({e})")))?;
        match (url.scheme(), url.host_str()) {
            ("http" | "https", Some(host)) if !host.is_empty() => {}
            ("http" | "https", _) => return Err(problem("which leaves no host".into())),
            (scheme, _) => {
                return Err(problem(format!(
                    "which gives scheme `{}`; only http and https",
                    quote(scheme)
                )));
            }
        }
        let host_from_variable = self
            .fixed_origin
            .as_ref()
            .is_none_or(|fixed| url.origin() != *fixed);
        Ok(BuiltUrl {
            url,
            host_from_variable,
        })
    }

    /// Names the template's variables and quotes what they rendered, for messages:
    /// "variable `base` renders `ftp://x`". Template text is never quoted.
    pub fn blame(&self, pieces: &[Piece]) -> String {
        blame(self.template.variables(), pieces)
    }

    /// The variables the template reads, for messages.
    pub fn variables(&self) -> &[String] {
        self.template.variables()
    }
}

/// "variable `m` renders `G ET`" / "variables `a`, `b` render `x`, `y`" / "the configured
/// value" when no variable is involved. Values are capped and redacted.
pub(super) fn blame(variables: &[String], pieces: &[Piece]) -> String {
    let values: Vec<String> = pieces
        .iter()
        .filter_map(|p| match p {
            Piece::Value { text, .. } => Some(format!("`{}`", quote(text))),
            Piece::Text(_) => None,
        })
        .collect();
    if values.is_empty() {
        return match variables {
            [] => "the configured value".to_string(),
            _ => format!("{} render nothing", names(variables)),
        };
    }
    let verb = if variables.len() == 1 && values.len() == 1 {
        "renders"
    } else {
        "render"
    };
    let values = if values.len() > 3 {
        format!("{}, … ({} values)", values[..3].join(", "), values.len())
    } else {
        values.join(", ")
    };
    format!("{} {verb} {values}", names(variables))
}

/// "variable `a`" / "variables `a`, `b`" / "expressions" (a template reading no variable).
pub(super) fn names(variables: &[String]) -> String {
    let list: Vec<String> = variables.iter().map(|v| format!("`{v}`")).collect();
    match list.len() {
        0 => "its expressions".to_string(),
        1 => format!("variable {}", list[0]),
        _ => format!("variables {}", list.join(", ")),
    }
}

/// Joins the pieces, encoding each unsafe value by the part of the URL it lands in. A path
/// value that is a whole dot segment (`.` or `..`) is refused: the URL parser resolves it (even
/// percent-encoded) and it would climb out of the path the template fixes. The error is that
/// value.
fn encode(pieces: &[Piece]) -> Result<String, String> {
    let mut out = String::new();
    let mut part = Part::Scheme;
    let write_raw = |out: &mut String, part: &mut Part, text: &str| {
        for c in text.chars() {
            out.push(c);
            *part = part.after(c, out);
        }
    };
    for piece in pieces {
        match (piece, part) {
            (Piece::Text(text), _)
            | (Piece::Value { text, safe: true }, _)
            | (Piece::Value { text, .. }, Part::Scheme | Part::Authority) => {
                write_raw(&mut out, &mut part, text);
            }
            (Piece::Value { text, .. }, Part::Path) => {
                if text == "." || text == ".." {
                    return Err(text.clone());
                }
                out.extend(utf8_percent_encode(text, SEGMENT));
            }
            (Piece::Value { text, .. }, Part::Query | Part::Fragment) => {
                out.extend(utf8_percent_encode(text, COMPONENT));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoints::EndpointRequest;
    use serde_json::{Value, json};

    fn ctx(vars: Value) -> TemplateContext {
        let Value::Object(variables) = vars else {
            panic!("variables must be an object")
        };
        TemplateContext::new(&EndpointRequest {
            variables,
            ..Default::default()
        })
    }

    fn build(source: &str, vars: Value) -> Result<BuiltUrl, UrlProblem> {
        UrlTemplate::compile("url", source)
            .unwrap()
            .build(&ctx(vars))
    }

    #[test]
    fn query_and_path_values_are_encoded_by_where_they_land() {
        let built = build(
            "https://api.example.com/v1/{{ id }}/items?q={{ q }}&page=1#{{ f }}",
            json!({"id": "a/b?c#d", "q": "1&admin=true+x y", "f": "#x"}),
        )
        .unwrap();
        assert_eq!(
            built.url.as_str(),
            "https://api.example.com/v1/a%2Fb%3Fc%23d/items?q=1%26admin%3Dtrue%2Bx%20y&page=1#%23x"
        );
        assert!(!built.host_from_variable);
        let pairs: Vec<(String, String)> = built.url.query_pairs().into_owned().collect();
        assert_eq!(pairs[0], ("q".into(), "1&admin=true+x y".into()));
        assert_eq!(pairs.len(), 2);
    }

    #[test]
    fn dot_segments_from_variables_do_not_climb() {
        let source = "https://api.example.com/v1/{{ id }}/x";
        let err = build(source, json!({"id": ".."})).unwrap_err();
        assert_eq!(err.code, "invalid_url");
        assert!(err.message.contains("climb"), "{err:?}");
        let built = build(source, json!({"id": "../admin"})).unwrap();
        assert_eq!(built.url.path(), "/v1/..%2Fadmin/x");
    }

    #[test]
    fn a_whole_url_from_a_variable_is_used_as_is_and_marks_the_host_as_chosen() {
        let built = build("{{ url }}", json!({"url": "http://h.example/a?b=1&c=2"})).unwrap();
        assert_eq!(built.url.as_str(), "http://h.example/a?b=1&c=2");
        assert!(built.host_from_variable);
        let built = build(
            "{{ base }}/v1?x={{ x }}",
            json!({"base": "https://h.example", "x": "a&b"}),
        )
        .unwrap();
        assert_eq!(built.url.as_str(), "https://h.example/v1?x=a%26b");
        assert!(built.host_from_variable);
    }

    #[test]
    fn safe_values_are_not_encoded() {
        let built = build(
            "https://api.example.com/{{ p | safe }}?{{ qs | safe }}",
            json!({"p": "a/b", "qs": "x=1&y=2"}),
        )
        .unwrap();
        assert_eq!(built.url.as_str(), "https://api.example.com/a/b?x=1&y=2");
    }

    #[test]
    fn a_host_is_fixed_only_when_the_template_text_ends_it() {
        for (source, fixed) in [
            ("https://api.example.com/{{ p }}", true),
            ("https://api.example.com?q={{ p }}", true),
            ("https://api.example.com", true),
            ("https://api.example.com{{ p }}", false),
            ("https://{{ p }}.example.com/", false),
            ("{% if p %}https://a.example/{% endif %}", false),
        ] {
            let built = build(source, json!({"p": "x"})).unwrap();
            assert_eq!(!built.host_from_variable, fixed, "{source}");
        }
        // A value that tries to move the host is caught by comparing the result.
        let built = build(
            "https://api.example.com{{ p }}",
            json!({"p": "@evil.example/"}),
        );
        assert!(built.unwrap().host_from_variable);
    }

    #[test]
    fn problems_name_the_variable_and_quote_only_its_value() {
        let source = "{{ base }}/v1/items?api_key=sekrit-from-env";
        for base in [
            "ftp://files.example",
            "http://[bad",
            "",
            "file:///etc/passwd#",
        ] {
            let err = build(source, json!({ "base": base })).unwrap_err();
            assert_eq!(err.code, "invalid_url", "{base}");
            assert!(
                err.message.starts_with("url: variable `base` renders `"),
                "{err:?}"
            );
            assert!(!err.message.contains("sekrit"), "{err:?}");
        }
        let err = build(source, json!({})).unwrap_err();
        assert_eq!(err.code, "template");
        assert!(err.message.contains("`base` is undefined"), "{err:?}");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Strings heavy in URL syntax, control characters and the template marks, plus any
        /// unicode at all.
        fn text() -> impl Strategy<Value = String> {
            prop_oneof![
                "[a-z0-9&=?#/%:@.+ \\\\\\[\\]\r\n\t\u{E000}-\u{E002}\u{FFFD}é]{0,24}",
                any::<String>(),
            ]
        }

        /// What a template sees of a value: the marks are replaced (`template::a_value_cannot_forge_marks`).
        fn seen(s: &str) -> String {
            s.chars()
                .map(|c| {
                    if ('\u{E000}'..='\u{E002}').contains(&c) {
                        '\u{FFFD}'
                    } else {
                        c
                    }
                })
                .collect()
        }

        proptest! {
            #[test]
            fn values_never_add_a_parameter_nor_change_a_fixed_host(
                a in text(), x in text(), y in text()
            ) {
                let source = "https://api.example.com/v1/{{ a }}/items?x={{ x }}&y={{ y }}";
                let vars = json!({"a": a, "x": x, "y": y});
                match build(source, vars) {
                    Ok(built) => {
                        prop_assert_eq!(built.url.host_str(), Some("api.example.com"));
                        prop_assert_eq!(built.url.port(), None);
                        prop_assert!(!built.host_from_variable);
                        prop_assert!(built.url.path().starts_with("/v1/"));
                        prop_assert!(built.url.path().ends_with("/items"));
                        let pairs: Vec<(String, String)> =
                            built.url.query_pairs().into_owned().collect();
                        prop_assert_eq!(
                            pairs,
                            vec![("x".to_string(), seen(&x)), ("y".to_string(), seen(&y))]
                        );
                        prop_assert_eq!(built.url.fragment(), None);
                    }
                    Err(problem) => {
                        // Only a dot segment is refused here.
                        prop_assert!(a == "." || a == "..", "{:?}", problem);
                    }
                }
            }

            #[test]
            fn a_host_counts_as_fixed_only_if_it_is_the_templates(p in text()) {
                if let Ok(built) = build("https://api.example.com{{ p }}", json!({"p": p})) {
                    let same = built.url.host_str() == Some("api.example.com")
                        && built.url.port().is_none();
                    prop_assert!(built.host_from_variable || same);
                }
            }

            #[test]
            fn a_broken_base_never_quotes_the_templates_own_text(base in text()) {
                let source = "{{ base }}/v1/items?api_key=sekrit-from-env-1357";
                match build(source, json!({"base": base})) {
                    Ok(built) => prop_assert!(built.host_from_variable),
                    Err(problem) => {
                        prop_assert!(!problem.message.contains("sekrit"), "{:?}", problem);
                        prop_assert!(problem.message.len() < 1_000);
                    }
                }
            }
        }
    }
}
