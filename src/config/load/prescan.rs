//! Bounds a config's YAML before any tree is built: nesting depth, and the number of values the
//! document holds once every alias (`*name`) is expanded.
//!
//! serde_yaml expands aliases while it builds its tree, with no bound but a jump count relative
//! to the document, so a few KB of nested aliases ("billion laughs") take seconds and gigabytes
//! before anything is refused; and libyaml, under it, is quadratic in deep flow nesting (100 000
//! `[` take most of a minute). This scan reads the event stream of a parser that is linear in
//! both, keeps one counter per anchor, and stops at the first bound crossed:
//!
//! ```text
//! event          expanded values
//! scalar         +1
//! [ or {         +1, and remember where this collection's count starts
//! ] or }         an anchored collection's size = values since its start
//! *alias         + the size of what the anchor holds
//! ```

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::Marker;

/// Deepest nesting of mappings and sequences. A JSON Schema in a topic's `output.schema` is
/// the deepest thing a real config holds, a few levels.
pub const MAX_DEPTH: usize = 64;

/// Most values (scalars and collections) the document may hold with its aliases expanded; a
/// large real config holds a few thousand.
pub const MAX_VALUES: usize = 100_000;

/// Why a document is refused, in one line, or `Ok` when it is within the bounds (it may still be
/// refused later for its content).
pub(super) fn check(yaml: &str) -> Result<(), String> {
    let mut parser = Parser::new_from_str(yaml);
    // Anchor id → values it holds, expanded.
    let mut sizes: HashMap<usize, usize> = HashMap::new();
    // Open collections: (anchor id or 0, values counted before it started).
    let mut open: Vec<(usize, usize)> = Vec::new();
    let mut values: usize = 0;
    let mut aliases = false;
    loop {
        let (event, mark) = match parser.next_token() {
            Ok(next) => next,
            Err(e) if e.info().contains("recursion limit") => {
                return Err(nested_too_deep(e.marker()));
            }
            // The two parsers differ on a few corners of YAML syntax. Without aliases and
            // without deep brackets, serde_yaml cannot blow up, so it gets the last word (and
            // reports the syntax error in its own terms, if it sees one).
            Err(_) if !yaml.contains('*') && bracket_depth(yaml) <= MAX_DEPTH => return Ok(()),
            Err(e) => return Err(format!("not valid YAML: {e}")),
        };
        match event {
            Event::StreamEnd => return Ok(()),
            Event::Scalar(_, _, anchor, _) => {
                values += 1;
                if anchor > 0 {
                    sizes.insert(anchor, 1);
                }
            }
            Event::Alias(anchor) => {
                aliases = true;
                values = values.saturating_add(sizes.get(&anchor).copied().unwrap_or(1));
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                open.push((anchor, values));
                values += 1;
                if open.len() > MAX_DEPTH {
                    return Err(nested_too_deep(&mark));
                }
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((anchor, start)) = open.pop()
                    && anchor > 0
                {
                    sizes.insert(anchor, values - start);
                }
            }
            _ => {}
        }
        if values > MAX_VALUES {
            return Err(if aliases {
                format!(
                    "its aliases (`*name`) expand to more than {MAX_VALUES} values by line {}; \
                     refused before expanding them",
                    mark.line()
                )
            } else {
                format!(
                    "it holds more than {MAX_VALUES} values (by line {})",
                    mark.line()
                )
            });
        }
    }
}

/// The deepest nesting of `[`/`{` counting every bracket in the text (quoted or not): never
/// below the real flow nesting.
fn bracket_depth(yaml: &str) -> usize {
    let mut depth = 0usize;
    let mut deepest = 0;
    for b in yaml.bytes() {
        match b {
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

fn nested_too_deep(mark: &Marker) -> String {
    format!(
        "mappings and sequences nest deeper than {MAX_DEPTH} levels (by line {})",
        mark.line()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_anchor_counts_as_often_as_it_is_used() {
        // 1 mapping + (key + list of 4) + (key + 4 × 5) = 28 values.
        let yaml = "a: &a [1, 2, 3]\nb: [*a, *a, *a, *a]\n";
        assert_eq!(check(yaml), Ok(()));
        let per_level = 20;
        let mut bomb = format!("l0: &l0 [{}]\n", "x,".repeat(per_level));
        for i in 1..4 {
            bomb += &format!(
                "l{i}: &l{i} [{}]\n",
                format!("*l{},", i - 1).repeat(per_level)
            );
        }
        // 20⁴ = 160 000 values at the fourth level: over the bound, though only ~500 bytes.
        let err = check(&bomb).unwrap_err();
        assert!(err.contains("aliases"), "{err}");
        assert!(check(&bomb.lines().take(3).collect::<Vec<_>>().join("\n")).is_ok());
    }

    #[test]
    fn nesting_is_bounded_in_block_and_flow_style() {
        let flow = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert_eq!(check(&flow), Ok(()));
        let deeper = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(check(&deeper).unwrap_err().contains("deeper than 64"));
        let block: String = (0..=MAX_DEPTH)
            .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
            .collect::<String>()
            + &" ".repeat(MAX_DEPTH + 1)
            + "leaf: 1\n";
        assert!(check(&block).unwrap_err().contains("deeper than 64"));
    }

    #[test]
    fn syntax_errors_with_aliases_are_refused_here_and_others_left_to_serde_yaml() {
        let err = check("a: &x [1, 2\nb: *x\n").unwrap_err();
        assert!(err.starts_with("not valid YAML"), "{err}");
        assert!(check("a: *nowhere\n").is_err());
        // No alias, no deep brackets: serde_yaml reads it and reports the error itself.
        assert_eq!(check("a: [1, 2\nb: 3\n"), Ok(()));
        let deep_and_broken = format!("a: {}\n: :", "[".repeat(MAX_DEPTH + 1));
        assert!(check(&deep_and_broken).is_err());
    }

    const TOKENS: &[&str] = &[
        "[",
        "]",
        "{",
        "}",
        ":",
        ": ",
        "- ",
        "&a ",
        "!!binary ",
        "!tag ",
        "? ",
        "|",
        ">-",
        "'",
        "\"",
        "#",
        "\n",
        "  ",
        "\t",
        "---\n",
        "...\n",
        "a",
        "b: c\n",
        "-1",
        "~",
        "null",
        "\u{feff}",
        "é",
        "%YAML 1.2\n",
        "k:\n  - v\n",
        ",",
        " ",
    ];

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// The pre-scan never refuses a document without aliases that serde_yaml reads.
        #[test]
        fn what_serde_yaml_reads_without_aliases_passes(
            parts in proptest::collection::vec(proptest::sample::select(TOKENS), 0..12),
        ) {
            let text = parts.concat();
            if serde_yaml::from_str::<serde_yaml::Value>(&text).is_ok() {
                proptest::prop_assert_eq!(check(&text), Ok(()), "{:?}", text);
            }
        }
    }
}
