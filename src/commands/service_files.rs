//! The files the packaged service must own and read: who the service user
//! is, whether it may read a file, and handing a file created as root to
//! the owner of its directory (the service user, for /var/lib/georeg).

use std::fs::Metadata;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// The user the packaged service runs as.
pub const SERVICE_USER: &str = "georeg";

/// A state file this check created as root would lock out the service's
/// own user: hand it to whoever owns its directory (the service user for
/// /var/lib/georeg). Without root this changes nothing, and needs nothing.
pub fn give_to_directory_owner(path: &Path) {
    let Some(dir) = path.parent().and_then(|d| std::fs::metadata(d).ok()) else {
        return;
    };
    if let Ok(file) = std::fs::metadata(path) {
        if (file.uid(), file.gid()) != (dir.uid(), dir.gid()) {
            if let Err(e) = std::os::unix::fs::chown(path, Some(dir.uid()), Some(dir.gid())) {
                log::debug!("cannot hand {} to its directory's owner: {e}", path.display());
            }
        }
    }
}

/// The service user's uid and gid, when the package created it.
pub fn service_user() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        match fields.as_slice() {
            [name, _, uid, gid, ..] if *name == SERVICE_USER => Some((uid.parse().ok()?, gid.parse().ok()?)),
            _ => None,
        }
    })
}

/// Whether uid/gid may read the file, by its mode bits (supplementary
/// groups and ACLs aside).
pub fn readable(meta: &Metadata, uid: u32, gid: u32) -> bool {
    let mode = meta.permissions().mode();
    (meta.uid() == uid && mode & 0o400 != 0) || (meta.gid() == gid && mode & 0o040 != 0) || mode & 0o004 != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readability_follows_the_mode_bits() {
        let path = std::env::temp_dir().join(format!("georeg-check-test-{}", crate::registry::token::random_hex(8)));
        std::fs::write(&path, "x").unwrap();
        let set = |mode| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let meta = || std::fs::metadata(&path).unwrap();
        let (me, group) = (meta().uid(), meta().gid());
        set(0o600);
        assert!(readable(&meta(), me, group));
        assert!(!readable(&meta(), me + 1, group + 1));
        set(0o640);
        assert!(readable(&meta(), me + 1, group));
        set(0o604);
        assert!(readable(&meta(), me + 1, group + 1));
        std::fs::remove_file(&path).unwrap();
    }
}
