//! kernel (being built).
