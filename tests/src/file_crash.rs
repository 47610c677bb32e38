//! What the file-crash helper (`file-worker`) writes, shared with the test that kills it: file
//! names, and content that names the write it came from.

/// The files the helper works on, in one whitelisted folder.
pub const FILE_NAMES: [&str; 6] = ["f0", "f1", "f2", "f3", "f4", "f5"];

/// The content of the write tagged `tag`: the tag on every line, a length that depends on it
/// (up to about 40 KiB, so writes take long enough to be interrupted).
pub fn version(tag: &str) -> Vec<u8> {
    let spread = tag.bytes().fold(7u64, |acc, byte| acc.wrapping_mul(31).wrapping_add(u64::from(byte)));
    let lines = 1 + usize::try_from(spread % 3000).unwrap_or(0);
    format!("{tag}\n").repeat(lines).into_bytes()
}

/// The tag of `content`, if it is a version.
pub fn tag_of(content: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(content).ok()?;
    let tag = text.split('\n').next()?;
    (version(tag) == content).then_some(tag)
}

/// A small deterministic generator (SplitMix64): the helper and the tests need repeatable runs,
/// not good randomness.
#[derive(Debug, Clone)]
pub struct Dice(u64);

impl Dice {
    /// Seeded.
    pub fn new(seed: u64) -> Dice {
        Dice(seed)
    }

    /// The next number.
    pub fn roll(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.roll() % (n as u64)).unwrap_or(0)
    }
}
