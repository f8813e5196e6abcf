//! Selective sync: which repositories a secondary replicates, by glob
//! patterns on repository names, like Geo's selective sync by group.
//!
//! `*` matches within one path component, `**` across components:
//! `group/*` is every repository directly in `group`, `group/**` everything
//! below it at any depth.

/// `replication.include` and `replication.exclude`, ready to match.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    include: Vec<String>,
    exclude: Vec<String>,
}

impl Selection {
    pub fn new(include: &[String], exclude: &[String]) -> Selection {
        Selection { include: include.to_vec(), exclude: exclude.to_vec() }
    }

    /// The selection as an operator wrote it, for the dashboard: `every
    /// repository`, or its include and exclude patterns.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.include.is_empty() {
            parts.push(format!("include {}", self.include.join(", ")));
        }
        if !self.exclude.is_empty() {
            parts.push(format!("exclude {}", self.exclude.join(", ")));
        }
        if parts.is_empty() {
            "every repository".into()
        } else {
            parts.join("; ")
        }
    }

    /// True when the repository is replicated: it matches an include
    /// pattern (or there are none) and no exclude pattern.
    pub fn includes(&self, repository: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|p| glob_match(p, repository)))
            && !self.exclude.iter().any(|p| glob_match(p, repository))
    }
}

/// Checks a pattern for characters no repository name can contain, so a
/// typo is reported at startup rather than silently matching nothing.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("an empty pattern matches nothing".into());
    }
    if let Some(c) = pattern.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/*".contains(*c))) {
        return Err(format!("{pattern:?} contains {c:?}, which no repository name has (names are lowercase)"));
    }
    Ok(())
}

/// Matches `name` against `pattern` (`*` within a component, `**` across).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    matches(p, n)
}

fn matches(p: &[u8], n: &[u8]) -> bool {
    match p.first() {
        None => n.is_empty(),
        Some(b'*') if p.get(1) == Some(&b'*') => {
            let rest = &p[2..];
            // `**/` may also match nothing at all: `a/**/b` matches `a/b`.
            if rest.first() == Some(&b'/') && matches(&rest[1..], n) {
                return true;
            }
            (0..=n.len()).any(|i| matches(rest, &n[i..]))
        }
        Some(b'*') => {
            let rest = &p[1..];
            let mut i = 0;
            loop {
                if matches(rest, &n[i..]) {
                    return true;
                }
                if i == n.len() || n[i] == b'/' {
                    return false;
                }
                i += 1;
            }
        }
        Some(&c) => n.first() == Some(&c) && matches(&p[1..], &n[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_star_stays_within_a_component() {
        assert!(glob_match("group/*", "group/app"));
        assert!(!glob_match("group/*", "group/sub/app"));
        assert!(!glob_match("group/*", "group"));
        assert!(glob_match("group/app-*", "group/app-web"));
        assert!(glob_match("*", "app"));
        assert!(!glob_match("*", "group/app"));
    }

    #[test]
    fn double_star_crosses_components() {
        assert!(glob_match("group/**", "group/app"));
        assert!(glob_match("group/**", "group/sub/app"));
        assert!(!glob_match("group/**", "group"));
        assert!(!glob_match("group/**", "groupie/app"));
        assert!(glob_match("**/cache", "a/b/cache"));
        assert!(glob_match("a/**/b", "a/b"));
        assert!(glob_match("a/**/b", "a/x/y/b"));
        assert!(glob_match("**", "anything/at/all"));
    }

    #[test]
    fn include_then_exclude() {
        let s = Selection::new(&["team/**".into()], &["team/secret/*".into()]);
        assert!(s.includes("team/app"));
        assert!(s.includes("team/b/c"));
        assert!(!s.includes("team/secret/x"));
        assert!(!s.includes("other/y"));
        assert!(Selection::default().includes("x"));
        assert!(Selection::new(&[], &["tmp/**".into()]).includes("app"));
    }

    #[test]
    fn patterns_are_checked() {
        assert!(check_pattern("group/**").is_ok());
        assert!(check_pattern("Group/*").is_err());
        assert!(check_pattern("").is_err());
    }
}
