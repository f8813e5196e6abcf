//! SHA-256 whose state can be written down and taken up again: eight
//! words and a length, at any 64-byte boundary. A blob copied in chunks
//! records it after each chunk, so that after a crash the copy continues
//! where the secondary's upload stands and the digest check still covers
//! every byte of the blob. (sha2 0.10 exposes the compression function;
//! its `Sha256` cannot be saved.)

use sha2::compress256;
use sha2::digest::generic_array::GenericArray;

const INITIAL: [u32; 8] =
    [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

#[derive(Clone)]
pub struct Sha256State {
    state: [u32; 8],
    /// Bytes hashed so far, buffered ones included.
    len: u64,
    buffer: [u8; 64],
    buffered: usize,
}

impl Default for Sha256State {
    fn default() -> Self {
        Sha256State { state: INITIAL, len: 0, buffer: [0; 64], buffered: 0 }
    }
}

impl Sha256State {
    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if self.buffered > 0 {
            let take = (64 - self.buffered).min(data.len());
            self.buffer[self.buffered..self.buffered + take].copy_from_slice(&data[..take]);
            self.buffered += take;
            data = &data[take..];
            if self.buffered < 64 {
                return;
            }
            compress256(&mut self.state, &[*GenericArray::from_slice(&self.buffer)]);
            self.buffered = 0;
        }
        let mut blocks = data.chunks_exact(64);
        for block in &mut blocks {
            compress256(&mut self.state, std::slice::from_ref(GenericArray::from_slice(block)));
        }
        let rest = blocks.remainder();
        self.buffer[..rest.len()].copy_from_slice(rest);
        self.buffered = rest.len();
    }

    pub fn finish(mut self) -> [u8; 32] {
        let bits = self.len.wrapping_mul(8);
        let mut tail = [0u8; 128];
        tail[..self.buffered].copy_from_slice(&self.buffer[..self.buffered]);
        tail[self.buffered] = 0x80;
        let end = if self.buffered < 56 { 64 } else { 128 };
        tail[end - 8..end].copy_from_slice(&bits.to_be_bytes());
        for block in tail[..end].chunks_exact(64) {
            compress256(&mut self.state, std::slice::from_ref(GenericArray::from_slice(block)));
        }
        let mut out = [0u8; 32];
        for (chunk, word) in out.chunks_exact_mut(4).zip(self.state) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        out
    }

    /// The state as text (`LENGTH:64 hex digits`), at a 64-byte boundary
    /// only: in between, the buffered bytes are not part of it.
    pub fn save(&self) -> Option<String> {
        if self.buffered != 0 {
            return None;
        }
        let words: String = self.state.iter().map(|w| format!("{w:08x}")).collect();
        Some(format!("{}:{words}", self.len))
    }

    /// Takes up a state `save` wrote.
    pub fn restore(text: &str) -> Result<Sha256State, String> {
        let bad = || format!("{text:?} is not a saved SHA-256 state");
        let (len, words) = text.split_once(':').ok_or_else(bad)?;
        let len: u64 = len.parse().map_err(|_| bad())?;
        if words.len() != 64 || len % 64 != 0 || !words.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let mut state = [0u32; 8];
        for (i, word) in state.iter_mut().enumerate() {
            *word = u32::from_str_radix(&words[i * 8..i * 8 + 8], 16).map_err(|_| bad())?;
        }
        Ok(Sha256State { state, len, buffer: [0; 64], buffered: 0 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest as _, Sha256};

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn matches_sha2_for_every_length_and_split() {
        for n in [0, 1, 55, 56, 63, 64, 65, 119, 120, 128, 1000, 70_000] {
            let bytes = data(n);
            let want: [u8; 32] = Sha256::digest(&bytes).into();
            for split in [0, 1, 63, 64, n / 2, n] {
                let split = split.min(n);
                let mut h = Sha256State::default();
                h.update(&bytes[..split]);
                h.update(&bytes[split..]);
                assert_eq!(h.finish(), want, "{n} bytes split at {split}");
            }
        }
    }

    #[test]
    fn a_saved_state_continues_to_the_same_digest() {
        let bytes = data(10_000);
        let mut h = Sha256State::default();
        h.update(&bytes[..4096]);
        let saved = h.save().unwrap();
        let mut again = Sha256State::restore(&saved).unwrap();
        assert_eq!(again.len, 4096);
        again.update(&bytes[4096..]);
        assert_eq!(again.finish(), <[u8; 32]>::from(Sha256::digest(&bytes)));
    }

    #[test]
    fn only_block_boundaries_save_and_bad_text_is_refused() {
        let mut h = Sha256State::default();
        h.update(b"abc");
        assert!(h.save().is_none());
        for bad in ["", "64", "63:00", "x:0000", &format!("65:{}", "0".repeat(64)), &format!("64:{}", "g".repeat(64))] {
            assert!(Sha256State::restore(bad).is_err(), "{bad:?}");
        }
    }
}
