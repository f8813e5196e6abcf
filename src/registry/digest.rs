//! Content digests (`sha256:<hex>`) and the reader that checks blob bytes
//! against their descriptor while they stream from one registry to the
//! other.

use std::fmt;
use std::io::{self, Read};

use sha2::{Digest as _, Sha256, Sha512};

use super::encoding;
use super::sha256::Sha256State;

/// A validated `algorithm:hex` content digest (sha256 or sha512).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    pub fn parse(text: &str) -> Result<Digest, String> {
        let (algorithm, hex) =
            text.split_once(':').ok_or_else(|| format!("{text:?} is not a digest (algorithm:hex)"))?;
        let len = match algorithm {
            "sha256" => 64,
            "sha512" => 128,
            _ => return Err(format!("{text:?} uses an unsupported digest algorithm (sha256 and sha512 are)")),
        };
        if hex.len() != len || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(format!("{text:?} is not a valid {algorithm} digest"));
        }
        Ok(Digest(text.to_string()))
    }

    pub fn sha256_of(data: &[u8]) -> Digest {
        Digest(format!("sha256:{}", encoding::hex(&Sha256::digest(data))))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The digest of `data` computed with this digest's algorithm.
    pub fn recompute(&self, data: &[u8]) -> Digest {
        let mut h = Hasher::for_digest(self);
        h.update(data);
        h.finish()
    }

    /// A short form for progress lines: `sha256:ab12cd34ef56`.
    pub fn short(&self) -> &str {
        &self.0[..self.0.len().min(19)]
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An incremental hash with the algorithm of a given digest.
pub enum Hasher {
    Sha256(Sha256State),
    Sha512(Sha512),
}

impl Hasher {
    pub fn for_digest(d: &Digest) -> Hasher {
        if d.0.starts_with("sha512:") {
            Hasher::Sha512(Sha512::new())
        } else {
            Hasher::Sha256(Sha256State::default())
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    /// Takes up a state `save` wrote for a blob of this digest.
    pub fn restore(d: &Digest, saved: &str) -> Result<Hasher, String> {
        if d.0.starts_with("sha256:") {
            Sha256State::restore(saved).map(Hasher::Sha256)
        } else {
            Err(format!("a {d} hash cannot be resumed"))
        }
    }

    /// The state, to continue hashing after a restart (SHA-256 at a
    /// 64-byte boundary only).
    pub fn save(&self) -> Option<String> {
        match self {
            Hasher::Sha256(h) => h.save(),
            Hasher::Sha512(_) => None,
        }
    }

    pub fn finish(self) -> Digest {
        match self {
            Hasher::Sha256(h) => Digest(format!("sha256:{}", encoding::hex(&h.finish()))),
            Hasher::Sha512(h) => Digest(format!("sha512:{}", encoding::hex(&h.finalize()))),
        }
    }
}

/// Wraps a blob body and fails the read that would complete it when the
/// bytes do not match the expected digest and size. Because the check
/// happens before the last bytes are handed on, an upload fed from this
/// reader never receives a complete wrong blob: the registry is left with
/// an unfinished upload, and nothing that references the blob is pushed.
pub struct VerifyingReader<R> {
    inner: R,
    expected: Digest,
    size: u64,
    read: u64,
    hasher: Option<Hasher>,
    /// Set when verification failed: what was wrong, for the operator.
    pub failure: Option<String>,
}

impl<R: Read> VerifyingReader<R> {
    pub fn new(inner: R, expected: Digest, size: u64) -> Self {
        let hasher = Hasher::for_digest(&expected);
        VerifyingReader::resume(inner, expected, size, 0, hasher)
    }

    /// Continues a check whose first `offset` bytes went into `hasher`
    /// before: `inner` yields the blob from `offset` on.
    pub fn resume(inner: R, expected: Digest, size: u64, offset: u64, hasher: Hasher) -> Self {
        VerifyingReader { inner, expected, size, read: offset, hasher: Some(hasher), failure: None }
    }

    /// The hash state after the bytes read so far, when it can be saved.
    pub fn checkpoint(&self) -> Option<String> {
        self.hasher.as_ref().and_then(Hasher::save)
    }

    pub fn bytes_read(&self) -> u64 {
        self.read
    }

    fn fail(&mut self, message: String) -> io::Error {
        self.failure = Some(message.clone());
        io::Error::new(io::ErrorKind::InvalidData, message)
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(f) = &self.failure {
            return Err(io::Error::new(io::ErrorKind::InvalidData, f.clone()));
        }
        let Some(hasher) = self.hasher.as_mut() else {
            // Verified already; anything more is a body longer than the size.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(self.fail(format!("is longer than its size {}", self.size))),
            };
        };
        let n = self.inner.read(buf)?;
        if n == 0 && self.size == 0 {
            return match self.hasher.take().map(Hasher::finish) {
                Some(got) if got == self.expected => Ok(0),
                got => Err(self.fail(format!(
                    "did not match its digest (got {})",
                    got.map(|d| d.to_string()).unwrap_or_default()
                ))),
            };
        }
        if n == 0 {
            return Err(self.fail(format!("ended after {} of {} bytes", self.read, self.size)));
        }
        self.read += n as u64;
        if self.read > self.size {
            return Err(self.fail(format!("is longer than its size {}", self.size)));
        }
        hasher.update(&buf[..n]);
        if self.read == self.size {
            let got = self.hasher.take().map(Hasher::finish);
            if got.as_ref() != Some(&self.expected) {
                let got = got.map(|d| d.to_string()).unwrap_or_default();
                return Err(self.fail(format!("did not match its digest (got {got})")));
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(r: &mut impl Read) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        r.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn parse_digests() {
        let good = format!("sha256:{}", "a".repeat(64));
        assert!(Digest::parse(&good).is_ok());
        assert!(Digest::parse(&format!("sha512:{}", "0".repeat(128))).is_ok());
        assert!(Digest::parse("sha256:abc").is_err());
        assert!(Digest::parse(&format!("sha256:{}", "A".repeat(64))).is_err());
        assert!(Digest::parse(&format!("md5:{}", "a".repeat(32))).unwrap_err().contains("unsupported"));
        assert!(Digest::parse("latest").is_err());
    }

    #[test]
    fn verifying_reader_passes_good_bytes() {
        let data = vec![7u8; 100_000];
        let d = Digest::sha256_of(&data);
        let mut r = VerifyingReader::new(&data[..], d, data.len() as u64);
        assert_eq!(drain(&mut r).unwrap(), data);
        assert!(r.failure.is_none());
    }

    #[test]
    fn verifying_reader_withholds_the_last_bytes_of_a_bad_blob() {
        let data = [7u8; 10];
        let d = Digest::sha256_of(b"something else");
        let mut r = VerifyingReader::new(&data[..], d, 10);
        let mut buf = [0u8; 64];
        assert!(r.read(&mut buf).is_err(), "the only read completes the blob and must fail");
        assert!(r.failure.unwrap().contains("did not match its digest (got sha256:"));
    }

    #[test]
    fn verifying_reader_handles_empty_blobs() {
        let mut r = VerifyingReader::new(&b""[..], Digest::sha256_of(b""), 0);
        assert_eq!(drain(&mut r).unwrap(), b"");
        let mut r = VerifyingReader::new(&b""[..], Digest::sha256_of(b"x"), 0);
        assert!(drain(&mut r).is_err());
    }

    #[test]
    fn verifying_reader_checks_size() {
        let data = vec![1u8; 10];
        let mut short = VerifyingReader::new(&data[..], Digest::sha256_of(&data), 11);
        assert!(drain(&mut short).is_err());
        assert!(short.failure.unwrap().contains("ended after 10 of 11"));
        let mut long = VerifyingReader::new(&data[..], Digest::sha256_of(&data[..9]), 9);
        assert!(drain(&mut long).is_err());
        assert!(long.failure.unwrap().contains("longer"));
    }
}
