//! The name grammar of the registry API: what distribution accepts as a
//! repository name or a tag. Everything that arrives from outside (events,
//! catalogs, tag lists, forms) is checked against it before georeg stores
//! or requests it.

/// Repository names as distribution accepts them: path components
/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*` joined by `/`, at most 255
/// characters in all.
pub fn valid_repository(name: &str) -> bool {
    !name.is_empty() && name.len() <= 255 && name.split('/').all(valid_component)
}

/// One path component: alphanumeric runs joined by one separator each,
/// where a separator is `.`, `_`, `__` or any number of `-`.
fn valid_component(component: &str) -> bool {
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let b = component.as_bytes();
    let mut i = 0;
    loop {
        let run = b[i..].iter().take_while(|c| alnum(c)).count();
        if run == 0 {
            return false; // empty, or a separator where a run must be
        }
        i += run;
        if i == b.len() {
            return true;
        }
        let sep = &b[i..];
        let len = match sep {
            [b'_', b'_', ..] => 2,
            [b'.' | b'_', ..] => 1,
            [b'-', ..] => sep.iter().take_while(|c| **c == b'-').count(),
            _ => return false,
        };
        i += len;
    }
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
        for good in ["app", "group/app", "a.b/c_d/e-f", "a__b", "x9", "a--b", "a---b-c.d_e__f"] {
            assert!(valid_repository(good), "{good}");
        }
        assert!(valid_repository(&"a".repeat(255)) && !valid_repository(&"a".repeat(256)));
        for bad in [
            "",
            "App",
            "group//app",
            "/app",
            "app/",
            "-a",
            "a b",
            "a?b",
            "../x",
            "a..b",
            "a._b",
            "a___b",
            "a-.b",
            "a_",
            "a.-b",
        ] {
            assert!(!valid_repository(bad), "{bad}");
        }
        assert!(valid_tag("v1.0-rc_1"));
        assert!(valid_tag("_x"));
        assert!(!valid_tag(".x") && !valid_tag("") && !valid_tag("a/b") && !valid_tag(&"a".repeat(129)));
    }
}
