//! What `validate` reads in a statement's SQL text without a database: template syntax (refused:
//! values reach SQL only as bound parameters) and the placeholders, to check them against
//! `params`.
//!
//! A small scanner, not a parser: it skips what cannot hold a placeholder — quoted strings
//! (`'…'`, `"…"`), comments (`-- …`, `/* … */`) and PostgreSQL dollar-quoted bodies
//! (`$tag$ … $tag$`) — and reports `$1`-style placeholders (both databases) and, for SQLite, `?` and
//! `?NNN`.

/// Template syntax a `sql` must not hold: procos's task templates (`{{ }}`, `{% %}`) and
/// environment references (`${VAR}`), which would splice text into the statement.
pub fn template_syntax(sql: &str) -> Option<&'static str> {
    ["{{", "{%", "${"].into_iter().find(|m| sql.contains(m))
}

/// The placeholders a statement uses.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Placeholders {
    /// The numbers of `$N` (and SQLite's `?N`) placeholders, in order of appearance.
    pub numbered: Vec<usize>,
    /// Bare `?` placeholders (SQLite only; PostgreSQL reads `?` as an operator).
    pub anonymous: usize,
}

impl Placeholders {
    /// How many parameters the statement takes: the highest number, or the count of bare `?`.
    pub fn count(&self) -> usize {
        self.numbered
            .iter()
            .copied()
            .max()
            .unwrap_or(0)
            .max(self.anonymous)
    }

    /// A number between 1 and the highest that no placeholder uses (`$1` and `$3` without `$2`).
    pub fn gap(&self) -> Option<usize> {
        let highest = self.numbered.iter().copied().max().unwrap_or(0);
        (1..=highest).find(|n| !self.numbered.contains(n))
    }
}

/// The placeholders of `sql`; `sqlite` also counts `?` and `?N`.
pub fn placeholders(sql: &str, sqlite: bool) -> Placeholders {
    let bytes = sql.as_bytes();
    let mut found = Placeholders::default();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            quote @ (b'\'' | b'"' | b'`') => i = skip_quoted(bytes, i + 1, quote),
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = bytes[i..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(bytes.len(), |p| i + p + 1);
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i = sql[i + 2..]
                    .find("*/")
                    .map_or(bytes.len(), |p| i + 2 + p + 2);
            }
            b'$' | b'?' => {
                let digits = bytes[i + 1..]
                    .iter()
                    .take_while(|b| b.is_ascii_digit())
                    .count();
                if digits > 0 && (bytes[i] == b'$' || sqlite) {
                    if let Ok(n) = sql[i + 1..i + 1 + digits].parse() {
                        found.numbered.push(n);
                    }
                    i += 1 + digits;
                } else if bytes[i] == b'?' {
                    found.anonymous += usize::from(sqlite);
                    i += 1;
                } else {
                    i = skip_dollar_quoted(sql, i);
                }
            }
            _ => i += 1,
        }
    }
    found
}

/// The index after the closing `quote` (a doubled quote is part of the text).
fn skip_quoted(bytes: &[u8], mut i: usize, quote: u8) -> usize {
    while i < bytes.len() {
        if bytes[i] == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    bytes.len()
}

/// At a `$` that does not start a placeholder: past a dollar-quoted body (`$$…$$`, `$fn$…$fn$`),
/// or just past the `$` when it does not open one (e.g. inside an identifier).
fn skip_dollar_quoted(sql: &str, start: usize) -> usize {
    let rest = &sql[start + 1..];
    let tag_len = rest
        .bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
        .count();
    if rest.as_bytes().get(tag_len) != Some(&b'$') {
        return start + 1;
    }
    let tag = &sql[start..start + 1 + tag_len + 1];
    let body = start + tag.len();
    sql[body..]
        .find(tag)
        .map_or(sql.len(), |p| body + p + tag.len())
}

/// Is `name` a plain variable name (`order_id`, `customerName2`): what a `params` entry must be.
pub fn plain_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_placeholders_are_found_outside_strings_comments_and_dollar_quotes() {
        let sql = "INSERT INTO t (a, b) VALUES ($1, '$9 '' $8') -- $7\n/* $6 */ RETURNING $2, \
                   $$ $5 $$, $fn$ $4 $fn$, \"$3\"";
        let p = placeholders(sql, false);
        assert_eq!(p.numbered, vec![1, 2]);
        assert_eq!(p.count(), 2);
        assert_eq!(p.gap(), None);
    }

    #[test]
    fn a_skipped_number_is_a_gap() {
        let p = placeholders("SELECT $1, $3", false);
        assert_eq!((p.count(), p.gap()), (3, Some(2)));
    }

    #[test]
    fn question_marks_count_on_sqlite_only() {
        assert_eq!(placeholders("SELECT ?, ?, '?'", true).count(), 2);
        assert_eq!(placeholders("SELECT ?2, ?1", true).numbered, vec![2, 1]);
        // PostgreSQL's jsonb `?` operator is not a placeholder.
        assert_eq!(
            placeholders("SELECT doc ? 'k' FROM t WHERE id = $1", false).count(),
            1
        );
    }

    #[test]
    fn templates_are_found_wherever_they_are() {
        assert_eq!(template_syntax("SELECT {{ id }}"), Some("{{"));
        assert_eq!(template_syntax("SELECT 1 {% if x %}"), Some("{%"));
        assert_eq!(template_syntax("SELECT * FROM ${TABLE}"), Some("${"));
        assert_eq!(template_syntax("SELECT $1, '{' || '}'"), None);
    }

    #[test]
    fn plain_names_are_identifiers() {
        for ok in ["order_id", "_x", "Amount2"] {
            assert!(plain_name(ok), "{ok}");
        }
        for bad in ["", "2x", "a.b", "a-b", "{{ x }}", "x y", "ünï"] {
            assert!(!plain_name(bad), "{bad}");
        }
    }
}
