//! The client's tag listing: a repository's tags, paged by `Link` or by
//! `n`/`last`, loop-proof and bounded by `replication.max_tags`, and the
//! digests of the tags asked for.

use std::collections::BTreeMap;
use std::io::Read;

use super::bounded;
use super::client::Client;
use super::digest::Digest;
use super::http::{expect, link_next, registry_error, Body};
use super::names::valid_tag;
use super::pages::{self, Pager};
use crate::error::{Error, Result};

/// The most bytes of one tag in a tag list, with its quotes and comma
/// (a tag is at most 128 characters; escapes may double them).
const TAG_BYTES: u64 = 300;
/// The smallest tag list page, without a `Link`, that is taken for a
/// page of more (registries that page on their own use 50 or more).
const IMPLICIT_PAGE: usize = 50;

impl Client {
    /// The repository's tags, following `Link` pagination (distribution v3,
    /// GitLab), or `None` when the registry does not know the repository.
    /// Loop-proof and bounded (`pages`): more than `replication.max_tags`
    /// tags fail the repository.
    pub fn tags(&self, repo: &str) -> Result<Option<Vec<String>>> {
        let mut tags = Vec::new();
        let mut pager = Pager::new("tag list");
        let mut next = Some(format!("{}/v2/{repo}/tags/list", self.base));
        let mut first = true;
        // Whether `next` was made up from the last tag (no `Link` said).
        let mut guessed = false;
        let mut linked = false;
        while let Some(url) = next.take() {
            pager.next(&url)?;
            let resp = self.send("GET", &url, &self.repo_scopes(repo), &[], Body::Empty)?;
            if resp.status() == 404 && first {
                self.note_listing(resp);
                return Ok(None);
            }
            first = false;
            let resp = expect(resp, "GET", &url, &[200])?;
            next = link_next(resp.header("Link")).map(|l| self.resolve(&l));
            linked |= next.is_some();
            let before = tags.len();
            let cap = self.limits.max_tags;
            let max_bytes = (cap as u64).saturating_mul(TAG_BYTES).saturating_add(64 << 10);
            let declared = resp.header("Content-Length").and_then(|l| l.trim().parse().ok()).unwrap_or(max_bytes);
            let mut body =
                bounded::Bounded::whole(resp.into_reader(), self.limits, &self.stop, declared).take(max_bytes);
            // Each page on its own first: a registry that ignored `last`
            // sends every tag again, which is not more tags.
            let mut page = Vec::new();
            if let Err(e) = pages::read_tags(&mut body, &mut page, cap) {
                if body.limit() == 0 {
                    return Err(self.too_many_tags(repo, format!("a tag list page of more than {max_bytes} bytes")));
                }
                if e.is_io() {
                    return Err(bounded::error(e.into(), &url, "reading the tag list"));
                }
                if e.to_string().contains(pages::OVER_CAP) {
                    return Err(self.too_many_tags(repo, format!("more than {cap} tags")));
                }
                return Err(Error::Registry {
                    request: format!("GET {url}"),
                    status: 200,
                    code: String::new(),
                    message: format!("unexpected answer: {e}"),
                });
            }
            // A page that repeats what was read: the registry ignored
            // `last` (it had sent every tag at once).
            if guessed && page.first().is_some_and(|t| tags.contains(t)) {
                break;
            }
            if tags.len() + page.len() > cap {
                return Err(self.too_many_tags(repo, format!("more than {cap} tags")));
            }
            tags.append(&mut page);
            next = next.or_else(|| self.page_after(repo, &tags[before..], linked));
            guessed = !linked && next.is_some();
        }
        Ok(Some(tags))
    }

    /// The next page of a tag list that came without a `Link`: a page of
    /// at least `IMPLICIT_PAGE` tags may be one of a registry that pages
    /// by `n`/`last` and does not say so (the spec's `Link` is a SHOULD),
    /// so the tags after its last one are asked for.
    fn page_after(&self, repo: &str, page: &[String], linked: bool) -> Option<String> {
        if linked || page.len() < IMPLICIT_PAGE {
            return None;
        }
        let last = page.last()?;
        Some(format!("{}/v2/{repo}/tags/list?n={}&last={last}", self.base, page.len()))
    }

    /// A 404 to a tag list: NAME_UNKNOWN (the spec's answer for a
    /// repository it does not have), or a registry that lists no tags.
    fn note_listing(&self, resp: ureq::Response) {
        let Error::Registry { code, .. } = registry_error(resp, "GET", &self.base) else { return };
        if code.is_empty() && !self.unlisted.swap(true, std::sync::atomic::Ordering::Relaxed) {
            log::info!(
                "{} answers tag lists with a bare 404 (no NAME_UNKNOWN): it lists no tags, so georeg compares it by \
                 reading each tag the primary has; tags that exist only on it cannot be seen",
                self.base
            );
        }
    }

    /// The error for a repository of a primary that lists no tags: what
    /// it holds cannot be known, so nothing is taken for gone.
    pub fn unlisted(&self, repo: &str) -> Error {
        Error::Repository {
            repository: repo.to_string(),
            message: format!(
                "{} lists no tags (a bare 404 to tags/list; content discovery is optional in the OCI spec): georeg \
                 cannot know this repository's tags, only those its notifications name; nothing was removed",
                self.base
            ),
        }
    }

    /// False for a registry that lists no tags (known once it was asked).
    pub fn lists_tags(&self) -> bool {
        !self.unlisted.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Tag -> digest as [`Client::tag_digests`]; on a registry that lists
    /// no tags, of the `wanted` tags it holds, each read by name.
    pub fn tag_digests_among<'a>(
        &self,
        repo: &str,
        wanted: impl IntoIterator<Item = &'a String>,
    ) -> Result<BTreeMap<String, Digest>> {
        let listed = self.tag_digests(repo)?;
        if self.lists_tags() {
            return Ok(listed);
        }
        self.digests_of(repo, wanted)
    }

    /// Tag -> digest of those of `tags` the registry holds, each read by name.
    pub fn digests_of<'a>(
        &self,
        repo: &str,
        tags: impl IntoIterator<Item = &'a String>,
    ) -> Result<BTreeMap<String, Digest>> {
        let mut map = BTreeMap::new();
        for tag in tags {
            if let Some(d) = self.manifest_digest(repo, tag)? {
                map.insert(tag.clone(), d);
            }
        }
        Ok(map)
    }

    fn too_many_tags(&self, repo: &str, what: String) -> Error {
        Error::Repository {
            repository: repo.to_string(),
            message: format!(
                "{} lists {what}, more than replication.max_tags ({}) allows: not replicated; raise the cap if \
                 this repository really has that many tags",
                self.base, self.limits.max_tags
            ),
        }
    }

    /// A JSON answer of at most `max` bytes, read within its deadline.
    pub(super) fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        resp: ureq::Response,
        url: &str,
        max: u64,
        doing: &str,
    ) -> Result<T> {
        let body = bounded::read_whole(resp, self.limits, &self.stop, max, url, doing)?;
        serde_json::from_slice(&body).map_err(|e| Error::Registry {
            request: format!("GET {url}"),
            status: 200,
            code: String::new(),
            message: format!("unexpected answer: {e}"),
        })
    }

    /// Tag -> digest for the repository (empty when the registry does not
    /// know the repository). One HEAD per tag; a tag deleted between the
    /// listing and its HEAD is simply absent.
    pub fn tag_digests(&self, repo: &str) -> Result<BTreeMap<String, Digest>> {
        let mut map = BTreeMap::new();
        for tag in self.valid_tags(repo)? {
            if let Some(d) = self.manifest_digest(repo, &tag)? {
                map.insert(tag, d);
            }
        }
        Ok(map)
    }

    /// The repository's tags (none when it does not know the repository),
    /// leaving out names no registry should hold, logged.
    pub fn valid_tags(&self, repo: &str) -> Result<Vec<String>> {
        let mut tags = self.tags(repo)?.unwrap_or_default();
        tags.retain(|tag| {
            let valid = valid_tag(tag);
            if !valid {
                log::warn!("{repo}: skipping tag {tag:?} from {}: not a valid tag name", self.base);
            }
            valid
        });
        Ok(tags)
    }
}
