//! Integration tests against real `docker-registry` processes and the real
//! `georeg` binary. `cargo test` runs them; they need docker-registry and
//! openssl installed (.ci/run installs both).

mod support;

mod auth;
mod backfill;
mod bundle;
mod bundle_bounds;
mod bundle_resume;
mod check;
mod crash;
mod dashboard;
mod demo;
mod dr;
mod dr_import;
mod dr_overwrite;
mod events;
mod exit_codes;
mod fidelity;
mod hostile;
mod hostile_primary;
mod operator;
mod other_registry;
mod ownership;
mod pace;
mod ranges;
mod reconcile;
mod relay;
mod resume;
mod state_file;
mod sync;
mod tls;
mod trust;
