//! pde (being built).
