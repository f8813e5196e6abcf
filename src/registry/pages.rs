//! Paginated answers (`_catalog`, `tags/list`) read page by page, loop-proof
//! and bounded: a `Link` to a page already read, one whose `last` does not
//! move forward, a page larger than asked for, or more pages than the
//! bound is an error naming the registry and the URL, never a loop. Tag
//! lists are parsed as they arrive, counting, so that a repository of more
//! tags than `replication.max_tags` fails without holding them.

use std::collections::HashSet;
use std::fmt;
use std::io::{BufReader, Read};

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::error::{Error, Result};

/// The most pages one listing may take.
pub const MAX_PAGES: usize = 100_000;

/// The pages of one listing read so far.
pub struct Pager {
    /// The URL of every page asked for.
    seen: HashSet<String>,
    /// The `last` of the page before.
    last: Option<String>,
    what: &'static str,
}

impl Pager {
    pub fn new(what: &'static str) -> Pager {
        Pager { seen: HashSet::new(), last: None, what }
    }

    /// Checks the next page's URL before it is asked for.
    pub fn next(&mut self, url: &str) -> Result<()> {
        let refuse = |message: String| Error::Registry {
            request: format!("GET {url}"),
            status: 200,
            code: String::new(),
            message: format!("{message}; the {} is not read further (a broken or hostile registry)", self.what),
        };
        if self.seen.len() >= MAX_PAGES {
            return Err(refuse(format!("more than {MAX_PAGES} pages")));
        }
        if !self.seen.insert(url.to_string()) {
            return Err(refuse("its Link header points to a page already read".into()));
        }
        let last = query_value(url, "last");
        if let (Some(before), Some(now)) = (&self.last, &last) {
            if now <= before {
                return Err(refuse(format!("its Link header goes backwards (last={now:?} after last={before:?})")));
            }
        }
        if last.is_some() {
            self.last = last;
        }
        Ok(())
    }
}

/// A query parameter's value, percent-decoded.
fn query_value(url: &str, key: &str) -> Option<String> {
    let (_, query) = url.split_once('?')?;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses one `tags/list` page from `body`, appending its tags to `tags`;
/// an error once `tags` would hold more than `cap`.
pub fn read_tags(body: impl Read, tags: &mut Vec<String>, cap: usize) -> std::result::Result<(), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_reader(BufReader::new(body));
    TagPage { tags, cap }.deserialize(&mut de)?;
    de.end()
}

/// The message a tag list over the cap fails with.
pub const OVER_CAP: &str = "more tags than replication.max_tags";

struct TagPage<'a> {
    tags: &'a mut Vec<String>,
    cap: usize,
}

impl<'de> DeserializeSeed<'de> for TagPage<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TagPage<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a tag list ({\"name\": ..., \"tags\": [...]})")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        let TagPage { tags, cap } = self;
        while let Some(key) = map.next_key::<String>()? {
            if key == "tags" {
                map.next_value_seed(TagArray { tags: &mut *tags, cap })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// `"tags": null` or `"tags": [...]`.
struct TagArray<'a> {
    tags: &'a mut Vec<String>,
    cap: usize,
}

impl<'de> DeserializeSeed<'de> for TagArray<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for TagArray<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of tags or null")
    }
    fn visit_none<E: de::Error>(self) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_seq(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        while let Some(tag) = seq.next_element::<String>()? {
            if self.tags.len() >= self.cap {
                return Err(de::Error::custom(format!("{OVER_CAP} ({})", self.cap)));
            }
            self.tags.push(tag);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_read_twice_or_backwards_is_refused() {
        let mut p = Pager::new("tag list");
        p.next("http://r/v2/a/tags/list").unwrap();
        p.next("http://r/v2/a/tags/list?last=b&n=2").unwrap();
        p.next("http://r/v2/a/tags/list?n=2&last=d").unwrap();
        let again = p.next("http://r/v2/a/tags/list?last=b&n=2").unwrap_err().to_string();
        assert!(again.contains("already read") && again.contains("http://r/v2/a/tags/list?last=b"), "{again}");
        let back = p.next("http://r/v2/a/tags/list?last=c&n=3").unwrap_err().to_string();
        assert!(back.contains("goes backwards"), "{back}");
        assert_eq!(query_value("http://r/x?last=a%2Fb", "last").as_deref(), Some("a/b"));
    }

    #[test]
    fn tags_are_read_up_to_the_cap() {
        let mut tags = Vec::new();
        read_tags(&br#"{"name":"a","tags":["v1","v2"],"extra":{"x":[1]}}"#[..], &mut tags, 10).unwrap();
        read_tags(&br#"{"name":"a","tags":null}"#[..], &mut tags, 10).unwrap();
        assert_eq!(tags, ["v1", "v2"]);
        let e = read_tags(&br#"{"tags":["a","b","c"]}"#[..], &mut tags, 3).unwrap_err();
        assert!(e.to_string().contains(OVER_CAP), "{e}");
        assert!(read_tags(&br#"{"tags":["a"]} trailing"#[..], &mut Vec::new(), 3).is_err());
    }
}
