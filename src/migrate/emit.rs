//! A small YAML writer: block mappings, flow lists and `#` comments — the comments being why
//! procos migrate writes text itself instead of serialising a tree (serde_yaml drops comments).
//!
//! Every scalar goes through [`scalar`]: a plain word stays plain, anything else is written as a
//! JSON string, which is also a valid YAML double-quoted scalar, so no value can change the
//! document's structure (a name such as `a: b`, `yes`, `123` or `- x` reads back as itself).

use std::fmt::Write;
use std::time::Duration;

/// YAML text built line by line.
#[derive(Debug, Default)]
pub(super) struct Writer {
    out: String,
}

impl Writer {
    /// `# line` for each line of `text`, at `indent` levels of two spaces.
    pub fn comment(&mut self, indent: usize, text: &str) {
        for line in text.lines() {
            let line = one_line(line);
            let line = line.trim_end();
            if line.is_empty() {
                self.line(indent, "#");
            } else {
                self.line(indent, &format!("# {line}"));
            }
        }
    }

    /// `key:`, opening a nested block.
    pub fn open(&mut self, indent: usize, key: &str) {
        self.line(indent, &format!("{}:", scalar(key)));
    }

    /// `key: value` (the value already rendered), with an optional comment after it.
    pub fn entry(&mut self, indent: usize, key: &str, value: &str, comment: Option<&str>) {
        let mut line = format!("{}: {value}", scalar(key));
        if let Some(comment) = comment {
            // A comment is one line: a newline in it would start YAML content.
            let _ = write!(line, "  # {}", one_line(comment));
        }
        self.line(indent, &line);
    }

    /// An empty line between sections.
    pub fn blank(&mut self) {
        self.out.push('\n');
    }

    /// The text written.
    pub fn finish(self) -> String {
        self.out
    }

    fn line(&mut self, indent: usize, text: &str) {
        for _ in 0..indent {
            self.out.push_str("  ");
        }
        self.out.push_str(text);
        self.out.push('\n');
    }
}

/// `text` with every character libyaml reads as a line break replaced by a space, so that a
/// comment stays one comment.
fn one_line(text: &str) -> String {
    text.replace(['\n', '\r', '\u{85}', '\u{2028}', '\u{2029}'], " ")
}

/// Words YAML 1.1 or 1.2 reads as something other than a string when plain.
const SPECIAL: [&str; 11] = [
    "y", "n", "yes", "no", "on", "off", "true", "false", "null", "~", "",
];

/// `text` as a YAML scalar that reads back as exactly that string.
pub(super) fn scalar(text: &str) -> String {
    let plain = text
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
        && !SPECIAL.contains(&text.to_ascii_lowercase().as_str());
    if plain {
        text.to_string()
    } else {
        // A JSON string is a YAML double-quoted scalar (serialising a &str cannot fail), once
        // the characters libyaml folds as line breaks, which JSON leaves raw, are escaped.
        serde_json::to_string(text)
            .unwrap_or_else(|_| "\"\"".to_string())
            .replace('\u{85}', "\\u0085")
            .replace('\u{2028}', "\\u2028")
            .replace('\u{2029}', "\\u2029")
    }
}

/// `[a, b]` with each item a [`scalar`].
pub(super) fn list<S: AsRef<str>>(items: &[S]) -> String {
    let items: Vec<String> = items.iter().map(|i| scalar(i.as_ref())).collect();
    format!("[{}]", items.join(", "))
}

/// A duration as pde.yaml writes it, in the largest unit that keeps it whole: `1m`, `90s`,
/// `1500ms`.
pub(super) fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0 => "0s".to_string(),
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scalar_reads_back_as_itself() {
        for text in [
            "ai_worker",
            "a: b",
            "yes",
            "No",
            "123",
            "1e3",
            "- x",
            "#x",
            "*alias",
            "&anchor",
            "{x}",
            "[x]",
            "a, b",
            "",
            " padded ",
            "quote\"d",
            "new\nline",
            "http://localhost:8080/engine-rest",
            "${CAMUNDA_URL}",
            "ünïcødé",
            "tab\there",
            ".inf",
            "~",
            "line\u{2028}sep\u{85}nel\u{2029}",
        ] {
            let doc = format!("k: {}\nl: {}\n", scalar(text), list(&[text, "z"]));
            let back: std::collections::BTreeMap<String, serde_yaml::Value> =
                serde_yaml::from_str(&doc).unwrap_or_else(|e| panic!("{doc}: {e}"));
            assert_eq!(back["k"], serde_yaml::Value::String(text.into()), "{doc}");
            assert_eq!(
                back["l"],
                serde_yaml::Value::Sequence(vec![text.into(), "z".into()]),
                "{doc}"
            );
        }
    }

    #[test]
    fn plain_names_stay_plain() {
        assert_eq!(scalar("classify_ticket"), "classify_ticket");
        assert_eq!(scalar("fetch-rates.v2"), "fetch-rates.v2");
        assert_eq!(scalar("true"), "\"true\"");
    }

    #[test]
    fn durations_use_the_largest_whole_unit() {
        assert_eq!(duration(Duration::from_millis(60_000)), "1m");
        assert_eq!(duration(Duration::from_millis(90_000)), "90s");
        assert_eq!(duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(duration(Duration::from_secs(7200)), "2h");
        assert_eq!(duration(Duration::ZERO), "0s");
    }

    #[test]
    fn a_comment_cannot_break_out_into_yaml() {
        let mut w = Writer::default();
        w.entry(0, "k", "v", Some("line\nevil: true"));
        w.comment(0, "one\ntwo\u{2028}evil: true");
        let text = w.finish();
        assert_eq!(text, "k: v  # line evil: true\n# one\n# two evil: true\n");
        let back: serde_yaml::Value = serde_yaml::from_str(&text).expect("yaml");
        assert_eq!(back.as_mapping().map(|m| m.len()), Some(1));
    }
}
