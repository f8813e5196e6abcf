//! Everything a command needs, built once from the configuration: the
//! signer holding the shared key, a pull-only client for the primary
//! registry, a read-write client for this node's own registry, the state
//! file, and the process-wide counters.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::error::Result;
use crate::registry::{self, Client, Target};
use crate::replicate::{Replicator, Stats};
use crate::store::Store;
use crate::token::{Signer, TokenCache};

pub struct Node {
    pub config: Config,
    pub signer: Arc<Signer>,
    pub store: Store,
    pub stats: Stats,
    pub quit: AtomicBool,
    /// This node's own registry.
    pub local: Target,
    /// The primary registry, read-only; `None` on the primary itself.
    pub primary: Option<Client>,
}

impl Node {
    pub fn open(config: Config) -> Result<Node> {
        let signer = Arc::new(Signer::load(
            &config.registry.key_file,
            config.registry.certificate_file.as_deref(),
            &config.registry.issuer,
        )?);
        let store = Store::open(&config.state_file)?;
        let agent = registry::agent();
        let tokens = || {
            TokenCache::new(
                signer.clone(),
                &config.registry.service,
                Duration::from_secs(config.registry.token_ttl_seconds),
            )
        };
        let local = Target::new(&config.registry.url, agent.clone(), tokens());
        let primary =
            config.replication.primary_api_url.as_deref().map(|url| Client::read_only(url, agent.clone(), tokens()));
        Ok(Node { config, signer, store, stats: Stats::default(), quit: AtomicBool::new(false), local, primary })
    }

    /// A replicator from the primary into this node's registry.
    pub fn replicator(&self) -> Result<Replicator<'_>> {
        let primary = match &self.primary {
            Some(p) => p,
            None => {
                self.config.primary_api_url()?;
                unreachable!("primary_api_url is set exactly when a primary client exists")
                // ok: Node::open builds it from that key
            }
        };
        Ok(Replicator { primary, secondary: &self.local, store: &self.store, stats: &self.stats, quit: &self.quit })
    }
}
