//! `georeg token --scope SCOPE...`: prints a token for this node's
//! registry, for debugging with curl.

use std::process::ExitCode;
use std::time::Duration;

use super::node::Node;
use crate::error::Result;
use crate::registry::token::Scope;

pub fn run(node: &Node, scopes: &[Scope]) -> Result<ExitCode> {
    let ttl = Duration::from_secs(node.config.registry.token_ttl_seconds);
    println!("{}", node.signer()?.sign(&node.config.registry.service, "georeg", ttl, scopes).text);
    Ok(ExitCode::SUCCESS)
}
