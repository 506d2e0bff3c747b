//! Error classes: the one vocabulary of `EndpointError::code`, which a topic's `bpmn_errors`
//! maps to BPMN error codes.
//!
//! Endpoints and pipeline blocks build their errors with the constants below, and the config
//! parser accepts exactly those (plus the numbered patterns), so a class cannot be produced
//! without being mappable, and a misspelt `bpmn_errors` key is refused at load instead of
//! silently never matching:
//!
//! ```text
//!   named_classes! { TIMEOUT = "timeout", … } ──► pub const TIMEOUT, … ──► endpoints' `.code(…)`
//!                                           └──► NAMED ──► ErrorClass::from_str ◄── bpmn_errors keys
//!   patterns: http_<100–599>, http_<1–5>xx, smtp_<400–599>, smtp_<4–5>xx, exit_<1–255>
//! ```
//!
//! It lives beside `EndpointError`, which carries the class; `pde::verdict::class` re-exports it
//! for the pipeline's blocks.

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

/// Declares each named class as a `pub const` and lists them all in [`NAMED`], so adding a
/// constant is all it takes for the parser to accept it.
macro_rules! named_classes {
    ($( $(#[doc = $doc:literal])+ $name:ident = $value:literal, )+) => {
        $( $(#[doc = $doc])+ pub const $name: &str = $value; )+
        /// Every named class, in the order declared: what `bpmn_errors` accepts besides the
        /// numbered patterns of [`ErrorClass`].
        pub const NAMED: &[&str] = &[$($name),+];
    };
}

named_classes! {
    // The pipeline's own blocks.
    /// The Test block (or an endpoint) rejected the task's input.
    INPUT_INVALID = "input_invalid",
    /// No endpoint produced a result that passed validation.
    OUTPUT_INVALID = "output_invalid",
    /// No endpoint of the route was usable.
    NO_ENDPOINT = "no_endpoint",
    /// The output validator (`output.validator`) could not judge the result.
    VALIDATOR = "validator",
    /// A file variable's name cannot be used as a file name.
    FILE_VARIABLE_NAME = "file_variable_name",
    /// An endpoint's circuit breaker is open: it was not called.
    CIRCUIT_OPEN = "circuit_open",

    // Shared by several endpoint kinds.
    /// The endpoint's configuration cannot serve the call (fix the config).
    CONFIG = "config",
    /// A template (URL, header, body, prompt) failed to render with the task's variables.
    TEMPLATE = "template",
    /// The call took longer than its timeout.
    TIMEOUT = "timeout",
    /// No connection to the server could be made (refused, unreachable, TLS handshake failed):
    /// nothing was sent, so even an endpoint with side effects may be retried.
    CONNECT = "connect",
    /// The connection broke during the exchange: what was sent may have been taken.
    NETWORK = "network",
    /// The reply was larger than the endpoint accepts.
    RESPONSE_TOO_LARGE = "response_too_large",
    /// A reply that should be JSON is not.
    INVALID_JSON = "invalid_json",
    /// The server refused the credentials.
    AUTH = "auth",

    // http
    /// The method, rendered from the task, is not an HTTP method.
    INVALID_METHOD = "invalid_method",
    /// The URL, rendered from the task, is not a usable http(s) URL.
    INVALID_URL = "invalid_url",
    /// The URL's host is not in the endpoint's `allowed_hosts`.
    HOST_NOT_ALLOWED = "host_not_allowed",
    /// The URL reaches an address refused by default (loopback, link-local, private ranges).
    URL_FORBIDDEN = "url_forbidden",
    /// A header, rendered from the task, is not a valid header.
    INVALID_HEADER = "invalid_header",
    /// A redirect could not or must not be followed.
    REDIRECT = "redirect",
    /// The request could not be sent for another reason.
    REQUEST = "request",

    // python
    /// The script file cannot be run as configured.
    INVALID_SCRIPT = "invalid_script",
    /// The script file does not exist.
    SCRIPT_NOT_FOUND = "script_not_found",
    /// The interpreter cannot be started.
    INTERPRETER = "interpreter",
    /// The script's process could not be started.
    SPAWN = "spawn",
    /// Reading from or writing to the script failed.
    IO = "io",
    /// The script wrote more output than the endpoint accepts.
    OUTPUT_TOO_LARGE = "output_too_large",
    /// The script was killed by a signal.
    SIGNAL = "signal",
    /// The script's output is not the JSON the protocol expects.
    INVALID_OUTPUT = "invalid_output",

    // email
    /// A recipient address is not valid.
    INVALID_ADDRESS = "invalid_address",
    /// The sender address is not valid.
    INVALID_FROM = "invalid_from",
    /// The message has no body.
    NO_BODY = "no_body",
    /// The message cannot be built.
    MESSAGE = "message",
    /// An attachment cannot be read or attached.
    ATTACHMENT = "attachment",
    /// The TLS handshake with the SMTP server failed.
    TLS = "tls",
    /// The SMTP client and server have nothing in common (STARTTLS, AUTH mechanisms).
    SMTP_CLIENT = "smtp_client",

    // openai, ollama
    /// The model does not exist on the server.
    MODEL_NOT_FOUND = "model_not_found",
    /// The account has no quota left (unlike a rate limit, waiting does not help).
    QUOTA_EXCEEDED = "quota_exceeded",
    /// The server asked to slow down.
    RATE_LIMITED = "rate_limited",
    /// The prompt does not fit the model's context window.
    CONTEXT_LENGTH = "context_length",
    /// The provider refused the content (a safety system or content policy).
    CONTENT_POLICY = "content_policy",
    /// The reply is not the shape the API documents.
    INVALID_RESPONSE = "invalid_response",

    // files (issue 13)
    /// A path leads out of the endpoint's root (`..`, absolute, a symlink out).
    PATH_OUTSIDE_ROOT = "path_outside_root",
    /// A path names nothing usable: empty, the root, a directory to read, a file to list.
    INVALID_PATH = "invalid_path",
    /// Nothing is at the path.
    FILE_NOT_FOUND = "file_not_found",
    /// Something is already at the path and `overwrite` is false.
    FILE_EXISTS = "file_exists",
    /// The file is larger than the endpoint's `max_size`.
    FILE_TOO_LARGE = "file_too_large",
    /// A file read `as: text` is not UTF-8.
    FILE_NOT_TEXT = "file_not_text",
    /// The File variable to write is not a variable of the task or cannot be loaded.
    FILE_VARIABLE = "file_variable",
    // amqp
    /// The broker refused the message (a publisher confirm `nack`).
    AMQP_NACK = "amqp_nack",
    /// The broker returned the message: no queue is bound for its routing key (`mandatory`).
    AMQP_UNROUTABLE = "amqp_unroutable",
    // database (endpoints/database/errors.rs)
    /// A constraint (unique, foreign key, not null, check) refused the statement: raised as the
    /// endpoint's `constraint_error_code` BPMN error unless `bpmn_errors` maps this class.
    DB_CONSTRAINT = "db_constraint",
    /// `returns: one` and the statement returned no row: raised as the endpoint's
    /// `no_row_error_code` BPMN error unless `bpmn_errors` maps this class.
    DB_NO_ROW = "db_no_row",
    /// The statement is wrong for the database (syntax, unknown table or column): fix the config.
    DB_STATEMENT = "db_statement",
    /// A task variable cannot be bound as the statement's parameter (missing, wrong type).
    DB_PARAM = "db_param",
    /// The database refused a value, or a column's value cannot be read as JSON.
    DB_DATA = "db_data",
    /// The database was busy (locked, a serialization failure or deadlock): try again.
    DB_BUSY = "db_busy",
}

/// Numbered classes take a protocol's status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// `http_404`: an HTTP status, 100–599.
    Http,
    /// `smtp_451`: an SMTP error reply, 400–599.
    Smtp,
}

impl Protocol {
    /// The class prefix, without its `_`.
    fn prefix(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Smtp => "smtp",
        }
    }

    /// The first digits a status of this protocol can have, as an error class.
    fn hundreds(self) -> std::ops::RangeInclusive<u8> {
        match self {
            Protocol::Http => 1..=5,
            Protocol::Smtp => 4..=5,
        }
    }
}

/// A parsed error class: a `bpmn_errors` key, or the class of an error an endpoint returned.
/// Its `Display` is the canonical name, the same text it was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorClass {
    /// One of [`NAMED`]. Build it by parsing: a name outside that list never matches an error.
    Named(&'static str),
    /// One status code (`http_404`, `smtp_451`).
    Status(Protocol, u16),
    /// Every status of one hundred (`http_4xx`): matches an error whose exact status has no
    /// entry of its own.
    Family(Protocol, u8),
    /// A script's exit code, 1–255 (`exit_3`).
    Exit(u8),
}

impl ErrorClass {
    /// The family an exact status belongs to (`http_404` → `http_4xx`); `None` for the others.
    pub fn family(self) -> Option<ErrorClass> {
        match self {
            ErrorClass::Status(protocol, status) => {
                // A parsed status is 100–599, so its hundreds fit a u8.
                Some(ErrorClass::Family(protocol, (status / 100) as u8))
            }
            _ => None,
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorClass::Named(name) => f.write_str(name),
            ErrorClass::Status(p, status) => write!(f, "{}_{status}", p.prefix()),
            ErrorClass::Family(p, hundreds) => write!(f, "{}_{hundreds}xx", p.prefix()),
            ErrorClass::Exit(code) => write!(f, "exit_{code}"),
        }
    }
}

/// Why a text is not an error class. `Display` is one sentence ending in the list of classes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClassError {
    /// Neither a named class nor a pattern; perhaps a near miss of one.
    #[error("unknown error class{}", unknown_text(suggestion.as_deref()))]
    Unknown {
        /// The class it most likely meant, if one is close.
        suggestion: Option<String>,
    },
    /// `http_…` or `smtp_…` without a status that protocol has.
    #[error(
        "not an {} status: `{prefix}_` takes a status from {} (e.g. `{prefix}_{}`) or a family \
         `{prefix}_{}xx` to `{prefix}_5xx`",
        .prefix.to_uppercase(),
        status_range(*.protocol),
        if *.protocol == Protocol::Http { 404 } else { 451 },
        .protocol.hundreds().start(),
    )]
    Status {
        /// Which protocol the prefix named.
        protocol: Protocol,
        /// Its prefix (`http`, `smtp`).
        prefix: &'static str,
    },
    /// `exit_…` without a script exit code.
    #[error(
        "not a script exit code: `exit_` takes a code from 1 to 255 without leading zeros (e.g. `exit_3`)"
    )]
    Exit,
}

/// After "unknown error class": the suggestion, if any, then what is valid.
fn unknown_text(suggestion: Option<&str>) -> String {
    match suggestion {
        Some(s) => format!("; did you mean `{s}`? Valid classes: {}", valid_list()),
        None => format!("; valid classes: {}", valid_list()),
    }
}

fn status_range(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Http => "100 to 599",
        Protocol::Smtp => "400 to 599",
    }
}

/// "`input_invalid`, …, `http_<status>` (e.g. `http_404`), …": what is valid. Built once, at
/// the first unknown class: [`NAMED`] is fixed at compile time.
fn valid_list() -> &'static str {
    static LIST: LazyLock<String> = LazyLock::new(|| {
        let named: Vec<String> = NAMED.iter().map(|n| format!("`{n}`")).collect();
        format!(
            "{}, `http_<status>` (e.g. `http_404`), `http_<n>xx` (e.g. `http_4xx`, n from \
             1 to 5), `smtp_<status>` (e.g. `smtp_451`), `smtp_4xx`, `smtp_5xx`, `exit_<code>` \
             (e.g. `exit_3`)",
            named.join(", ")
        )
    });
    &LIST
}

/// The class `text` most likely meant: itself in lower case (`HTTP_404`), a bare status as an
/// HTTP one (`404`), or the named class closest to it if that is close enough to be a
/// misspelling.
fn closest(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    // `guess != text` ends the recursion: parsing an unknown class calls this function again.
    for guess in [lower.clone(), format!("http_{lower}")] {
        if guess != text && guess.parse::<ErrorClass>().is_ok() {
            return Some(guess);
        }
    }
    NAMED
        .iter()
        .map(|n| (strsim::jaro_winkler(&lower, n), *n))
        .filter(|(score, _)| *score >= 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, n)| n.to_string())
}

impl FromStr for ErrorClass {
    type Err = ClassError;

    fn from_str(text: &str) -> Result<Self, ClassError> {
        if let Some(name) = NAMED.iter().find(|n| **n == text) {
            return Ok(ErrorClass::Named(name));
        }
        for protocol in [Protocol::Http, Protocol::Smtp] {
            if let Some(tail) = text
                .strip_prefix(protocol.prefix())
                .and_then(|t| t.strip_prefix('_'))
            {
                return status(protocol, tail).ok_or(ClassError::Status {
                    protocol,
                    prefix: protocol.prefix(),
                });
            }
        }
        if let Some(tail) = text.strip_prefix("exit_") {
            return match tail.parse::<u8>() {
                Ok(code) if code >= 1 && code.to_string() == tail => Ok(ErrorClass::Exit(code)),
                _ => Err(ClassError::Exit),
            };
        }
        Err(ClassError::Unknown {
            suggestion: closest(text),
        })
    }
}

/// `404` or `4xx` after a protocol's prefix, if that protocol has it.
fn status(protocol: Protocol, tail: &str) -> Option<ErrorClass> {
    let bytes = tail.as_bytes();
    if bytes.len() != 3 || !bytes[0].is_ascii_digit() {
        return None;
    }
    let hundreds = bytes[0] - b'0';
    if !protocol.hundreds().contains(&hundreds) {
        return None;
    }
    if &tail[1..] == "xx" {
        return Some(ErrorClass::Family(protocol, hundreds));
    }
    let status: u16 = tail
        .chars()
        .all(|c| c.is_ascii_digit())
        .then(|| tail.parse().ok())??;
    Some(ErrorClass::Status(protocol, status))
}

impl<'de> serde::Deserialize<'de> for ErrorClass {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ErrorClass;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an error class such as `timeout`, `http_404` or `http_4xx`")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<ErrorClass, E> {
                text.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests;
