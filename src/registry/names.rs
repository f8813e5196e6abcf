//! The name grammar of the registry API: what distribution accepts as a
//! repository name or a tag. Everything that arrives from outside (events,
//! catalogs, tag lists, forms) is checked against it before georeg stores
//! or requests it.

/// Repository names as distribution accepts them: lowercase path components
/// of `[a-z0-9]` separated by `.`, `_`, `__` or `-`, joined by `/`.
pub fn valid_repository(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name.split('/').all(|component| {
            let b = component.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-'))
        })
}

/// Tags as distribution accepts them: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_validation() {
        for good in ["app", "group/app", "a.b/c_d/e-f", "a__b", "x9"] {
            assert!(valid_repository(good), "{good}");
        }
        for bad in ["", "App", "group//app", "/app", "app/", "-a", "a b", "a?b", "../x"] {
            assert!(!valid_repository(bad), "{bad}");
        }
        assert!(valid_tag("v1.0-rc_1"));
        assert!(valid_tag("_x"));
        assert!(!valid_tag(".x") && !valid_tag("") && !valid_tag("a/b") && !valid_tag(&"a".repeat(129)));
    }
}
