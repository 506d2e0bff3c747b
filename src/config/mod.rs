//! `pde.yaml`: parse (strict serde) → interpolate `${VAR}` → validate (pure, every error with its
//! YAML path) → [`Config`], the runtime view the kernel builds from.

pub mod file;
pub mod secret;

pub use file::FileConfig;
pub use secret::Secret;
