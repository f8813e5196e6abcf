//! The layout of `src/`, checked: in the file-level import graph, read
//! from the source text at test time, no two files import each other, and
//! the lower layers import nothing above them (see [`LAYERS`]).
//!
//! A file imports another when it declares it (`mod x;`) or when one of
//! its paths (`use crate::..`, `use super::..`, `use self::..`, a `use` of
//! a child module, or such a path inline: `crate::format::human_bytes(n)`)
//! names something in the other's module. A path names the deepest module
//! it goes through: `use crate::store::Store` names `store/mod.rs`, even
//! though `Store` may be defined in a child. So a child that imports from
//! `super` what its parent defines or re-exports, while the parent declares
//! the child, is a cycle: the shared item belongs in a sibling file.
//!
//! Test code is not part of the layout: `#[cfg(test)]` items (test
//! modules, inline or in files of their own) are skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layers, lowest first. A file in one of them imports only from its
/// own layer and the layers below; a module named in none is in the top
/// layer (replication, web, health, bundle, commands, peer, cli...), which
/// may import anything.
///
/// 0. `error`, `format`, `shutdown`, `tls`: leaves every layer uses.
/// 1. `registry`: the registry HTTP API. It knows nothing of georeg's
///    configuration or state file, so it can be tested and reused alone.
/// 2. `config`: the configuration file; its checks use the registry
///    layer's grammar (rates, names), never the other way round.
/// 3. `store`: the state file, which records what the configuration
///    selects (`config::selective`).
const LAYERS: &[&[&str]] = &[&["error", "format", "shutdown", "tls"], &["registry"], &["config"], &["store"]];

/// File pairs that import each other today and are left so for now, each
/// sorted, while their folders are reworked elsewhere. Empty this list as
/// they are fixed; the test fails on an entry that is no longer a cycle,
/// so it cannot go stale.
const ALLOWED_CYCLES: &[(&str, &str)] = &[];

/// Imports from a higher layer left so for now, as (importer, imported).
/// Same rule: the test fails on an entry that no longer holds.
const ALLOWED_LAYER_BREAKS: &[(&str, &str)] = &[];

#[test]
fn no_two_files_import_each_other_and_no_layer_imports_upwards() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = graph(&src);
    // The reading works: a few arrows that must be there.
    assert!(edges.len() > 100, "only {} imports found in {}", edges.len(), src.display());
    let known = [("lib.rs", "web/mod.rs"), ("web/server.rs", "web/dashboard.rs"), ("commands/mod.rs", "config/mod.rs")];
    for (a, b) in known {
        assert!(edges.contains(&(a.into(), b.into())), "the import graph misses {a} -> {b}");
    }

    let cycles: BTreeSet<(String, String)> =
        edges.iter().filter(|(a, b)| a < b && edges.contains(&(b.clone(), a.clone()))).cloned().collect();
    let breaks: BTreeSet<(String, String)> =
        edges.iter().filter(|(a, b)| layer(a) < LAYERS.len() && layer(b) > layer(a)).cloned().collect();

    let mut problems = Vec::new();
    for (a, b) in &cycles {
        if !ALLOWED_CYCLES.contains(&(a.as_str(), b.as_str())) {
            problems.push(format!(
                "{a} and {b} import each other: move what both need into a file both import \
                 (for a parent and its child: out of the parent, into a sibling of the child)"
            ));
        }
    }
    for (a, b) in &breaks {
        if !ALLOWED_LAYER_BREAKS.contains(&(a.as_str(), b.as_str())) {
            problems.push(format!("{a} imports {b}, from a higher layer (see LAYERS in {})", file!()));
        }
    }
    for (a, b) in ALLOWED_CYCLES {
        if !cycles.contains(&(a.to_string(), b.to_string())) {
            problems.push(format!("ALLOWED_CYCLES lists ({a}, {b}), which is no cycle now: remove it"));
        }
    }
    for (a, b) in ALLOWED_LAYER_BREAKS {
        if !breaks.contains(&(a.to_string(), b.to_string())) {
            problems.push(format!("ALLOWED_LAYER_BREAKS lists ({a}, {b}), which holds no more: remove it"));
        }
    }
    assert!(problems.is_empty(), "{} problems in the layout of src/:\n{}", problems.len(), problems.join("\n"));
}

/// The layer of a file (`registry/client.rs`, `format.rs`), by its top
/// module; `LAYERS.len()` for the top layer.
fn layer(file: &str) -> usize {
    let top = file.split('/').next().unwrap_or(file).trim_end_matches(".rs");
    LAYERS.iter().position(|names| names.contains(&top)).unwrap_or(LAYERS.len())
}

/// Every import between two files of `src/` (paths relative to it), from
/// `lib.rs` down through the modules it declares.
fn graph(src: &Path) -> BTreeSet<(String, String)> {
    let mut modules: BTreeMap<Vec<String>, String> = BTreeMap::new();
    let mut edges = BTreeSet::new();
    let mut refs = Vec::new();
    let mut queue = vec![(Vec::<String>::new(), "lib.rs".to_string())];
    while let Some((module, file)) = queue.pop() {
        let text = std::fs::read_to_string(src.join(&file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let found = scan(&text, &module);
        modules.insert(module.clone(), file.clone());
        for inline in found.inline {
            modules.insert(inline, file.clone());
        }
        // `lib.rs` and `mod.rs` keep their children beside them, `x.rs` in `x/`.
        let dir = match file.as_str() {
            "lib.rs" => String::new(),
            f => format!("{}/", f.strip_suffix("/mod.rs").unwrap_or(f.trim_end_matches(".rs"))),
        };
        for (inside, name) in found.children {
            let stem = format!("{dir}{}", inside.iter().chain([&name]).cloned().collect::<Vec<_>>().join("/"));
            let child = [format!("{stem}.rs"), format!("{stem}/mod.rs")]
                .into_iter()
                .find(|f| src.join(f).is_file())
                .unwrap_or_else(|| {
                    panic!("{file} declares `mod {name};` but neither {stem}.rs nor {stem}/mod.rs exists")
                });
            edges.insert((file.clone(), child.clone()));
            queue.push((module.iter().chain(&inside).chain([&name]).cloned().collect(), child));
        }
        refs.extend(found.refs.into_iter().map(|r| (file.clone(), r)));
    }
    for (file, r) in refs {
        let path = match r {
            Ref::Absolute(path) => path,
            // `use x::..` names a child module `x`, or else another crate.
            Ref::Bare(module, path) => {
                let child: Vec<String> = module.iter().chain(path.first()).cloned().collect();
                if !modules.contains_key(&child) {
                    continue;
                }
                module.into_iter().chain(path).collect()
            }
        };
        let target = (0..=path.len()).rev().find_map(|n| modules.get(&path[..n])).cloned();
        if let Some(target) = target.filter(|t| *t != file) {
            edges.insert((file, target));
        }
    }
    edges
}

/// A path in the source: from the crate root, or (`use x::..`) relative
/// to the module it is written in, where `x` may be another crate.
#[derive(Debug, PartialEq)]
enum Ref {
    Absolute(Vec<String>),
    Bare(Vec<String>, Vec<String>),
}

/// What one file says about modules and paths, test code left out.
#[derive(Default, Debug)]
struct Scan {
    /// `mod x;` declarations: the inline modules they sit in, and `x`.
    children: Vec<(Vec<String>, String)>,
    /// Inline modules (`mod x { .. }`), as absolute module paths.
    inline: Vec<Vec<String>>,
    refs: Vec<Ref>,
}

/// Reads a file of module `module` (`["web", "server"]`).
fn scan(text: &str, module: &[String]) -> Scan {
    let t = tokens(&strip(text));
    let mut found = Scan::default();
    // Inline modules around the current token, each with the brace depth
    // outside it.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    let mut test = false;
    let mut i = 0;
    while i < t.len() {
        let here: Vec<String> = module.iter().cloned().chain(inline.iter().map(|m| m.0.clone())).collect();
        let next = |n: usize| t.get(i + n).map(String::as_str).unwrap_or("");
        match t[i].as_str() {
            "#" => {
                let open = if next(1) == "!" { i + 2 } else { i + 1 };
                if t.get(open).map(String::as_str) != Some("[") {
                    i += 1;
                    continue;
                }
                let close = skip_group(&t, open);
                let cfg_test = t[open + 1..close - 1] == ["cfg", "(", "test", ")"];
                if cfg_test && open == i + 2 && inline.is_empty() {
                    return Scan::default(); // `#![cfg(test)]`: a test file.
                }
                test |= cfg_test;
                i = close;
            }
            _ if test => {
                i = skip_item(&t, i);
                test = false;
            }
            "{" => {
                depth += 1;
                i += 1;
            }
            "}" => {
                depth -= 1;
                if inline.last().is_some_and(|m| m.1 == depth) {
                    inline.pop();
                }
                i += 1;
            }
            "mod" if next(2) == ";" => {
                found.children.push((inline.iter().map(|m| m.0.clone()).collect(), next(1).to_string()));
                i += 3;
            }
            "mod" if next(2) == "{" => {
                found.inline.push(here.iter().cloned().chain([next(1).to_string()]).collect());
                inline.push((next(1).to_string(), depth));
                depth += 1;
                i += 3;
            }
            "use" | "crate" | "super" | "self" if t[i] == "use" || next(1) == "::" => {
                // `$crate::` is a macro's, `pub(in crate::x)` a visibility.
                let skip = i > 0 && (t[i - 1] == "$" || t[i - 1] == "in");
                let mut j = if t[i] == "use" { i + 1 } else { i };
                let mut paths = Vec::new();
                tree(&t, &mut j, Vec::new(), &mut paths);
                if !skip {
                    found.refs.extend(paths.into_iter().filter_map(|p| absolute(&here, p)));
                }
                i = j.max(i + 1);
            }
            _ => i += 1,
        }
    }
    found
}

/// Where a path written in module `here` points.
fn absolute(here: &[String], path: Vec<String>) -> Option<Ref> {
    let first = path.first()?.as_str();
    let rest = |skip: usize| path[skip..].iter().filter(|s| *s != "self").cloned();
    match first {
        "crate" => Some(Ref::Absolute(rest(1).collect())),
        "self" => Some(Ref::Absolute(here.iter().cloned().chain(rest(1)).collect())),
        "super" => {
            let up = path.iter().take_while(|s| *s == "super").count();
            let base = here.get(..here.len().checked_sub(up)?)?;
            Some(Ref::Absolute(base.iter().cloned().chain(rest(up)).collect()))
        }
        "::" => None,
        _ => Some(Ref::Bare(here.to_vec(), rest(0).collect())),
    }
}

/// Reads a use tree (or an inline path) from `t[*i]`, adding each full
/// path it names to `out`: `a::{b, c::*}` gives `a::b` and `a::c`.
fn tree(t: &[String], i: &mut usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    match t.get(*i).map(String::as_str) {
        Some("{") => {
            *i += 1;
            while *i < t.len() && t[*i] != "}" {
                let before = *i;
                tree(t, i, prefix.clone(), out);
                if t.get(*i).map(String::as_str) == Some(",") || *i == before {
                    *i += 1;
                }
            }
            *i += 1;
        }
        Some("*") => {
            *i += 1;
            out.push(prefix);
        }
        Some("::") if prefix.is_empty() => {
            *i += 1;
            out.push(vec!["::".into()]);
        }
        Some(word) if word.starts_with(|c: char| c.is_alphabetic() || c == '_') => {
            let mut path = prefix;
            path.push(word.to_string());
            *i += 1;
            match t.get(*i).map(String::as_str) {
                Some("::") => {
                    *i += 1;
                    tree(t, i, path, out);
                }
                Some("as") => {
                    *i += 2;
                    out.push(path);
                }
                _ => out.push(path),
            }
        }
        _ => out.push(prefix),
    }
}

/// The index after the group (`(..)`, `[..]`, `{..}`) opening at `t[open]`.
fn skip_group(t: &[String], open: usize) -> usize {
    let mut depth = 0;
    for (i, tok) in t.iter().enumerate().skip(open) {
        match tok.as_str() {
            "(" | "[" | "{" => depth += 1,
            ")" | "]" | "}" => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
    }
    t.len()
}

/// The index after the item starting at `t[i]`: through its `;`, its `,`
/// (a field), or its body's closing brace; not past its scope's end.
fn skip_item(t: &[String], mut i: usize) -> usize {
    while i < t.len() {
        match t[i].as_str() {
            ";" | "," => return i + 1,
            "}" | ")" | "]" => return i,
            "{" => return skip_group(t, i),
            "(" | "[" => i = skip_group(t, i),
            _ => i += 1,
        }
    }
    i
}

/// Identifiers, `::`, and single punctuation characters.
fn tokens(text: &str) -> Vec<String> {
    let word = |c: char| c.is_alphanumeric() || c == '_';
    let mut out: Vec<String> = Vec::new();
    let mut last = ' ';
    for c in text.chars() {
        match out.last_mut() {
            Some(t) if word(c) && word(last) => t.push(c),
            Some(t) if c == ':' && last == ':' && t == ":" => t.push(c),
            _ if !c.is_whitespace() => out.push(c.to_string()),
            _ => {}
        }
        last = c;
    }
    out
}

/// The source without comments, strings and character literals, whose
/// text could look like paths or braces.
fn strip(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let at = |i: usize, ch: char| c.get(i) == Some(&ch);
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < c.len() {
        let after_ident = i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_');
        if at(i, '/') && at(i + 1, '/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if at(i, '/') && at(i + 1, '*') {
            // Block comments nest.
            let mut nested = 0;
            while i < c.len() {
                if at(i, '/') && at(i + 1, '*') {
                    nested += 1;
                    i += 2;
                } else if at(i, '*') && at(i + 1, '/') {
                    nested -= 1;
                    i += 2;
                    if nested == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if !after_ident && (at(i, 'r') || (at(i, 'b') && at(i + 1, 'r'))) && raw_string_end(&c, i).is_some() {
            i = raw_string_end(&c, i).unwrap_or(c.len());
            out.push_str(" \"\" ");
        } else if at(i, '"') {
            i += 1;
            while i < c.len() && c[i] != '"' {
                i += if c[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str(" \"\" ");
        } else if at(i, '\'') && at(i + 1, '\\') {
            // An escaped character: '\n', '\'', '\u{..}'.
            i += 3;
            while i < c.len() && c[i] != '\'' {
                i += 1;
            }
            i += 1;
            out.push(' ');
        } else if at(i, '\'') && at(i + 2, '\'') {
            i += 3;
            out.push(' ');
        } else {
            // Anything else, a lifetime's quote included.
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// The index after a raw string (`r"..."`, `r#"..."#`, `br".."`) starting
/// at `c[i]`, if one does.
fn raw_string_end(c: &[char], i: usize) -> Option<usize> {
    let mut j = i + if c[i] == 'b' { 2 } else { 1 };
    let hashes = c[j..].iter().take_while(|ch| **ch == '#').count();
    j += hashes;
    if c.get(j) != Some(&'"') {
        return None;
    }
    j += 1;
    while j < c.len() {
        if c[j] == '"' && (1..=hashes).all(|k| c.get(j + k) == Some(&'#')) {
            return Some(j + 1 + hashes);
        }
        j += 1;
    }
    Some(c.len())
}

/// The reading itself, on a made-up file of module `web::server`.
#[test]
fn reads_paths_and_skips_comments_strings_and_tests() {
    let text = r##"
        //! Not a path: crate::doc::Comment.
        use std::io::Read;
        use super::{self, dashboard::{self as d, NODES}, App};
        pub use child::Thing;
        mod child;
        /* crate::block /* nested */ crate::comment */
        const S: &str = "crate::in_string::X";
        const R: &str = r#"super::raw"#;
        const C: char = '"';
        fn f<'a>(x: &'a str) -> String { crate::format::human_bytes(1) }
        pub(crate) fn g() {}
        pub(in crate::web) fn h() {}
        #[cfg(test)]
        use crate::test_only::A;
        #[cfg(test)]
        mod tests { use crate::in_tests::B; }
        mod inline { use super::super::sibling::C; }
    "##;
    let module = ["web".to_string(), "server".to_string()];
    let found = scan(text, &module);
    let path = |p: &str| p.split("::").map(str::to_string).collect::<Vec<_>>();
    assert_eq!(found.children, vec![(vec![], "child".to_string())]);
    assert_eq!(found.inline, vec![path("web::server::inline")]);
    assert_eq!(
        found.refs,
        vec![
            Ref::Bare(module.to_vec(), path("std::io::Read")),
            Ref::Absolute(path("web")),
            Ref::Absolute(path("web::dashboard")),
            Ref::Absolute(path("web::dashboard::NODES")),
            Ref::Absolute(path("web::App")),
            Ref::Bare(module.to_vec(), path("child::Thing")),
            Ref::Absolute(path("format::human_bytes")),
            Ref::Absolute(path("web::sibling::C")),
        ]
    );
}
