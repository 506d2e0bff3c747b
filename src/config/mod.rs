//! `pde.yaml`: parse (strict serde) → interpolate `${VAR}` → validate (pure, every error with its
//! YAML path) → the validated [`FileConfig`] the kernel builds from.
//!
//! ```text
//!   text ──serde_yaml──► Value ──interpolate──► Value ──per-section strict serde──► parts
//!                                  (${VAR})                (every typo, full path)     │
//!                                                                       validate (pure)│
//!                                              FileConfig ◄──────────────────────────┘
//!                                   or ConfigError { problems: every Problem with its path }
//! ```
//!
//! [`load`] and [`load_str`] are the entry points; `procos validate` calls [`load_noted`] and
//! prints the [`ConfigError`], one problem per line, after the notes on the design's vocabulary
//! the file uses (`type: ai_service` is read as `type: openai`, …).

pub mod admin;
mod error;
pub mod file;
mod interpolate;
mod load;
mod meta;
pub mod secret;
pub mod stamp;
/// `telemetry:` (OpenTelemetry traces; issue 12).
pub mod telemetry;
mod validate;

pub use error::{ConfigError, Problem};
pub use file::FileConfig;
pub use load::{Loaded, load, load_noted, load_str, load_str_noted};
pub(crate) use load::{check_bounds, read_text, serde_problem};
pub use secret::Secret;
pub use validate::validate;
