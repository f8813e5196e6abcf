//! Text made safe for georeg's pages: HTML escaping for anything shown,
//! percent-encoding for values put into links.

/// `s` as HTML text or an attribute value.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a query parameter value.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A time from the state file as people read it, relative to now (`5 min
/// ago`, `in 3 h`), the exact UTC time on hover; `none` when there is none.
pub fn when(at: Option<&str>, none: &str) -> String {
    let Some(at) = at.filter(|a| !a.is_empty()) else { return escape(none) };
    let Some(then) = crate::format::unix_seconds(at) else { return escape(at) };
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(then);
    let relative = if then > now {
        format!("in {}", crate::format::human_age(then - now))
    } else {
        format!("{} ago", crate::format::human_age(now - then))
    };
    format!("<span title=\"{} UTC\">{relative}</span>", escape(at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(escape("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
        assert_eq!(encode("a b&c/d"), "a%20b%26c/d");
    }
}
