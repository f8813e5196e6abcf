//! Numbers as people read them, in log lines, pages and reports: sizes,
//! ages, percentages. Pure text, no dependency on the rest of georeg, so
//! every layer may use it.

/// Bytes as people read them: `999 B`, `1.5 MB`, `200.0 MB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A duration as people read it: `45 s`, `12 min`, `3 h`, `2 d`.
pub fn human_age(seconds: i64) -> String {
    match seconds {
        s if s < 120 => format!("{s} s"),
        s if s < 2 * 3600 => format!("{} min", s / 60),
        s if s < 2 * 86_400 => format!("{} h", s / 3600),
        s => format!("{} d", s / 86_400),
    }
}

/// Percent of `part` in `total`, 0 when there is nothing.
pub fn percent(part: i64, total: i64) -> f64 {
    if total <= 0 {
        0.0
    } else {
        part as f64 * 100.0 / total as f64
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ`, as the state file stores time, in Unix seconds.
pub fn unix_seconds(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 19 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| text.get(r).and_then(|t| t.parse::<i64>().ok());
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// `1 tag`, `2 tags`: a count with its noun in the right number.
pub fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A name from outside (a registry, an event, a bundle) as it may be
/// printed: control characters and the Unicode bidirectional controls are
/// shown escaped (`\u{1b}`, `\u{202e}`), so that a hostile name cannot
/// rewrite a terminal, forge a log line, or show text in another order
/// than the bytes it is made of.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if text.chars().any(unprintable) {
        std::borrow::Cow::Owned(
            text.chars()
                .flat_map(|c| if unprintable(c) { c.escape_default().collect::<Vec<_>>() } else { vec![c] })
                .collect(),
        )
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// Control characters, and the bidirectional controls (embeddings,
/// overrides, isolates and marks) that reorder what a terminal shows.
fn unprintable(c: char) -> bool {
    c.is_control() || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_takes_the_noun_in_its_number() {
        assert_eq!(count(1, "tag", "tags"), "1 tag");
        assert_eq!(count(0, "tag", "tags"), "0 tags");
        assert_eq!(count(3, "repository", "repositories"), "3 repositories");
    }

    #[test]
    fn human_bytes_formats() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1_500_000), "1.5 MB");
        assert_eq!(human_bytes(200_000_000), "200.0 MB");
    }

    #[test]
    fn human_age_picks_the_unit() {
        assert_eq!(
            (human_age(59), human_age(600), human_age(3 * 86_400)),
            ("59 s".into(), "10 min".into(), "3 d".into())
        );
    }

    #[test]
    fn printable_escapes_controls_and_bidi_overrides() {
        assert_eq!(printable("group/app:v1"), "group/app:v1");
        assert!(matches!(printable("a/b"), std::borrow::Cow::Borrowed(_)));
        assert_eq!(printable("a\u{1b}[2Jb\nc"), "a\\u{1b}[2Jb\\nc");
        assert_eq!(printable("evil\u{202e}gpj.exe"), "evil\\u{202e}gpj.exe");
        for c in ['\u{200e}', '\u{200f}', '\u{202a}', '\u{2066}', '\u{2069}', '\u{7f}', '\u{9b}'] {
            assert!(!printable(&format!("x{c}y")).contains(c), "{c:?} left raw");
        }
        assert_eq!(printable("café ✓"), "café ✓", "other text stays as it is");
    }

    #[test]
    fn percent_of_nothing_is_zero() {
        assert_eq!((percent(3, 4), percent(0, 0), percent(1, -1)), (75.0, 0.0, 0.0));
    }
}
