//! Task variables (decoded JSON, as endpoints see them) converted to the Rust values the drivers
//! bind. Every converter says why a value does not fit — by its JSON kind, never by echoing the
//! value, which may be personal data.
//!
//! Camunda's types arrive as: String → string, Integer/Long/Short → integer, Double → number,
//! Boolean → boolean, Date → string in the engine's format (`2025-01-23T14:42:45.000+0200`),
//! Null → null, Json → its value. What they become in SQL is the parameter's type (PostgreSQL,
//! see `pg.rs`) or the value's own kind (SQLite, see `sqlite.rs`).

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime};
use serde_json::Value;

/// The JSON kind of `v`, for messages.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a number with a fraction",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A boolean, or the strings `true`/`false`.
pub fn boolean(v: &Value) -> Result<bool, String> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.trim().eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.trim().eq_ignore_ascii_case("false") => Ok(false),
        other => Err(format!("expects a boolean, got {}", kind(other))),
    }
}

/// A 64-bit integer: an integer, a number without fraction, or a string of one.
pub fn int(v: &Value) -> Result<i64, String> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                    .map(|f| f as i64)
            })
            .ok_or_else(|| {
                "expects an integer, got a number with a fraction or out of range".into()
            }),
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| "expects an integer, got a string that is not one".into()),
        other => Err(format!("expects an integer, got {}", kind(other))),
    }
}

/// An integer that fits `T` (`int2`, `int4`), named `ty` in the message.
pub fn int_in<T: TryFrom<i64>>(v: &Value, ty: &str) -> Result<T, String> {
    let n = int(v)?;
    T::try_from(n).map_err(|_| format!("is out of range for `{}`", ty.to_lowercase()))
}

/// A floating-point number: any number, or a string of one.
pub fn float(v: &Value) -> Result<f64, String> {
    match v {
        Value::Number(n) => n.as_f64().ok_or_else(|| "is not a number".into()),
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| "expects a number, got a string that is not one".into()),
        other => Err(format!("expects a number, got {}", kind(other))),
    }
}

/// Text: a string as is; a number or boolean as its text; an array or object as JSON text.
pub fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A string, for parameters that parse one (`what` names what it should hold).
pub fn string(v: &Value, what: &str) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.trim().to_string()),
        other => Err(format!(
            "expects a string holding {what}, got {}",
            kind(other)
        )),
    }
}

/// A date-time with offset: a Camunda Date (`2025-01-23T14:42:45.000+0200`) or RFC 3339.
pub fn date_time(v: &Value) -> Result<DateTime<FixedOffset>, String> {
    let s = string(v, "a date-time")?;
    crate::camunda::variables::parse_date(&s).ok_or_else(|| {
        "is not a date-time like `2025-01-23T14:42:45.000+0200` (a Camunda Date)".to_string()
    })
}

/// A date-time without offset; a Date with an offset gives its local date-time.
pub fn naive_date_time(v: &Value) -> Result<NaiveDateTime, String> {
    let s = string(v, "a date-time")?;
    if let Some(d) = crate::camunda::variables::parse_date(&s) {
        return Ok(d.naive_local());
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(&s, f).ok())
        .ok_or_else(|| "is not a date-time like `2025-01-23T14:42:45`".to_string())
}

/// A date (`2025-01-23`); a Date gives its local date.
pub fn date(v: &Value) -> Result<NaiveDate, String> {
    let s = string(v, "a date")?;
    if let Some(d) = crate::camunda::variables::parse_date(&s) {
        return Ok(d.date_naive());
    }
    NaiveDate::parse_from_str(&s, "%Y-%m-%d")
        .map_err(|_| "is not a date like `2025-01-23`".to_string())
}

/// A time of day (`14:42:45`, fractions allowed).
pub fn time(v: &Value) -> Result<NaiveTime, String> {
    let s = string(v, "a time")?;
    NaiveTime::parse_from_str(&s, "%H:%M:%S%.f")
        .or_else(|_| NaiveTime::parse_from_str(&s, "%H:%M"))
        .map_err(|_| "is not a time like `14:42:45`".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn camunda_numbers_and_numeric_strings_convert_to_integers_and_floats() {
        assert_eq!(int(&json!(42)), Ok(42));
        assert_eq!(int(&json!(-7.0)), Ok(-7));
        assert_eq!(int(&json!(" 9000000000 ")), Ok(9_000_000_000));
        assert!(int(&json!(1.5)).unwrap_err().contains("fraction"));
        assert!(int(&json!(true)).unwrap_err().contains("a boolean"));
        assert_eq!(int_in::<i16>(&json!(300), "INT2"), Ok(300));
        assert_eq!(
            int_in::<i16>(&json!(70000), "INT2"),
            Err("is out of range for `int2`".into())
        );
        assert_eq!(float(&json!(2)), Ok(2.0));
        assert_eq!(float(&json!("2.5")), Ok(2.5));
        assert!(float(&json!({"a": 1})).unwrap_err().contains("an object"));
    }

    #[test]
    fn booleans_and_text() {
        assert_eq!(boolean(&json!(true)), Ok(true));
        assert_eq!(boolean(&json!("FALSE")), Ok(false));
        assert!(boolean(&json!(1)).is_err());
        assert_eq!(text(&json!("a")), "a");
        assert_eq!(text(&json!(12)), "12");
        assert_eq!(text(&json!({"k": [1]})), r#"{"k":[1]}"#);
    }

    #[test]
    fn camunda_dates_convert_to_every_date_type() {
        let camunda = json!("2025-01-23T14:42:45.120+0200");
        let dt = date_time(&camunda).unwrap();
        assert_eq!(dt.to_rfc3339(), "2025-01-23T14:42:45.120+02:00");
        assert_eq!(
            naive_date_time(&camunda).unwrap().to_string(),
            "2025-01-23 14:42:45.120"
        );
        assert_eq!(date(&camunda).unwrap().to_string(), "2025-01-23");
        assert_eq!(
            date(&json!("2025-02-28")).unwrap().to_string(),
            "2025-02-28"
        );
        assert_eq!(time(&json!("08:30:00")).unwrap().to_string(), "08:30:00");
        assert_eq!(
            date_time(&json!("2025-01-23T12:00:00Z"))
                .unwrap()
                .offset()
                .local_minus_utc(),
            0
        );
        assert!(
            date(&json!("23.01.2025"))
                .unwrap_err()
                .contains("2025-01-23")
        );
        assert!(date_time(&json!(5)).unwrap_err().contains("an integer"));
    }

    #[test]
    fn messages_never_echo_the_value() {
        let secret = "4111-1111-1111-1111";
        for e in [
            int(&json!(secret)).unwrap_err(),
            float(&json!(secret)).unwrap_err(),
            date(&json!(secret)).unwrap_err(),
            time(&json!(secret)).unwrap_err(),
            date_time(&json!(secret)).unwrap_err(),
        ] {
            assert!(!e.contains("4111"), "{e}");
        }
    }
}
