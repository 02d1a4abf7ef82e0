//! Seeded pseudo-random payloads and checksums to compare them, so tests need no RNG
//! dependency and can assert on bytes without printing them.
//!
//! [`payload`] and [`checksum`] work a byte at a time on a whole buffer. [`PayloadStream`] and
//! [`StreamChecksum`] make and check a payload a word at a time, chunk by chunk, so that tens of
//! MiB stay quick in a debug build. Both come from the same [`Xorshift`] generator.

/// The xorshift64* generator (Vigna): fast, seedable, good enough for test data.
#[derive(Clone, Debug)]
pub struct Xorshift(pub u64);

impl Xorshift {
    /// The next 64 pseudo-random bits. A state of 0 stays 0: seed with a non-zero value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// `len` deterministic pseudo-random bytes for `seed` (any seed, 0 included).
pub fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut x = Xorshift(seed | 1);
    (0..len).map(|_| (x.next_u64() >> 56) as u8).collect()
}

/// FNV-1a 64 over `bytes`: a checksum to compare payloads without printing them.
pub fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A payload of any length made chunk by chunk, a word at a time: one [`Xorshift`] word is 8
/// payload bytes (little-endian).
#[derive(Clone, Debug)]
pub struct PayloadStream(Xorshift);

impl PayloadStream {
    /// The stream for `seed`, used as the generator's state as is (seed with a non-zero value).
    pub fn new(seed: u64) -> Self {
        Self(Xorshift(seed))
    }

    /// Fills `chunk` with the next bytes and adds them to `sum` in the same pass.
    pub fn fill(&mut self, chunk: &mut [u8], sum: &mut StreamChecksum) {
        let mut words = chunk.chunks_exact_mut(8);
        for word in &mut words {
            let value = self.0.next_u64();
            word.copy_from_slice(&value.to_le_bytes());
            sum.add(value);
        }
        let tail = words.into_remainder();
        if !tail.is_empty() {
            tail.copy_from_slice(&self.0.next_u64().to_le_bytes()[..tail.len()]);
            sum.update(tail);
        }
    }
}

/// An order-sensitive checksum over 8-byte words, fed chunk by chunk. Sender and receiver must
/// cut their chunks the same way: a chunk's trailing partial word is padded with zeros.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamChecksum(pub u64);

impl StreamChecksum {
    fn add(&mut self, word: u64) {
        self.0 = (self.0 ^ word)
            .wrapping_mul(0x100_0000_01b3)
            .rotate_left(29);
    }

    /// Adds `chunk`.
    pub fn update(&mut self, chunk: &[u8]) {
        let mut words = chunk.chunks_exact(8);
        for word in &mut words {
            self.add(u64::from_le_bytes(word.try_into().unwrap()));
        }
        let tail = words.remainder();
        if !tail.is_empty() {
            let mut padded = [0; 8];
            padded[..tail.len()].copy_from_slice(tail);
            self.add(u64::from_le_bytes(padded));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_repeat_per_seed_and_differ_across_seeds() {
        assert_eq!(payload(64, 1), payload(64, 1));
        assert_ne!(payload(64, 1), payload(64, 2));
        assert_eq!(payload(0, 9), Vec::<u8>::new());
        assert!(payload(4096, 0).iter().any(|&b| b != 0), "seed 0 works too");
    }

    #[test]
    fn checksum_is_fnv1a_64() {
        assert_eq!(checksum(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(checksum(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(checksum(b"ab"), checksum(b"ba"));
    }

    #[test]
    fn a_stream_filled_in_chunks_checks_the_same_as_its_receiver() {
        let (mut stream, mut sent) = (PayloadStream::new(7), StreamChecksum::default());
        let mut data = vec![0; 1000];
        for chunk in data.chunks_mut(100) {
            stream.fill(chunk, &mut sent);
        }
        let mut received = StreamChecksum::default();
        for chunk in data.chunks(100) {
            received.update(chunk);
        }
        assert_eq!(sent, received);
        assert_ne!(sent, StreamChecksum::default());
    }
}
