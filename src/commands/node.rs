//! [`Node`]: everything a command needs, built once from the
//! configuration (the signer, the registry clients, the state file and its
//! handles, the counters, the stop request), and the narrow views each part
//! of georeg gets from it: the server an `App`, the workers a `Replicator`,
//! an import an `Importer` (the copy engine alone, no primary), the report
//! thread a `Reporter`.

use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, ReplicationConfig, Role};
use crate::error::{Error, Result};
use crate::health::report::Reporter;
use crate::health::{Health, Stats};
use crate::peer::PrimaryNode;
use crate::reconcile::keeper::Keeper;
use crate::reconcile::pass::Reconciler;
use crate::registry::auth::Auth;
use crate::registry::pace::Pacer;
use crate::registry::token::{random_hex, Signer, TokenCache};
use crate::registry::{self, Client, Target};
use crate::replication::import::Importer;
use crate::replication::prefetch::Prefetch;
use crate::replication::pushed::Pushed;
use crate::replication::source::Source;
use crate::replication::{Engine, Replicator};
use crate::shutdown::Shutdown;
use crate::store::{DeletionPolicy, Fingerprints, Log, Queue, Reader, Store};
use crate::web::App;

/// Everything built from the configuration: the signer holding the shared
/// key, a read-write client for this node's own registry, a pull-only
/// client for the primary registry and a client for the primary georeg
/// (on a secondary), the state file, the live counters and health, and
/// the stop request.
pub(crate) struct Node {
    pub config: Config,
    /// The shared key (`registry.key_file`), when configured: see [`Node::signer`].
    key: Option<Arc<Signer>>,
    /// The state file's owner handle, and the doors it hands out:
    /// replication's queue, the web side's and follower's log, the read side.
    pub store: Store,
    pub queue: Queue,
    pub log: Log,
    pub reader: Reader,
    pub fingerprints: Fingerprints,
    pub stats: Stats,
    pub health: Health,
    pub shutdown: Shutdown,
    /// This node's own registry.
    pub local: Target,
    /// This node's own registry with pull-only tokens, as clients read it (drills).
    pub local_reader: Client,
    /// The primary registry, read-only; `None` on the primary itself.
    pub primary: Option<Client>,
    /// The same two registries as reconciliation reads them: its own
    /// User-Agent (so registries' logs tell its reads apart), the primary
    /// paced together with replication's reads.
    pub reconcile_local: Client,
    pub reconcile_primary: Option<Client>,
    /// The primary georeg, on a secondary that follows its event log.
    pub primary_node: Option<PrimaryNode>,
    /// Blobs the primary registry notified as pushed, to land ahead of
    /// their manifest (see [`Node::prefetching`]).
    pub prefetch: Prefetch,
    /// The blobs this node's followers may land ahead: its registry's
    /// notified pushes on a primary, what its prefetcher landed on a relay.
    pub pushed: Pushed,
}

impl Node {
    /// The shared key, for what only it can do (sign and check transfer
    /// bundles and inventories, mint tokens by hand).
    pub fn signer(&self) -> Result<&Arc<Signer>> {
        self.key.as_ref().ok_or_else(|| {
            self.config.bad(
                "registry.key_file",
                "is required for this command: transfer bundles, inventories and tokens are signed with the key \
                 all nodes share",
            )
        })
    }

    pub fn open(config: Config) -> Result<Node> {
        let key = load_key(&config)?;
        let store = Store::open(&config.state_file)?;
        store.set_selection(config.replication.selection());
        store.set_slow_share(config.replication.workers / 2);
        if config.role == Role::Secondary {
            reschedule_deletions(&store, config.replication.delete_delay_hours)?;
        }
        let tls =
            crate::tls::client_config(config.tls.ca_file.as_deref()).map_err(|why| config.bad("tls.ca_file", why))?;
        let agent = registry::agent(tls.clone());
        let local = Target::new(&config.registry.url, agent.clone(), local_auth(&config, key.as_ref()));
        let local_reader = Client::read_only(&config.registry.url, agent.clone(), local_auth(&config, key.as_ref()));
        let stall = Duration::from_secs(config.replication.stall_seconds);
        let reconcile_agent = registry::agent_for(tls.clone(), stall, registry::RECONCILE_USER_AGENT);
        let reconcile_local =
            Client::read_only(&config.registry.url, reconcile_agent.clone(), local_auth(&config, key.as_ref()));
        let pacer =
            Arc::new(Pacer::new(config.replication.max_bytes_per_second, config.replication.max_requests_per_second));
        let primary = primary_client(&config, key.as_ref(), registry::agent_timing_out(tls, stall), &pacer);
        let reconcile_primary = primary_client(&config, key.as_ref(), reconcile_agent, &pacer);
        // Validation requires the key with primary_node_url.
        let primary_node = match (&config.role, &config.replication.primary_node_url, &key) {
            (Role::Secondary, Some(url), Some(key)) => {
                Some(PrimaryNode::new(url, agent.clone(), key.clone(), &config.node_name))
            }
            _ => None,
        };
        let (queue, log, reader, fingerprints) = (store.queue(), store.log(), store.reader()?, store.fingerprints());
        let shutdown = Shutdown::default();
        let limits = read_limits(&config);
        let bound = |c: Client| c.bounded(limits, &shutdown);
        let (local_reader, reconcile_local) = (bound(local_reader), bound(reconcile_local));
        let (primary, reconcile_primary) = (primary.map(bound), reconcile_primary.map(bound));
        let local = local.bounded(limits, &shutdown);
        Ok(Node {
            config,
            key,
            store,
            queue,
            log,
            reader,
            fingerprints,
            stats: Stats::default(),
            health: Health::default(),
            shutdown,
            local,
            local_reader,
            primary,
            reconcile_local,
            reconcile_primary,
            primary_node,
            prefetch: Prefetch::default(),
            pushed: Pushed::default(),
        })
    }

    /// True on a replicating secondary that learns of blob pushes: the
    /// primary registry notifies it directly, or it follows a primary
    /// georeg, which passes them on. `serve` lands them ahead of their
    /// manifests.
    pub fn prefetching(&self) -> bool {
        let replication = &self.config.replication;
        self.config.role == Role::Secondary
            && replication.enabled
            && (replication.primary_node_url.is_some() || self.config.notifications.secret.is_some())
    }

    /// A replicator from the primary into this node's registry.
    pub fn replicator(&self) -> Result<Replicator<'_>> {
        self.config.primary_api_url()?;
        let Some(primary) = &self.primary else {
            return Err(Error::Usage("this node has no primary registry configured".into()));
        };
        Ok(Replicator {
            engine: self.engine(primary),
            primary,
            budget_seconds: self.config.replication.sync_budget_seconds,
            repositories: &self.config.replication.repositories,
        })
    }

    /// An importer into this node's registry that reads what it lacks from
    /// `source` (a transfer bundle). It needs no primary registry: an
    /// air-gapped node may know none.
    pub fn importer<'a>(&'a self, source: &'a dyn Source, bundle: &str) -> Importer<'a> {
        Importer { engine: self.engine(source), bundle: bundle.to_string() }
    }

    /// The copy engine into this node's registry, reading from `source`.
    fn engine<'a>(&'a self, source: &'a dyn Source) -> Engine<'a> {
        Engine {
            source,
            secondary: &self.local,
            store: &self.queue,
            stats: &self.stats,
            shutdown: &self.shutdown,
            chunk_size: self.config.replication.chunk_bytes,
            streams: self.config.replication.blob_streams,
            deletions: deletion_policy(&self.config.replication),
            prefetch: Some(&self.prefetch),
        }
    }

    /// What a drill reads (this node's registry, pull-only) and records.
    pub fn drill(&self) -> crate::replication::drill::Drill<'_> {
        crate::replication::drill::Drill { secondary: &self.local_reader, store: &self.queue, shutdown: &self.shutdown }
    }

    /// The fingerprint keeper of this node's own registry.
    pub fn keeper(&self) -> Keeper<'_> {
        Keeper {
            registry: &self.reconcile_local,
            store: &self.fingerprints,
            shutdown: &self.shutdown,
            window: Duration::from_secs(self.config.replication.reconcile_interval_seconds),
            secondary: self.config.role == Role::Secondary,
        }
    }

    /// Reconciliation of this node with the primary (a replicating
    /// secondary: `replicator()` succeeded, so the primary is configured).
    pub fn reconciler(&self) -> Reconciler<'_> {
        Reconciler {
            primary: self.reconcile_primary.as_ref().unwrap_or(&self.reconcile_local),
            primary_node: self.primary_node.as_ref(),
            secondary: &self.reconcile_local,
            queue: &self.queue,
            reader: &self.reader,
            selection: self.config.replication.selection(),
            window: Duration::from_secs(self.config.replication.reconcile_interval_seconds),
            stats: &self.stats,
            shutdown: &self.shutdown,
            stale_fingerprints_told: Default::default(),
        }
    }

    /// What the HTTP server's handlers see.
    pub fn app(&self) -> App<'_> {
        App {
            config: &self.config,
            log: &self.log,
            reader: &self.reader,
            stats: &self.stats,
            health: &self.health,
            signer: self.key.as_deref(),
            form_secret: random_hex(16),
            shutdown: &self.shutdown,
            refusals: Default::default(),
            long_polls: Default::default(),
            pushed: &self.pushed,
            prefetch: (self.prefetching() && self.config.replication.primary_node_url.is_none())
                .then_some(&self.prefetch),
        }
    }

    /// What the health check and report thread sees.
    pub fn reporter(&self) -> Reporter<'_> {
        Reporter {
            config: &self.config,
            log: &self.log,
            reader: &self.reader,
            stats: &self.stats,
            health: &self.health,
            local: &self.local,
            primary: self.primary.as_ref(),
            primary_node: self.primary_node.as_ref(),
            shutdown: &self.shutdown,
        }
    }
}

/// How deletions are held back (`replication.delete_delay_hours`) and when
/// they raise the burst alarm.
fn deletion_policy(r: &ReplicationConfig) -> DeletionPolicy {
    DeletionPolicy {
        delay_hours: r.delete_delay_hours,
        burst_share: r.delete_burst_share,
        burst_min_tags: r.delete_burst_min_tags,
    }
}

/// The key pair shared by all nodes, from `registry.key_file`, when set.
pub(super) fn load_key(config: &Config) -> Result<Option<Arc<Signer>>> {
    let Some(key_file) = &config.registry.key_file else {
        return Ok(None);
    };
    Ok(Some(Arc::new(Signer::load(key_file, config.registry.certificate_file.as_deref(), &config.registry.issuer)?)))
}

/// The key pair shared by all nodes, for a command that cannot do without.
pub(super) fn load_signer(config: &Config) -> Result<Arc<Signer>> {
    load_key(config)?.ok_or_else(|| {
        config.bad(
            "registry.key_file",
            "is required for this command: transfer bundles and inventories are signed with the key all nodes share",
        )
    })
}

/// How georeg authenticates to this node's registry: credentials when
/// configured (following the registry's challenge), else tokens signed
/// with the shared key, else anonymously (following the challenge).
pub(crate) fn local_auth(config: &Config, key: Option<&Arc<Signer>>) -> Auth {
    let ttl = Duration::from_secs(config.registry.token_ttl_seconds);
    match (&config.registry.credentials, key) {
        (None, Some(key)) => TokenCache::new(key.clone(), &config.registry.service, ttl).into(),
        (credentials, _) => Auth::challenged(credentials.clone(), "registry"),
    }
}

/// How georeg authenticates to the primary registry, as `local_auth`
/// with `replication.primary_username`...
pub(crate) fn primary_auth(config: &Config, key: Option<&Arc<Signer>>) -> Auth {
    let ttl = Duration::from_secs(config.registry.token_ttl_seconds);
    match (&config.replication.primary_credentials, key) {
        (None, Some(key)) => TokenCache::new(key.clone(), &config.registry.service, ttl).into(),
        (credentials, _) => Auth::challenged(credentials.clone(), "replication.primary"),
    }
}

/// The pull-only client for the primary registry, when the configuration
/// names one: paced (`replication.max_bandwidth`...), and giving up on a
/// stalled read (then resuming it) after `replication.stall_seconds`.
/// The bounds on reads from either registry (`replication.stall_seconds`,
/// `min_rate`, `max_tags`).
pub(super) fn read_limits(config: &Config) -> registry::bounded::Limits {
    let r = &config.replication;
    registry::bounded::Limits {
        stall: Duration::from_secs(r.stall_seconds),
        min_rate: r.min_bytes_per_second,
        max_tags: r.max_tags,
    }
}

pub(super) fn primary_client(
    config: &Config,
    key: Option<&Arc<Signer>>,
    agent: ureq::Agent,
    pacer: &Arc<Pacer>,
) -> Option<Client> {
    let url = config.replication.primary_api_url.as_deref()?;
    Some(Client::read_only(url, agent, primary_auth(config, key)).paced(pacer.clone()))
}

/// Held deletions follow a changed `replication.delete_delay_hours`, and
/// the log says so.
fn reschedule_deletions(store: &Store, delay_hours: u64) -> Result<()> {
    let Some(r) = store.queue().reschedule_deletions(delay_hours)? else { return Ok(()) };
    let was: Vec<String> = r.was_hours.iter().map(i64::to_string).collect();
    log::warn!(
        "replication.delete_delay_hours is now {delay_hours}: {} held deletions (held {} hours) rescheduled to \
         {delay_hours} hours after they were seen; {} due now{}",
        r.moved,
        was.join(", "),
        r.due,
        r.next.map(|t| format!(", the next applies at {t}")).unwrap_or_default()
    );
    Ok(())
}
