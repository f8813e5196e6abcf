//! Transfer bundles: replication across an air gap. A secondary that no
//! network path joins to the primary is kept identical by carrying files:
//!
//! 1. `georeg inventory` on the secondary writes what its registry holds
//!    (`inventory`), signed with the key pair all nodes share;
//! 2. `georeg export` on a host that reaches the primary writes one tar
//!    file (`tarfile`): an OCI image layout (`oci-layout`, `index.json`,
//!    `blobs/sha256/...`) plus `georeg-bundle.json`, which says what the
//!    secondary must hold afterwards ([`Contents`], in `contents`); with an inventory,
//!    only what the secondary lacks travels (`export`);
//! 3. `georeg import` on the secondary applies it with the copy engine
//!    (`replication::import`), reading blobs and manifests from the tar
//!    (`tarfile::Bundle` is a `replication::source::Source`);
//! 4. `georeg verify --bundle` proves the secondary holds what it says.
//!
//! `georeg export --inventory FILE --dry-run` says what the secondary
//! lacks without writing a bundle (`lacks`).
//!
//! Documents that cross the gap carry a signature (`signed`): the shared
//! key vouches that they were written by a georeg node of this
//! deployment, and is checked over their bytes before any is parsed;
//! every file inside a bundle is named by its digest and checked against
//! it as it is read. What the medium carries is bounded before it is
//! trusted: an import reads a description of at most
//! `reader::MAX_DESCRIPTION_BYTES`, one repository at a time
//! (`description`).

pub mod contents;
pub mod description;
pub mod export;
pub mod inventory;
pub mod lacks;
pub mod prefix;
pub mod reader;
mod referrers;
pub mod resume;
pub mod signed;
pub mod tarfile;

#[cfg(test)]
mod tests;

pub use contents::{now_text, refusal, same_url, Contents, Item};
