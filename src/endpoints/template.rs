//! Templates over task variables (being built).
