//! The registry HTTP API (Docker Registry v2 / OCI distribution), and
//! everything georeg needs to speak it: tokens (JWT), digests, manifests,
//! the name grammar and the encodings they use.
//!
//! [`Client`] holds the read operations and is all the primary ever gets: it
//! signs pull-only tokens (and the catalog scope), so georeg cannot write to
//! the primary even by mistake. [`Target`] wraps a client for the secondary
//! and adds the writes, with `push,pull` tokens. Both share one
//! `ureq::Agent` (keep-alive, explicit timeouts). Error statuses are data:
//! callers look at 404s; everything else becomes an
//! [`Error::Registry`](crate::error::Error::Registry) carrying the
//! registry's own code and message (`http`).

pub mod auth;
pub(crate) mod bounded;
mod challenge;
mod client;
pub(crate) mod digest;
mod download;
pub mod encoding;
mod http;
pub mod manifest;
pub(crate) mod names;
pub(crate) mod pace;
mod pages;
pub(crate) mod sha256;
mod tag_list;
mod target;
pub mod token;

pub(crate) use client::Client;
pub(crate) use digest::Digest;
pub(crate) use http::{agent, agent_for, agent_timing_out, transport_message, RECONCILE_USER_AGENT};
pub(crate) use manifest::Manifest;
pub(crate) use names::{valid_repository, valid_tag};
pub(crate) use target::{Mount, Target};
