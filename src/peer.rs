//! Everything a command needs, built once from the configuration: the
//! signer holding the shared key, a pull-only client for the primary
//! registry, a read-write client for this node's own registry, the state
//! file, the process-wide counters and the shutdown flag.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::error::Result;
use crate::registry::{self, Client, Target};
use crate::replicate::Replicator;
use crate::stats::Stats;
use crate::store::Store;
use crate::token::{Signer, TokenCache};

/// The audience of tokens georeg nodes sign for each other.
pub const NODE_AUDIENCE: &str = "georeg";

pub struct Node {
    pub config: Config,
    pub signer: Arc<Signer>,
    pub store: Store,
    pub stats: Stats,
    /// Set by SIGTERM/SIGINT; every loop and every blob stream checks it.
    pub quit: Arc<AtomicBool>,
    pub agent: ureq::Agent,
    /// This node's own registry.
    pub local: Target,
    /// The primary registry, read-only; `None` on the primary itself.
    pub primary: Option<Client>,
    /// Random per process: keys the dashboard's form tokens when no admin
    /// credential is configured.
    pub process_secret: String,
    /// The last health check's problem (daemon only), shown on dashboards.
    pub health_problem: std::sync::Mutex<Option<String>>,
}

/// A short-lived token proving to another georeg node that `node_name`
/// holds the shared key.
pub fn node_token(signer: &Signer, node_name: &str) -> String {
    signer.sign(NODE_AUDIENCE, node_name, Duration::from_secs(60), &[]).text
}

impl Node {
    pub fn open(config: Config) -> Result<Node> {
        let signer = Arc::new(Signer::load(
            &config.registry.key_file,
            config.registry.certificate_file.as_deref(),
            &config.registry.issuer,
        )?);
        let store = Store::open(&config.state_file)?;
        let tls =
            crate::tls::client_config(config.tls.ca_file.as_deref()).map_err(|why| config.bad("tls.ca_file", why))?;
        let agent = registry::agent(tls);
        let ttl = Duration::from_secs(config.registry.token_ttl_seconds);
        let tokens = || TokenCache::new(signer.clone(), &config.registry.service, ttl);
        let local = Target::new(&config.registry.url, agent.clone(), tokens());
        let primary =
            config.replication.primary_api_url.as_deref().map(|url| Client::read_only(url, agent.clone(), tokens()));
        Ok(Node {
            config,
            signer,
            store,
            stats: Stats::default(),
            quit: Arc::new(AtomicBool::new(false)),
            agent,
            local,
            primary,
            process_secret: crate::token::random_hex(16),
            health_problem: std::sync::Mutex::new(None),
        })
    }

    pub fn quitting(&self) -> bool {
        self.quit.load(Ordering::Relaxed)
    }

    /// A short-lived token proving to another georeg node that this node
    /// holds the shared key.
    pub fn node_token(&self) -> String {
        node_token(&self.signer, &self.config.node_name)
    }

    /// A replicator from the primary into this node's registry.
    pub fn replicator(&self) -> Result<Replicator<'_>> {
        self.config.primary_api_url()?;
        let Some(primary) = &self.primary else {
            return Err(crate::error::Error::Usage("this node has no primary registry configured".into()));
        };
        Ok(Replicator { primary, secondary: &self.local, store: &self.store, stats: &self.stats, quit: &self.quit })
    }
}
