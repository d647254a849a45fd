//! Stand-ins for what the gateway talks to, so the offline default config
//! runs with nothing else installed: the Ark (SeedDream) simulator and the
//! embedded S3 backend. Neither is on the request path; the gateway reaches
//! both over HTTP exactly as it reaches the real ones.

pub mod ark_sim;
pub mod embedded_s3;
