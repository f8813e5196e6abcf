//! Fuzz tests of the web side: the notification envelope's parser and the
//! router, fed mutated inputs from a small deterministic generator.

use super::*;

/// A small deterministic generator for the fuzz tests (xorshift64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// `base` with a few bytes changed, dropped, duplicated or cut off.
    fn mutate(&mut self, base: &[u8]) -> Vec<u8> {
        let mut v = base.to_vec();
        for _ in 0..1 + self.below(4) {
            if v.is_empty() {
                break;
            }
            let at = self.below(v.len());
            match self.below(5) {
                0 => v[at] = self.next() as u8,
                1 => {
                    v.remove(at);
                }
                2 => {
                    let alphabet = b"{}[]\":,\\\x00\xff0a-._/";
                    v.insert(at, alphabet[self.below(alphabet.len())])
                }
                3 => v.truncate(at),
                _ => {
                    let end = (at + self.below(8)).min(v.len());
                    let piece = v[at..end].to_vec();
                    v.splice(at..at, piece);
                }
            }
        }
        v
    }
}

#[test]
fn the_envelope_parser_survives_mutated_envelopes_and_keeps_the_grammar() {
    let samples: Vec<Vec<u8>> =
        ["push-manifest-tagged", "push-manifest-by-digest", "delete-tag", "push-blob", "pull-index"]
            .iter()
            .map(|n| {
                std::fs::read(format!("{}/tests/data/notifications/{n}.json", env!("CARGO_MANIFEST_DIR"))).unwrap()
            })
            .chain([ENVELOPE.as_bytes().to_vec()])
            .collect();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let started = std::time::Instant::now();
    for _ in 0..5000 {
        let pick = rng.below(samples.len());
        let input = rng.mutate(&samples[pick]);
        if let Ok(parsed) = crate::web::notifications::parse_envelope(&input) {
            for b in &parsed.blobs {
                assert!(registry::valid_repository(&b.repository), "{b:?}");
            }
            for e in parsed.events {
                assert!(registry::valid_repository(&e.repository), "{e:?}");
                assert!(e.tag.as_deref().is_none_or(registry::valid_tag), "{e:?}");
                assert!(e.digest.as_deref().is_none_or(|d| registry::Digest::parse(d).is_ok()), "{e:?}");
                assert!(e.action != crate::store::Action::Other, "{e:?}");
            }
        }
    }
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn the_router_answers_every_mutated_request_without_panicking() {
    let f = Fixture::new("primary");
    let methods = [Method::Get, Method::Post, Method::Put, Method::Delete, Method::Head, Method::Options];
    let paths = [
        "/api/v4/container_registry_event/events",
        "/api/v1/events?after=0&limit=5&wait=0",
        "/api/v1/nodes/status",
        "/api/v1/status",
        "/metrics",
        "/admin/geo/nodes",
        "/admin/geo/replication/container_repositories?state=failed&name=%zz&page=-1",
        "/admin/geo/replication/container_repositories/resync",
        "/-/health",
    ];
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    let started = std::time::Instant::now();
    for _ in 0..3000 {
        let pick = rng.below(paths.len());
        let path = String::from_utf8_lossy(&rng.mutate(paths[pick].as_bytes())).into_owned();
        if !path.starts_with('/') || path.contains(char::is_control) {
            continue;
        }
        let body: &'static str =
            Box::leak(String::from_utf8_lossy(&rng.mutate(ENVELOPE.as_bytes())).into_owned().into_boxed_str());
        let mut rq =
            TestRequest::new().with_method(methods[rng.below(methods.len())].clone()).with_path(&path).with_body(body);
        for (name, value) in
            [("Authorization", SECRET), ("Authorization", "Bearer x.y.z"), ("Content-Type", "application/json")]
        {
            if rng.below(2) == 0 {
                rq = rq.with_header(header(name, value));
            }
        }
        if rng.below(3) == 0 {
            rq = admin(rq);
        }
        let reply = f.send(rq);
        assert!((200..600).contains(&reply.status), "{path}: {}", reply.status);
    }
    assert!(started.elapsed() < Duration::from_secs(60));
}
