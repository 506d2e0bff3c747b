//! Where each mapping key of a YAML text is, by its path, so that a warning about a key can name
//! its line as an error does (serde reports lines only for errors).
//!
//! Read from the event stream of `yaml_rust2` (the parser the config pre-scan uses), after the
//! pre-scan has bounded the text: one pass, a stack of the open collections.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser};

/// An open collection: a mapping (with the path of the key whose value comes next, if any) or
/// a sequence (with the index of its next item).
enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, index: usize },
}

/// `path` of each scalar mapping key → its line (1-based), e.g. `workers.w.memory` → 5. Paths
/// are written as migrate writes them: `a.b`, `a[0].b`. A text that does not parse gives what
/// was read before the error.
pub(super) fn key_lines(text: &str) -> HashMap<String, usize> {
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Frame> = Vec::new();
    let mut lines = HashMap::new();
    while let Ok((event, mark)) = parser.next_token() {
        match event {
            Event::StreamEnd => break,
            Event::Scalar(value, ..) => {
                if let Some(Frame::Map { path, key }) = stack.last_mut()
                    && key.is_none()
                {
                    let at = join(path, &value);
                    lines.insert(at.clone(), mark.line());
                    *key = Some(at);
                } else {
                    done(&mut stack);
                }
            }
            Event::MappingStart(..) => {
                let path = next_path(&stack);
                stack.push(Frame::Map { path, key: None });
            }
            Event::SequenceStart(..) => {
                let path = next_path(&stack);
                stack.push(Frame::Seq { path, index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
                done(&mut stack);
            }
            Event::Alias(_) => done(&mut stack),
            _ => {}
        }
    }
    lines
}

/// The path of the node that starts now, under the innermost open collection.
fn next_path(stack: &[Frame]) -> String {
    match stack.last() {
        None => String::new(),
        Some(Frame::Map { path, key }) => key.clone().unwrap_or_else(|| join(path, "?")),
        Some(Frame::Seq { path, index }) => format!("{path}[{index}]"),
    }
}

/// A value node ended: its mapping waits for the next key, its sequence for the next item.
fn done(stack: &mut [Frame]) {
    match stack.last_mut() {
        Some(Frame::Map { key, .. }) => *key = None,
        Some(Frame::Seq { index, .. }) => *index += 1,
        None => {}
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_found_at_their_lines_in_block_and_flow_style() {
        let text = "# comment\nworkers:\n  w:\n    topics: [a, {name: b, priority: 3}]\n    \
                    memory: 2G\n  v: { topics: [c], x: 1 }\ncamunda:\n  url: http://e\n";
        let lines = key_lines(text);
        assert_eq!(lines["workers"], 2);
        assert_eq!(lines["workers.w"], 3);
        assert_eq!(lines["workers.w.topics[1].priority"], 4);
        assert_eq!(lines["workers.w.memory"], 5);
        assert_eq!(lines["workers.v.x"], 6);
        assert_eq!(lines["camunda.url"], 8);
    }
}
