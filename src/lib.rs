//! kikaku-edge: a Pingora edge gateway for SeedDream image generation and S3
//! storage. See README.md for a tour and DESIGN.md for the contract.

pub mod access_log;
pub mod alloc;
pub mod ark_sim;
pub mod config;
pub mod gallery;
pub mod handlers;
pub mod http_error;
pub mod image_api;
pub mod keys_cmd;
pub mod metrics;
pub mod reload;
pub mod reply;
pub mod routing;
pub mod s3;
pub mod server;
pub mod snapshot;
pub mod state;
pub mod storage_cmd;
pub mod upstreams;
