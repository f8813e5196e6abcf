//! georeg keeps a secondary container registry in step with a primary one,
//! through the registry HTTP API only, as GitLab Geo's registry replication
//! does. See README.md and docs/ for the operator's manual, and
//! docs/architecture.md for how these modules fit together.
//!
//! Data flows one way: a notification (`web`) or a page of the primary's
//! log (`replication::cursor`) becomes rows in the state file (`store`); a
//! worker (`replication`) claims a repository there, copies through the
//! registry API (`registry`), and records the outcome back in `store`,
//! where the pages and metrics (`web`, `health`) read it. `web` and
//! `replication` never call each other. Across an air gap, transfer
//! bundles (`bundle`) carry what the primary holds, and the same copy
//! engine imports them.

#[cfg(test)]
mod architecture_tests;
pub(crate) mod bundle;
pub mod cli;
pub mod commands;
pub(crate) mod config;
pub(crate) mod error;
pub(crate) mod format;
pub(crate) mod health;
pub(crate) mod help;
pub(crate) mod peer;
pub mod progress;
pub(crate) mod reconcile;
pub mod registry;
pub(crate) mod replication;
pub(crate) mod shutdown;
pub(crate) mod store;
pub(crate) mod tls;
pub(crate) mod web;
