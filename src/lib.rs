//! # procos — a Camunda 7 external-task runtime
//!
//! procos fetches external tasks from a Camunda 7 engine (or Operaton / CIB seven) and runs each
//! one through a self-checking pipeline of five blocks before reporting the outcome.
//!
//! ## Layout
//! Data flows one way, top to bottom; no module reaches back up.
//!
//! ```text
//! main.rs ─► cli        parse the command line
//!            telemetry  structured logs (JSON or pretty)
//!            config     pde.yaml: parse → interpolate ${VAR} → validate (pure) → runtime config
//!            kernel     microkernel: wait for the engine, deploy bpmn/ (+ watch), supervise shutdown
//!              └► manager   PDE pools, the single fetch loop, TaskRun (one owner per task), heartbeat
//!                   └► pde        Pipeline::run = Start → Test → Gateway → Validation → Completion
//!                        └► endpoints  trait Endpoint + http, python, noop (+ AI, email, files, sub-PDE)
//!            learner    per (topic, endpoint, class) statistics that routing learns from (used by
//!                       pde; persisted in the journal's store by learner/store.rs; report.rs is
//!                       `procos stats`)
//!            journal    outcome journal (embedded store under state_dir): nothing runs twice, no
//!                       outcome lost (used by kernel, manager and pde; uses only camunda)
//!            camunda    the engine's REST API: client, models, typed variables, errors
//!                       (used by kernel, manager and pde::completion; uses nothing above)
//!            engine     an in-memory Camunda-compatible engine: `procos dev` and the test suite
//!            admin      the admin server: /metrics, /healthz, /readyz, /api/status and the status
//!                       page (started by kernel; reads manager, learner, endpoint health, telemetry)
//!            migrate    `procos migrate workers.yaml`: plain workers' config → pde.yaml (uses config)
//! ```

pub mod admin;
pub mod backoff;
pub mod camunda;
pub mod cli;
pub mod config;
pub mod endpoints;
pub mod engine;
pub mod journal;
pub mod kernel;
pub mod learner;
pub mod manager;
/// `procos migrate`: a config of plain workers → an equivalent `pde.yaml` (issue 13).
pub mod migrate;
pub mod pde;
pub mod telemetry;
