//! What the pipeline concluded about a task, before Completion turns it into an engine call.

use serde_json::Value;

use crate::endpoints::{EndpointError, Usage};

/// The pipeline's conclusion.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// An endpoint answered and its result passed validation.
    Done {
        /// The endpoint's result, before output mapping.
        output: Value,
        /// Which endpoint produced it.
        endpoint: String,
        /// Its usage figures, if any.
        usage: Option<Usage>,
        /// The `output.validator`'s judgement of the result, when the topic has one: the quality
        /// signal for the final log line (`judge_score`) and the learner. Boxed: rare, and it
        /// would make every `Verdict` larger.
        judge: Option<Box<Judgement>>,
    },
    /// The task could not be done. `error.code` carries the class the topic's `bpmn_errors` may
    /// map (`input_invalid`, `output_invalid`, `http_404`, …).
    Failed {
        /// The decisive error (the last one, or the first permanent one).
        error: EndpointError,
        /// Every attempt that led here, oldest first, for `errorDetails`.
        chain: Vec<String>,
    },
    /// The task is gone or procos is stopping hard: report nothing.
    Cancelled,
}

/// What an `output.validator` concluded about a result it passed.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    /// Quality from 0 (worst) to 1 (best), as the judge answered it.
    pub score: f64,
    /// The judge's reason, as it answered it (quote it before logging).
    pub reason: String,
}

impl Verdict {
    /// A failure with no earlier attempts.
    pub fn failed(error: EndpointError) -> Self {
        Verdict::Failed {
            error,
            chain: Vec::new(),
        }
    }
}

/// Error classes: the named ones every endpoint and block uses, and [`class::ErrorClass`], their
/// parsed form.
/// The error classes live beside `EndpointError`; the pipeline uses the same vocabulary.
pub use crate::endpoints::class;
