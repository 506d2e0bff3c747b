//! manager (being built).
