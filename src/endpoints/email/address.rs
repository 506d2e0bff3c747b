//! Recipients as rendered from templates → mailboxes, naming the first entry that is not one.
//!
//! A rendered `to`/`cc`/`bcc`/`reply_to` may be:
//!
//! ```text
//! null or ""                                   no address
//! "ada@example.com"                            one address
//! "Ada Lovelace <ada@example.com>"             one address with a display name
//! "a@example.com, \"Doe, J\" <j@example.com>"  several (commas inside quotes or <> do not split)
//! ["a@example.com", "b@example.com"]           several; each item may itself be a list as above
//! {"email": "a@example.com", "name": "Ada"}    one (also `address` for `email`), alone or in a list
//! ```

use lettre::message::Mailbox;
use lettre::{Address, message::Mailboxes};
use serde_json::Value;

/// An entry that is not an email address: which field, and the entry as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}` holds an invalid email address: `{entry}`")]
pub struct InvalidAddress {
    /// The field it came from (`to`, `cc`, `bcc`, `reply_to`, `from`).
    pub field: &'static str,
    /// The offending entry, as rendered.
    pub entry: String,
}

/// Every mailbox in a rendered field, in order.
pub fn mailboxes(field: &'static str, value: &Value) -> Result<Vec<Mailbox>, InvalidAddress> {
    let mut out = Vec::new();
    collect(field, value, &mut out)?;
    Ok(out)
}

fn collect(
    field: &'static str,
    value: &Value,
    out: &mut Vec<Mailbox>,
) -> Result<(), InvalidAddress> {
    let invalid = |entry: String| InvalidAddress { field, entry };
    match value {
        Value::Null => {}
        Value::String(text) => {
            for entry in split_list(text) {
                out.push(parse_one(entry).ok_or_else(|| invalid(entry.to_string()))?);
            }
        }
        Value::Array(items) => {
            for item in items {
                collect(field, item, out)?;
            }
        }
        Value::Object(map) => {
            let email = map
                .get("email")
                .or_else(|| map.get("address"))
                .and_then(Value::as_str)
                .ok_or_else(|| invalid(value.to_string()))?;
            let address: Address = email
                .trim()
                .parse()
                .map_err(|_| invalid(email.to_string()))?;
            let name = map
                .get("name")
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_string);
            out.push(Mailbox::new(name, address));
        }
        Value::Bool(_) | Value::Number(_) => return Err(invalid(value.to_string())),
    }
    Ok(())
}

/// One entry: a bare address (parsed strictly), or `Name <address>`.
fn parse_one(entry: &str) -> Option<Mailbox> {
    if !entry.contains('<') {
        return entry.parse::<Address>().ok().map(Mailbox::from);
    }
    // `Mailbox`'s parser ignores trailing text, so parse as a one-element list, which must
    // consume the whole entry.
    let list: Mailboxes = entry.parse().ok()?;
    let mut all = list.into_iter();
    match (all.next(), all.next()) {
        (Some(mailbox), None) => Some(mailbox),
        _ => None,
    }
}

/// Splits a header-style list on commas outside double quotes and angle brackets; trims entries
/// and drops empty ones.
fn split_list(text: &str) -> Vec<&str> {
    let mut entries = Vec::new();
    let (mut start, mut quoted, mut angle, mut escaped) = (0, false, false, false);
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' | ';' if !quoted && !angle => {
                entries.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    entries.push(&text[start..]);
    entries
        .into_iter()
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn emails(value: Value) -> Result<Vec<String>, InvalidAddress> {
        Ok(mailboxes("to", &value)?
            .iter()
            .map(|m| m.to_string())
            .collect())
    }

    #[test]
    fn strings_lists_and_objects_give_every_address_in_order() {
        assert_eq!(emails(json!(null)).unwrap(), Vec::<String>::new());
        assert_eq!(emails(json!("  ")).unwrap(), Vec::<String>::new());
        assert_eq!(
            emails(json!(
                "a@example.com, \"Doe, J\" <j@example.com>; Ada <ada@example.com>"
            ))
            .unwrap(),
            [
                "a@example.com",
                "\"Doe, J\" <j@example.com>",
                "Ada <ada@example.com>"
            ]
        );
        assert_eq!(
            emails(json!([
                "a@example.com",
                ["b@example.com, c@example.com"],
                {"email": "d@example.com", "name": "Dee"},
                {"address": "e@example.com"},
                null,
            ]))
            .unwrap(),
            [
                "a@example.com",
                "b@example.com",
                "c@example.com",
                "Dee <d@example.com>",
                "e@example.com"
            ]
        );
    }

    #[test]
    fn the_first_invalid_entry_is_named() {
        let err = emails(json!("a@example.com, not-an-address, b@")).unwrap_err();
        assert_eq!(err.entry, "not-an-address");
        assert_eq!(
            err.to_string(),
            "`to` holds an invalid email address: `not-an-address`"
        );
        for (value, entry) in [
            (json!(["ok@example.com", "b@"]), "b@"),
            (
                json!("Ada <ada@example.com> trailing"),
                "Ada <ada@example.com> trailing",
            ),
            (json!("ada@example.com junk"), "ada@example.com junk"),
            (json!("Ada <nope>"), "Ada <nope>"),
            (json!(42), "42"),
            (json!({"name": "no email"}), r#"{"name":"no email"}"#),
            (json!({"email": "x@"}), "x@"),
        ] {
            assert_eq!(emails(value).unwrap_err().entry, entry);
        }
    }
}
