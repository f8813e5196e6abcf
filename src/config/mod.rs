//! The configuration file (TOML, default /etc/georeg/georeg.toml): its
//! keys, defaults and reading (`file`), the checks every value passes
//! (`validate`), and selective sync (`selective`).
//!
//! Parsing is strict: an unknown key, a wrong type or a bad value stops
//! georeg with one line naming the file, the key and what is wrong. Relative
//! paths in the file are taken relative to the file's own directory.

pub mod credentials;
mod defaults;
mod file;
pub mod selective;
mod tests;
mod validate;

pub use file::{Config, ReplicationConfig, Role};
