//! kikaku-edge: a Pingora edge gateway for SeedDream image generation and S3
//! storage. See README.md for a tour, ARCHITECTURE.md for the rooms and the
//! request path, and DESIGN.md for the contract.
//!
//! The crate by role, top to bottom (a room uses only the rooms below it):
//! - [`cli`]: the `keys` and `storage` commands;
//! - [`proxy`]: the request path — the Pingora server, its phases, routing,
//!   the config snapshot and its reloads, the handler registry, the access
//!   log, metrics and the admin listener;
//! - the capabilities, one room each: [`images`] (image generation and its
//!   API), [`account`] (usage and logs of image keys, key reset), [`gallery`] (kept
//!   copies of generated images), [`storage`] (the S3 endpoint, the storage
//!   API and the plumbing to the backend), [`admin_api`] (the management
//!   API), [`openapi`] (the public API's document), [`uploads`] (the
//!   temporary-file upload API and its files);
//! - [`standins`]: the Ark simulator and the embedded S3 backend;
//! - what the capabilities share: [`reply`] (how a handler answers),
//!   [`s3_xml`], [`upstreams`], [`state`];
//! - [`config`]: the YAML front-end, a leaf.

pub mod account;
pub mod admin_api;
pub mod alloc;
pub mod cli;
pub mod config;
pub mod file_host;
pub mod gallery;
pub mod images;
pub mod openapi;
pub mod proxy;
pub mod reply;
pub mod s3_xml;
pub mod standins;
pub mod state;
pub mod storage;
pub mod tls;
pub mod uploads;
pub mod upstreams;
pub mod web;
