//! In-memory Camunda-compatible engine (being built).
