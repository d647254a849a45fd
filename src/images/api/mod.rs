//! The SeedDream image API (DESIGN §3): models and sizes, shared by the
//! gateway's handler and the Ark simulator.

pub mod inline;
pub mod models;
pub mod validate;

/// Ark's per-image error code when an output trips its content filter.
pub const ARK_SENSITIVE_OUTPUT: &str = "OutputImageSensitiveContentDetected";
