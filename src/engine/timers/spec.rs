//! Timer definitions of a BPMN model (`timeDuration`, `timeDate`, `timeCycle`), parsed once at
//! deploy and asked for their due dates when a timer is armed or fires again.
//!
//! ```text
//! timeDuration  PT5M, P1DT2H, P2W         fires once, that long after the timer is armed
//! timeDate      2026-01-01T08:00:00Z      fires once at that moment (now when it is past)
//! timeCycle     R/PT1H, R3/PT10M          every interval, forever or n times
//!               R/2026-01-01T00:00Z/PT1H  the same from a start moment
//!               0 0/5 * * * ?             Quartz cron (seconds first), forever
//! ```
//! ISO 8601 durations and date-times are read by the `iso8601` crate; calendar units (years,
//! months, days) are added on the calendar, as Camunda's Joda-based helper does. A date-time
//! without an offset is read as UTC.
//!
//! A definition may be an expression (`${wait}`, `PT${minutes}M`): its syntax is checked at
//! deploy, and it is evaluated when the timer is armed ([`TimerSpec::resolve`]) — against the
//! instance's variables (and the activity's locals) for catch and boundary timers, against no
//! variables for a timer start event (so that one is evaluated, and refused, at deploy). The
//! result, a String (or a Date variable for `timeDate`), is then read as the text above, as
//! Camunda's `TimerDeclarationImpl` does.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Days, Months, Utc};
use tokio::time::Instant;

use crate::engine::expr::Expression;
use crate::engine::variables::{TypedValue, VarMap, VarType, parse_date};

/// A checked timer definition.
#[derive(Clone)]
pub(crate) enum TimerSpec {
    /// `timeDuration`: once, this long after arming.
    Duration(IsoDuration),
    /// `timeDate`: once, at this moment.
    Date(DateTime<Utc>),
    /// `timeCycle` as an ISO 8601 repeating interval.
    Cycle {
        /// `R3` → `Some(3)` firings; `R` → unbounded.
        repeat: Option<u32>,
        /// The first firing, when the cycle names one.
        start: Option<DateTime<Utc>>,
        /// Time between firings.
        every: IsoDuration,
    },
    /// `timeCycle` as a Quartz cron expression.
    Cron(Box<cron::Schedule>),
    /// `${…}`: evaluated when the timer is armed ([`TimerSpec::resolve`]) into one of the
    /// others.
    Expr(TimerKind, Box<Expression>),
}

impl fmt::Debug for TimerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimerSpec::Duration(d) => write!(f, "Duration({d:?})"),
            TimerSpec::Date(d) => write!(f, "Date({d})"),
            TimerSpec::Cycle {
                repeat,
                start,
                every,
            } => write!(f, "Cycle({repeat:?}, {start:?}, {every:?})"),
            TimerSpec::Cron(c) => write!(f, "Cron({c})"),
            TimerSpec::Expr(kind, e) => write!(f, "Expr({}, {})", kind.tag(), e.source()),
        }
    }
}

/// An ISO 8601 duration, kept in its calendar units.
pub(crate) type IsoDuration = iso8601::Duration;

/// Which child of `timerEventDefinition` a definition came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimerKind {
    /// `timeDuration`
    Duration,
    /// `timeDate`
    Date,
    /// `timeCycle`
    Cycle,
}

impl TimerKind {
    /// The element name for `timeDuration` / `timeDate` / `timeCycle`.
    pub(crate) fn from_tag(tag: &str) -> Option<TimerKind> {
        match tag {
            "timeDuration" => Some(TimerKind::Duration),
            "timeDate" => Some(TimerKind::Date),
            "timeCycle" => Some(TimerKind::Cycle),
            _ => None,
        }
    }

    /// The element name, for messages.
    pub(crate) fn tag(self) -> &'static str {
        match self {
            TimerKind::Duration => "timeDuration",
            TimerKind::Date => "timeDate",
            TimerKind::Cycle => "timeCycle",
        }
    }
}

/// When a timer is due: the engine's (pausable) clock decides, the wall clock is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Due {
    /// The moment on the engine's clock.
    pub at: Instant,
    /// The same moment on the wall clock (`dueDate` of the job).
    pub wall: DateTime<Utc>,
}

impl Due {
    /// `wall` on both clocks, `now` / `now_wall` being the same moment; a past date is due now.
    fn at_wall(wall: DateTime<Utc>, now: Instant, now_wall: DateTime<Utc>) -> Option<Due> {
        let ahead = (wall - now_wall).to_std().unwrap_or_default();
        Some(Due {
            at: now.checked_add(ahead)?,
            wall: wall.max(now_wall),
        })
    }
}

/// Parses one timer definition; the message names what is wrong (the caller adds the element).
pub(crate) fn parse(kind: TimerKind, text: &str) -> Result<TimerSpec, String> {
    let text = text.trim();
    let tag = kind.tag();
    if text.is_empty() {
        return Err(format!("the {tag} of the timer is empty"));
    }
    if text.contains("${") || text.contains("#{") {
        let e =
            Expression::parse(text).map_err(|e| format!("the {tag} expression is invalid: {e}"))?;
        return Ok(TimerSpec::Expr(kind, Box::new(e)));
    }
    literal(kind, text)
}

/// Parses the text of a definition that is not an expression (also an expression's result).
fn literal(kind: TimerKind, text: &str) -> Result<TimerSpec, String> {
    let text = text.trim();
    let tag = kind.tag();
    if text.is_empty() {
        return Err(format!("the {tag} of the timer is empty"));
    }
    let spec = match kind {
        TimerKind::Duration => TimerSpec::Duration(duration(text)?),
        TimerKind::Date => TimerSpec::Date(date_time(text)?),
        TimerKind::Cycle if text.starts_with('R') => cycle(text)?,
        TimerKind::Cycle => TimerSpec::Cron(Box::new(cron(text)?)),
    };
    // A timer whose first due date cannot be computed would never fire: refuse it now.
    spec.first(Instant::now(), Utc::now())
        .map(|_| spec)
        .ok_or_else(|| format!("the {tag} `{text}` lies beyond the dates the engine can compute"))
}

fn duration(text: &str) -> Result<IsoDuration, String> {
    match iso8601::parsers::parse_duration(text.as_bytes()) {
        Ok(([], d)) => Ok(d),
        _ => Err(format!(
            "`{text}` is not an ISO 8601 duration (e.g. PT5M, P1DT2H, P2W)"
        )),
    }
}

/// A user task's `camunda:dueDate` / `camunda:followUpDate`: a date-time, or a duration from the
/// task's creation (`P2D`), as Camunda's `DueDateBusinessCalendar` reads a value starting
/// with `P`.
#[derive(Debug, Clone)]
pub(crate) enum DueDate {
    /// A fixed moment.
    At(DateTime<Utc>),
    /// This long after the task is created.
    After(IsoDuration),
}

impl DueDate {
    /// Reads the attribute's text; the message says what is wrong.
    pub(crate) fn parse(text: &str) -> Result<DueDate, String> {
        if text.starts_with('P') {
            let d = duration(text)?;
            // Refuse now what could never be computed later.
            add(Utc::now(), &d)
                .map(|_| DueDate::After(d))
                .ok_or_else(|| format!("`{text}` lies beyond the dates the engine can compute"))
        } else {
            date_time(text).map(DueDate::At)
        }
    }

    /// The moment for a task created at `created`; `None` past the representable dates.
    pub(crate) fn from(&self, created: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            DueDate::At(at) => Some(*at),
            DueDate::After(d) => add(created, d),
        }
    }
}

/// An ISO 8601 date-time (without an offset: UTC), e.g. a user task's `camunda:dueDate`.
pub(crate) fn date_time(text: &str) -> Result<DateTime<Utc>, String> {
    match iso8601::parsers::parse_datetime(text.as_bytes()) {
        Ok(([], d)) => d
            .into_fixed_offset()
            .map(|d| d.with_timezone(&Utc))
            .ok_or_else(|| format!("`{text}` is not a valid date-time")),
        _ => Err(format!(
            "`{text}` is not an ISO 8601 date-time (e.g. 2026-01-01T08:00:00Z)"
        )),
    }
}

fn cycle(text: &str) -> Result<TimerSpec, String> {
    let parts: Vec<&str> = text.split('/').collect();
    let (r, start, every) = match parts.as_slice() {
        [r, every] => (*r, None, *every),
        [r, start, every] => (*r, Some(date_time(start)?), *every),
        _ => {
            return Err(format!(
                "`{text}` is not a repeating interval (R/PT1H, R3/PT10M or R/2026-01-01T00:00:00Z/PT1H)"
            ));
        }
    };
    let repeat = match &r[1..] {
        "" => None,
        n => match n.parse::<u32>() {
            Ok(0) | Err(_) => {
                return Err(format!(
                    "`{r}` in the timeCycle `{text}` is not a repetition count of at least 1"
                ));
            }
            Ok(n) => Some(n),
        },
    };
    let every = duration(every)?;
    if every.is_zero() {
        return Err(format!(
            "the interval of the timeCycle `{text}` is zero: it would fire without end"
        ));
    }
    Ok(TimerSpec::Cycle {
        repeat,
        start,
        every,
    })
}

fn cron(text: &str) -> Result<cron::Schedule, String> {
    cron::Schedule::from_str(text).map_err(|e| {
        format!(
            "`{text}` is neither a repeating interval (R/PT1H) nor a cron expression (0 0/5 * * * ?): {e}"
        )
    })
}

/// `base` plus an ISO duration on the calendar; `None` past the representable dates.
pub(crate) fn add(base: DateTime<Utc>, d: &IsoDuration) -> Option<DateTime<Utc>> {
    match *d {
        iso8601::Duration::Weeks(w) => base.checked_add_days(Days::new(u64::from(w) * 7)),
        iso8601::Duration::YMDHMS {
            year,
            month,
            day,
            hour,
            minute,
            second,
            millisecond,
        } => {
            let months = year.checked_mul(12)?.checked_add(month)?;
            let clock = chrono::Duration::hours(i64::from(hour))
                + chrono::Duration::minutes(i64::from(minute))
                + chrono::Duration::seconds(i64::from(second))
                + chrono::Duration::milliseconds(i64::from(millisecond));
            base.checked_add_months(Months::new(months))?
                .checked_add_days(Days::new(u64::from(day)))?
                .checked_add_signed(clock)
        }
    }
}

/// The text an expression's result stands for: a String as is, a Date variable (for
/// `timeDate`) in ISO form; anything else is refused, as Camunda's `TimerDeclarationImpl`
/// refuses a result that is neither a String nor a Date.
pub(crate) fn result_text(v: &TypedValue, kind: TimerKind) -> Result<String, String> {
    match (&v.ty, &v.value) {
        (VarType::String, serde_json::Value::String(s)) => Ok(s.clone()),
        (VarType::Date, serde_json::Value::String(s)) if kind == TimerKind::Date => parse_date(s)
            .map(|d| d.to_rfc3339())
            .ok_or_else(|| format!("the Date `{s}` cannot be read")),
        (ty, value) => Err(format!(
            "it evaluated to {value} ({}), not a String{}",
            ty.name(),
            if kind == TimerKind::Date {
                " or a Date"
            } else {
                ""
            }
        )),
    }
}

impl TimerSpec {
    /// The timer to arm: an expression evaluated against `scopes` (innermost first) and its
    /// result parsed; any other definition as it is. The message names the expression.
    pub(crate) fn resolve(&self, scopes: &[&VarMap]) -> Result<TimerSpec, String> {
        let TimerSpec::Expr(kind, e) = self else {
            return Ok(self.clone());
        };
        let tag = kind.tag();
        let v = e.value(scopes).map_err(|err| err.to_string())?;
        let text = result_text(&v, *kind)
            .map_err(|err| format!("The {tag} expression '{}': {err}", e.source()))?;
        literal(*kind, &text).map_err(|err| format!("The {tag} expression '{}': {err}", e.source()))
    }

    /// The first due date when armed at `now` (`now_wall` on the wall clock).
    pub(crate) fn first(&self, now: Instant, now_wall: DateTime<Utc>) -> Option<Due> {
        match self {
            TimerSpec::Duration(d)
            | TimerSpec::Cycle {
                every: d,
                start: None,
                ..
            } => {
                let wall = add(now_wall, d)?;
                Due::at_wall(wall, now, now_wall)
            }
            TimerSpec::Date(at)
            | TimerSpec::Cycle {
                start: Some(at), ..
            } => Due::at_wall(*at, now, now_wall),
            TimerSpec::Cron(c) => {
                let wall = c.after(&now_wall).next()?;
                Due::at_wall(wall, now, now_wall)
            }
            // Resolved before it is armed.
            TimerSpec::Expr(..) => None,
        }
    }

    /// The due date after the `fired`-th firing, which was due at `prev`; `None` when the timer
    /// is done. A cycle keeps its cadence from `prev` unless that lies in the past (a late or
    /// manual firing), then it starts again from now.
    pub(crate) fn next(
        &self,
        prev: Due,
        fired: u32,
        now: Instant,
        now_wall: DateTime<Utc>,
    ) -> Option<Due> {
        match self {
            TimerSpec::Duration(_) | TimerSpec::Date(_) | TimerSpec::Expr(..) => None,
            TimerSpec::Cycle { repeat, every, .. } => {
                if repeat.is_some_and(|n| fired >= n) {
                    return None;
                }
                let step = add(prev.wall, every)?;
                let step_at = prev.at.checked_add((step - prev.wall).to_std().ok()?)?;
                if step_at >= now {
                    return Some(Due {
                        at: step_at,
                        wall: step,
                    });
                }
                Due::at_wall(add(now_wall, every)?, now, now_wall)
            }
            TimerSpec::Cron(c) => {
                let wall = c.after(&prev.wall.max(now_wall)).next()?;
                Due::at_wall(wall, now, now_wall)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(spec: &TimerSpec) -> u64 {
        let now = Instant::now();
        let due = spec.first(now, Utc::now()).expect("due");
        (due.at - now).as_secs()
    }

    #[test]
    fn durations_dates_and_cycles_parse_with_their_due_dates() {
        let d = parse(TimerKind::Duration, " PT1M30S ").expect("duration");
        assert_eq!(secs(&d), 90);
        let w = parse(TimerKind::Duration, "P2W").expect("weeks");
        assert_eq!(secs(&w), 14 * 86_400);
        let past = parse(TimerKind::Date, "2020-01-01T00:00:00Z").expect("date");
        assert_eq!(secs(&past), 0, "a past date is due now");
        let c = parse(TimerKind::Cycle, "R3/PT10S").expect("cycle");
        assert!(
            matches!(
                c,
                TimerSpec::Cycle {
                    repeat: Some(3),
                    ..
                }
            ),
            "{c:?}"
        );
        assert_eq!(secs(&c), 10);
        let s = parse(TimerKind::Cycle, "R/2020-01-01T00:00:00Z/PT1H").expect("with start");
        assert_eq!(secs(&s), 0);
        let cron = parse(TimerKind::Cycle, "0 0/5 * * * ?").expect("quartz cron");
        assert!(secs(&cron) <= 300, "{cron:?}");
    }

    #[test]
    fn bad_definitions_say_what_is_wrong() {
        let cases = [
            (TimerKind::Duration, "PT1Hjunk", "not an ISO 8601 duration"),
            (TimerKind::Duration, "5 minutes", "not an ISO 8601 duration"),
            (TimerKind::Date, "tomorrow", "not an ISO 8601 date-time"),
            (TimerKind::Cycle, "R0/PT1S", "repetition count"),
            (TimerKind::Cycle, "R/PT0S", "zero"),
            (TimerKind::Cycle, "every day", "cron expression"),
            (TimerKind::Duration, "${wait", "Error parsing"),
            (TimerKind::Cycle, "", "empty"),
            (TimerKind::Duration, "P4000000000Y", "beyond"),
            (TimerKind::Cycle, "0 0 0 31 2 ?", "beyond"),
        ];
        for (kind, text, says) in cases {
            let err = parse(kind, text).expect_err(text);
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    fn var(ty: VarType, value: serde_json::Value) -> TypedValue {
        TypedValue {
            ty,
            value,
            value_info: serde_json::Map::new(),
            file: None,
        }
    }

    #[test]
    fn an_expression_is_parsed_at_deploy_and_resolved_when_armed() {
        let mut vars = VarMap::new();
        vars.insert("wait".into(), var(VarType::String, "PT5M".into()));
        vars.insert("n".into(), var(VarType::Long, 7.into()));
        vars.insert(
            "at".into(),
            var(VarType::Date, "2020-01-01T08:00:00.000+0100".into()),
        );
        let wait = parse(TimerKind::Duration, "${wait}").expect("an expression");
        assert!(matches!(wait, TimerSpec::Expr(..)), "{wait:?}");
        let armed = wait.resolve(&[&vars]).expect("resolved");
        assert_eq!(secs(&armed), 300);
        let composite = parse(TimerKind::Duration, "PT${n}S").expect("composite");
        assert_eq!(secs(&composite.resolve(&[&vars]).expect("PT7S")), 7);
        let date = parse(TimerKind::Date, "${at}").expect("a Date variable");
        match date.resolve(&[&vars]).expect("a date") {
            TimerSpec::Date(d) => assert_eq!(d.to_rfc3339(), "2020-01-01T07:00:00+00:00"),
            other => panic!("{other:?}"),
        }
        let cases = [
            ("${missing}", "Cannot resolve identifier 'missing'"),
            ("${n}", "not a String"),
            ("${at}", "not a String"),
            ("${'soon'}", "not an ISO 8601 duration"),
        ];
        for (text, says) in cases {
            let err = parse(TimerKind::Duration, text)
                .expect("parses")
                .resolve(&[&vars])
                .expect_err(text);
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn a_cycle_stops_after_its_repetitions_and_keeps_its_cadence() {
        let spec = parse(TimerKind::Cycle, "R2/PT10S").expect("cycle");
        let (now, wall) = (Instant::now(), Utc::now());
        let first = spec.first(now, wall).expect("first");
        let second = spec.next(first, 1, now, wall).expect("second");
        assert_eq!(second.at - first.at, std::time::Duration::from_secs(10));
        assert_eq!(spec.next(second, 2, now, wall), None, "R2 fires twice");
        let forever = parse(TimerKind::Cycle, "R/PT10S").expect("cycle");
        assert!(forever.next(second, 1000, now, wall).is_some());
    }

    #[test]
    fn months_are_added_on_the_calendar() {
        let base = DateTime::parse_from_rfc3339("2026-01-31T00:00:00Z")
            .expect("date")
            .with_timezone(&Utc);
        let d = duration("P1M").expect("P1M");
        let to = add(base, &d).expect("in range");
        assert_eq!(to.to_rfc3339(), "2026-02-28T00:00:00+00:00");
    }
}
