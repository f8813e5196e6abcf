//! What an interrupted export left in `FILE.partial`: the entries that
//! are there whole, each checked, so that the export run again keeps
//! them instead of reading them from the primary a second time.
//!
//! A tar is append-only: entries are written one after another, and a
//! `kill -9`, a lost connection or a power cut leaves the file ending
//! inside one of them (or, after a power cut, with blocks the kernel never
//! wrote). So the file is read from its start, header by header, and an
//! entry counts only when its header's checksum holds, it names a file an
//! export writes (`oci-layout` or `blobs/sha256/HEX`), its bytes are all
//! there and hash to the digest its name says. The first entry that fails
//! ends the prefix: everything from its header on is written again.
//! `index.json` and `georeg-bundle.json` are never kept: they come last and
//! are cheap to write.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use sha2::{Digest as _, Sha256};

use super::contents::{blob_path, LAYOUT};
use crate::registry::{encoding, Digest};

/// The contents of `oci-layout`, the one entry not named by its digest.
pub const LAYOUT_CONTENT: &[u8] = b"{\"imageLayoutVersion\":\"1.0.0\"}";

/// One whole entry of the partial file.
#[derive(Clone)]
pub struct Kept {
    pub path: String,
    pub size: u64,
    /// Where its header begins and where the next one would.
    pub start: u64,
    pub end: u64,
    /// The SHA-256 of the file's bytes up to `end`: where the bundle's own
    /// checksum goes on when the export writes again from there.
    pub hash: Sha256,
}

/// The whole entries at the start of the tar at `path`, in order, written
/// with `mtime` (an export of the same time); an error only when the file
/// cannot be read at all.
pub fn scan(path: &Path, mtime: u64) -> io::Result<Vec<Kept>> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut whole = Sha256::new();
    let (mut at, mut kept) = (0u64, Vec::new());
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let mut block = [0u8; 512];
        if at + 512 > len || r.read_exact(&mut block).is_err() || block.iter().all(|&b| b == 0) {
            break;
        }
        let Some((path, size)) = entry_of(&block, mtime) else { break };
        let padded = size.div_ceil(512) * 512;
        if at.saturating_add(512).saturating_add(padded) > len {
            break;
        }
        whole.update(block);
        let mut own = Sha256::new();
        let mut left = padded;
        let mut content = size;
        while left > 0 {
            let n = (left as usize).min(buf.len());
            if r.read_exact(&mut buf[..n]).is_err() {
                return Ok(kept);
            }
            let body = (content as usize).min(n);
            own.update(&buf[..body]);
            whole.update(&buf[..n]);
            (left, content) = (left - n as u64, content - body as u64);
        }
        let digest = format!("sha256:{}", encoding::hex(&own.finalize()));
        let wanted = match path.as_str() {
            LAYOUT => Digest::sha256_of(LAYOUT_CONTENT).to_string(),
            _ => format!("sha256:{}", path.trim_start_matches("blobs/sha256/")),
        };
        if digest != wanted {
            break; // cut short and padded with zeros, or not written at all
        }
        let end = at + 512 + padded;
        kept.push(Kept { path, size, start: at, end, hash: whole.clone() });
        at = end;
    }
    Ok(kept)
}

/// The path and size a header gives, when its checksum holds and it is a
/// file an export writes.
fn entry_of(block: &[u8; 512], mtime: u64) -> Option<(String, u64)> {
    let header = tar::Header::from_byte_slice(block);
    let stored = header.cksum().ok()?;
    let sum: u32 =
        block.iter().enumerate().map(|(i, &b)| if (148..156).contains(&i) { 32 } else { u32::from(b) }).sum();
    if stored != sum || header.entry_type() != tar::EntryType::Regular || header.mtime().ok()? != mtime {
        return None;
    }
    let path = header.path().ok()?.to_str()?.to_string();
    let named = path == LAYOUT
        || path
            .strip_prefix("blobs/sha256/")
            .and_then(|hex| Digest::parse(&format!("sha256:{hex}")).ok())
            .is_some_and(|d| blob_path(&d) == path);
    if !named {
        return None;
    }
    Some((path, header.size().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(0);
            b.append_data(&mut h, path, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn whole_checked_entries_are_kept_and_the_first_torn_one_ends_them() {
        let blob = vec![7u8; 3000];
        let name = blob_path(&Digest::sha256_of(&blob));
        let bytes = tar_of(&[(LAYOUT, LAYOUT_CONTENT), (&name, &blob), ("index.json", b"{}")]);
        let dir = std::env::temp_dir().join(format!("georeg-prefix-{}", crate::registry::token::random_hex(6)));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("b.tar.partial");
        std::fs::write(&path, &bytes).unwrap();
        let kept = scan(&path, 0).unwrap();
        // index.json is never kept; the two before it are.
        assert_eq!(kept.iter().map(|k| k.path.as_str()).collect::<Vec<_>>(), [LAYOUT, name.as_str()]);
        assert_eq!(kept[1].end, 512 + 512 + 512 + 3072);
        let upto = Sha256::digest(&bytes[..kept[1].end as usize]);
        assert_eq!(kept[1].hash.clone().finalize(), upto, "the checksum up to the entry's end");

        // Cut inside the blob: only the layout is kept.
        std::fs::write(&path, &bytes[..2000]).unwrap();
        assert_eq!(scan(&path, 0).unwrap().len(), 1);
        // The blob's bytes zeroed (a power cut): not kept either.
        let mut zeroed = bytes.clone();
        zeroed[1100..1200].fill(0);
        std::fs::write(&path, &zeroed).unwrap();
        assert_eq!(scan(&path, 0).unwrap().len(), 1);
        // A header whose checksum fails ends the prefix at once.
        let mut bad = bytes.clone();
        bad[0] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        assert!(scan(&path, 0).unwrap().is_empty());
        // Written at another time (another export): not kept.
        std::fs::write(&path, &bytes).unwrap();
        assert!(scan(&path, 1).unwrap().is_empty());
        // A blob named by another digest than its bytes'.
        let other = blob_path(&Digest::sha256_of(b"other"));
        std::fs::write(&path, tar_of(&[(LAYOUT, LAYOUT_CONTENT), (&other, &blob)])).unwrap();
        assert_eq!(scan(&path, 0).unwrap().len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
