//! The protocol between georeg nodes: the event log of the node followed
//! (the primary's events, or what a relay applied to its own registry),
//! the fingerprints of its registry (reconciliation), and the status
//! reports followers send it, all authenticated by a JWT signed with the key
//! pair shared by all nodes (audience "georeg"). A follower cannot tell a
//! relay from the primary except by the chain a page names.
//!
//! [`PrimaryNode`] is the one client a secondary uses to talk to the
//! primary georeg: the cursor reads the log with it, the report thread
//! posts status with it, and `georeg check` proves it works. The server
//! side lives in `web::event_log`.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::registry::token::Signer;
use crate::store::{Event, FingerprintEntry, FingerprintPage};

/// The primary's event log: `GET ?after=ID&limit=N&wait=SECONDS`.
pub const EVENTS_PATH: &str = "/api/v1/events";
/// The fingerprints of the primary's registry: `GET` for the pages, `GET
/// ?first=NAME&last=NAME` for the entries of one.
pub const FINGERPRINTS_PATH: &str = "/api/v1/fingerprints";
/// Repositories per page of fingerprints.
pub const FINGERPRINT_PAGE: usize = 1000;
/// Where a secondary POSTs its status, on the primary.
pub const NODE_STATUS_PATH: &str = "/api/v1/nodes/status";
/// The audience of tokens georeg nodes sign for each other.
pub const NODE_AUDIENCE: &str = "georeg";
/// A page of the event log is at most this large (a sanity limit on what
/// a secondary reads; a page of 1,000 events is well under 1 MB).
const MAX_PAGE_BYTES: u64 = 64 << 20;

/// One page of the primary's event log, as it serves it.
#[derive(Debug, Serialize, Deserialize)]
pub struct Page {
    pub events: Vec<Event>,
    /// The newest id in the primary's log, whatever the page holds.
    pub last_event_id: i64,
    /// The oldest id the primary still stores: a cursor below it has
    /// missed events the primary pruned.
    #[serde(default)]
    pub oldest_event_id: i64,
    /// The log's identity: another epoch is another log.
    #[serde(default)]
    pub epoch: String,
    /// The node serving the log (its node_name): the primary, or a relay
    /// (a secondary serving what it applied to its own registry).
    #[serde(default)]
    pub node: String,
    /// The serving node's own upstreams, nearest first, up to the primary
    /// (empty on the primary): how a follower knows its chain, and finds
    /// itself in it when following would make a loop.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<String>,
    /// Why the serving node is behind the primary (`None`: it is the
    /// primary, or in step): a follower is not ready while its relay is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behind: Option<String>,
    /// Blobs the follower may land ahead of their manifests, since its
    /// mark: the pushes a primary's registry notified, or the blobs a relay
    /// landed in its own registry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blobs: Vec<PushedBlob>,
    /// Where those blobs stand now; `None` from an older georeg, or to a
    /// follower that gave no mark.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob_mark: Option<BlobMark>,
}

/// A blob pushed to the primary registry, passed on to followers as a
/// hint: held in memory only, so a follower that misses it copies the
/// blob with its manifest, as it always could.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushedBlob {
    pub repository: String,
    pub digest: String,
    pub size: u64,
}

/// A follower's place in the blobs the node it follows passes on: the
/// process they came from (`epoch`, random per start) and the last one
/// read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BlobMark {
    pub epoch: String,
    pub through: u64,
}

/// The pages of the primary's fingerprints.
#[derive(Debug, Serialize, Deserialize)]
pub struct Fingerprints {
    pub pages: Vec<FingerprintPage>,
    /// Every repository of the primary's registry has been read at least
    /// once: a repository in no page is not there.
    pub complete: bool,
}

/// The entries of one page.
#[derive(Debug, Serialize, Deserialize)]
pub struct FingerprintEntries {
    pub entries: Vec<FingerprintEntry>,
}

/// A short-lived token proving to another georeg node that `node_name`
/// holds the shared key.
pub fn node_token(signer: &Signer, node_name: &str) -> String {
    signer.sign(NODE_AUDIENCE, node_name, Duration::from_secs(60), &[]).text
}

/// The primary georeg, as a secondary reaches it.
pub struct PrimaryNode {
    base: String,
    agent: ureq::Agent,
    signer: Arc<Signer>,
    /// This node's name, the subject of its tokens.
    node_name: String,
}

impl PrimaryNode {
    pub fn new(base: &str, agent: ureq::Agent, signer: Arc<Signer>, node_name: &str) -> PrimaryNode {
        PrimaryNode { base: base.trim_end_matches('/').to_string(), agent, signer, node_name: node_name.to_string() }
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    /// This node's name, as it signs its tokens.
    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    fn auth(&self) -> String {
        format!("Bearer {}", node_token(&self.signer, &self.node_name))
    }

    /// Up to `limit` events after `after`, waiting up to `wait` for the
    /// first one. The error says what failed and what to check.
    pub fn events(&self, after: i64, limit: usize, wait: Duration) -> Result<Page, String> {
        self.events_and_blobs(after, limit, wait, None)
    }

    /// The same, and the blob pushes after `blobs` (the wait ends at the
    /// first of either).
    pub fn events_and_blobs(
        &self,
        after: i64,
        limit: usize,
        wait: Duration,
        blobs: Option<&BlobMark>,
    ) -> Result<Page, String> {
        let mut url = format!("{}{EVENTS_PATH}?after={after}&limit={limit}&wait={}", self.base, wait.as_secs());
        if let Some(mark) = blobs {
            url.push_str(&format!("&blobs_epoch={}&blobs_after={}", mark.epoch, mark.through));
        }
        let resp = self
            .agent
            .get(&url)
            .set("Authorization", &self.auth())
            .timeout(wait + Duration::from_secs(30))
            .call()
            .map_err(|e| failure(&url, "the primary georeg", e))?;
        serde_json::from_reader(resp.into_reader().take(MAX_PAGE_BYTES)).map_err(|e| {
            format!(
                "GET {url} answered something that is not georeg's event log ({e}): \
                 replication.primary_node_url must be the primary georeg (role = \"primary\"), not a registry"
            )
        })
    }

    /// The pages of the primary's fingerprints; `None` from a primary
    /// georeg too old to serve them.
    pub fn fingerprints(&self) -> Result<Option<Fingerprints>, String> {
        let url = format!("{}{FINGERPRINTS_PATH}", self.base);
        self.get_json(&url).map(Some).or_else(|e| if e.contains(" answered 404") { Ok(None) } else { Err(e) })
    }

    /// The entries of the page `first..=last`.
    pub fn fingerprints_in(&self, first: &str, last: &str) -> Result<Vec<FingerprintEntry>, String> {
        // Repository names need no escaping in a query (the name grammar).
        let url = format!("{}{FINGERPRINTS_PATH}?first={first}&last={last}", self.base);
        self.get_json::<FingerprintEntries>(&url).map(|e| e.entries)
    }

    fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, String> {
        let resp = self
            .agent
            .get(url)
            .set("Authorization", &self.auth())
            .timeout(Duration::from_secs(60))
            .call()
            .map_err(|e| failure(url, "the primary georeg", e))?;
        serde_json::from_reader(resp.into_reader().take(MAX_PAGE_BYTES))
            .map_err(|e| format!("GET {url} answered something that is not georeg's ({e})"))
    }

    /// Posts this node's status (JSON) to the primary's dashboard.
    pub fn report(&self, status: &impl Serialize) -> Result<(), String> {
        let url = format!("{}{NODE_STATUS_PATH}", self.base);
        let body = serde_json::to_vec(status).map_err(|e| e.to_string())?;
        self.agent
            .post(&url)
            .set("Authorization", &self.auth())
            .set("Content-Type", "application/json")
            .send_bytes(&body)
            .map_err(|e| failure(&url, "the primary georeg (status report)", e))?;
        Ok(())
    }
}

/// A failed call in words, with what to check.
fn failure(url: &str, what: &str, e: ureq::Error) -> String {
    match e {
        ureq::Error::Status(code, r) => {
            let body = r.into_string().unwrap_or_default();
            let hint = match code {
                401 => " (both nodes must use the same gitlab-registry.key and registry.issuer)",
                404 => " (replication.primary_node_url must be the primary georeg, role = \"primary\")",
                _ => "",
            };
            format!("{what} at {url} answered {code}: {}{hint}", body.trim())
        }
        ureq::Error::Transport(t) => {
            format!("cannot reach {what} at {url}: {}", crate::registry::transport_message(&t))
        }
    }
}
