//! Reading `georeg-bundle.json` item by item: a pass hands each
//! repository, deletion and file of the description to a callback as the
//! JSON parser reaches it, and returns the [`Header`] (everything else).
//! Nothing holds every repository at once, so what an import or a
//! verification keeps in memory does not grow with how many repositories
//! a bundle names; a pass is cheap enough to run again when the list is
//! needed again (the description is a private copy, see `reader`).

use std::fmt;
use std::io::Read;

use serde::de::{DeserializeSeed, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::contents::{Header, Item};
use crate::error::{Error, Result};

/// Reads the description from `r`, handing `each` every item. The outer
/// error is the first one `each` returned; the inner one says why the
/// JSON is not a description.
pub fn read(r: impl Read, each: &mut dyn FnMut(Item) -> Result<()>) -> Result<std::result::Result<Header, String>> {
    let mut pass = Pass { each, failure: None };
    let mut de = serde_json::Deserializer::from_reader(std::io::BufReader::with_capacity(256 << 10, r));
    let header = (&mut pass).deserialize(&mut de).and_then(|h| de.end().map(|()| h));
    match (header, pass.failure) {
        (_, Some(e)) => Err(e),
        (Ok(h), None) => Ok(Ok(h)),
        (Err(e), None) => Ok(Err(format!("is not a georeg bundle description: {e}"))),
    }
}

struct Pass<'a> {
    each: &'a mut dyn FnMut(Item) -> Result<()>,
    /// What `each` returned, which stopped the parser.
    failure: Option<Error>,
}

impl<'de> DeserializeSeed<'de> for &mut Pass<'_> {
    type Value = Header;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Header, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for &mut Pass<'_> {
    type Value = Header;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a georeg bundle description")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Header, A::Error> {
        let (mut format, mut id, mut primary, mut created_at, mut georeg_version, mut inventory) =
            (None, None, None, None, None, None);
        while let Some(key) = map.next_key::<std::borrow::Cow<str>>()? {
            match &*key {
                "format" => format = Some(map.next_value()?),
                "id" => id = Some(map.next_value()?),
                "primary" => primary = Some(map.next_value()?),
                "created_at" => created_at = Some(map.next_value()?),
                "georeg_version" => georeg_version = Some(map.next_value()?),
                "inventory" => inventory = Some(map.next_value()?),
                "repositories" => map.next_value_seed(Each { pass: &mut *self, wrap: Item::Repository })?,
                "deletions" => map.next_value_seed(Each { pass: &mut *self, wrap: Item::Deletion })?,
                "files" => map.next_value_seed(Each { pass: &mut *self, wrap: Item::File })?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Header {
            format: format.ok_or_else(|| A::Error::missing_field("format"))?,
            id: id.ok_or_else(|| A::Error::missing_field("id"))?,
            primary: primary.ok_or_else(|| A::Error::missing_field("primary"))?,
            created_at: created_at.ok_or_else(|| A::Error::missing_field("created_at"))?,
            georeg_version: georeg_version.unwrap_or_default(),
            inventory: inventory.ok_or_else(|| A::Error::missing_field("inventory"))?,
        })
    }
}

/// One of the lists, each element handed on as it is parsed.
struct Each<'p, 'a, T> {
    pass: &'p mut Pass<'a>,
    wrap: fn(T) -> Item,
}

impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for Each<'_, '_, T> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for Each<'_, '_, T> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        while let Some(item) = seq.next_element::<T>()? {
            if let Err(e) = (self.pass.each)((self.wrap)(item)) {
                let message = e.to_string();
                self.pass.failure = Some(e);
                return Err(A::Error::custom(message));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_hands_on_every_item_and_returns_the_rest() {
        let c = crate::bundle::contents::tests::contents();
        let bytes = serde_json::to_vec_pretty(&c).unwrap();
        let mut items = Vec::new();
        let header = read(&bytes[..], &mut |item| {
            items.push(item);
            Ok(())
        })
        .unwrap()
        .unwrap();
        assert_eq!(header, c.header());
        let want: Vec<Item> = c
            .repositories
            .iter()
            .cloned()
            .map(Item::Repository)
            .chain(c.deletions.iter().cloned().map(Item::Deletion))
            .chain(c.files.iter().cloned().map(Item::File))
            .collect();
        assert_eq!(items, want);

        // The callback's error stops the pass, and is the one returned.
        let stopped = read(&bytes[..], &mut |_| Err(Error::Usage("enough".into())));
        assert!(matches!(stopped, Err(Error::Usage(m)) if m == "enough"));
        let why = read(&b"{\"format\": 1}"[..], &mut |_| Ok(())).unwrap().unwrap_err();
        assert!(why.contains("not a georeg bundle description"), "{why}");
        let why = read(&bytes[..bytes.len() - 2], &mut |_| Ok(())).unwrap().unwrap_err();
        assert!(why.contains("EOF"), "{why}");
    }
}
