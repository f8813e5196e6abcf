//! georeg keeps a secondary container registry in step with a primary one,
//! through the registry HTTP API only, as GitLab Geo's registry replication
//! does. See README.md for the operator's manual.

pub mod backfill;
pub mod check;
pub mod cli;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod dashboard;
pub mod demo;
pub mod digest;
pub mod encoding;
pub mod error;
pub mod events;
pub mod follow;
pub mod https;
pub mod manifest;
pub mod metrics;
pub mod node;
pub mod registry;
pub mod replicate;
pub mod report;
pub mod selective;
pub mod server;
pub mod stats;
pub mod status;
pub mod store;
pub mod tls;
pub mod token;
pub mod verify;
pub mod worker;
