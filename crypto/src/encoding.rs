//! The one binary encoding of ClawNet: a version byte followed by the postcard encoding of the
//! value, bounded in size and canonical.
//!
//! Canonical means every value has exactly one encoding: [`decode`] re-encodes what it decoded and
//! refuses input that differs (for example a varint with redundant continuation bytes). Hashes of
//! encodings (message ids, proposal hashes, audit links) therefore name values, not spellings.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A type with a versioned, size-limited binary encoding.
pub trait WireFormat: Serialize + DeserializeOwned {
    /// Human name used in errors ("consent", "audit entry").
    const NAME: &'static str;
    /// The version byte this build writes and the only one it reads.
    const VERSION: u8;
    /// The largest encoding, version byte included, that [`decode`] accepts.
    const MAX_LEN: usize;
}

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input is longer than the type allows; it was not parsed.
    #[error("{what} is {len} bytes, more than the limit of {max}")]
    TooLarge {
        /// The kind of value.
        what: &'static str,
        /// The input length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The input ended before the value did.
    #[error("{what} is truncated")]
    Truncated {
        /// The kind of value.
        what: &'static str,
    },
    /// The version byte is not one this build understands.
    #[error("{what} has version {found}, this build only reads version {supported}: upgrade clawnet")]
    UnknownVersion {
        /// The kind of value.
        what: &'static str,
        /// The version found.
        found: u8,
        /// The version this build reads.
        supported: u8,
    },
    /// The input is not a valid encoding of the value.
    #[error("{what} is malformed: {detail}")]
    Malformed {
        /// The kind of value.
        what: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// The value ended before the input did.
    #[error("{what} has {extra} unexpected trailing bytes")]
    TrailingBytes {
        /// The kind of value.
        what: &'static str,
        /// How many bytes were left over.
        extra: usize,
    },
}

/// Encodes `value`: its version byte, then its postcard encoding.
pub fn encode<T: WireFormat>(value: &T) -> Vec<u8> {
    // Room for most values (a turn, an audit entry) without growing the buffer byte by byte.
    let mut out = Vec::with_capacity(256);
    out.push(T::VERSION);
    // Serializing derive-generated structs into a Vec cannot fail: postcard only errors on
    // sequences of unknown length, which serde never produces for our types.
    postcard::to_extend(value, out).expect("postcard encoding of a ClawNet type failed")
}

/// Decodes bytes produced by [`encode`], refusing oversized, truncated, unknown-version,
/// malformed, non-canonical and over-long input.
pub fn decode<T: WireFormat>(bytes: &[u8]) -> Result<T, DecodeError> {
    let value = decode_local(bytes)?;
    if !encodes_to(&value, bytes) {
        return Err(DecodeError::Malformed { what: T::NAME, detail: "non-canonical encoding".into() });
    }
    Ok(value)
}

/// Like [`decode`] without the canonical-encoding check, for records this node encoded and
/// stored itself (nothing hashes or compares their spelling).
pub fn decode_local<T: WireFormat>(bytes: &[u8]) -> Result<T, DecodeError> {
    if bytes.len() > T::MAX_LEN {
        return Err(DecodeError::TooLarge { what: T::NAME, len: bytes.len(), max: T::MAX_LEN });
    }
    let (value, rest) = take::<T>(bytes)?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes { what: T::NAME, extra: rest.len() });
    }
    Ok(value)
}

/// Decodes the value encoded at the start of `bytes`, canonically as [`decode`] does, and
/// returns it with the bytes that follow it: for a record that appends something to an
/// encoding. The parse is deterministic, so a record splits in exactly one way: no proper
/// prefix of an encoding is itself a whole encoding.
pub fn decode_prefix<T: WireFormat>(bytes: &[u8]) -> Result<(T, &[u8]), DecodeError> {
    let (value, rest) = take::<T>(bytes)?;
    let used = &bytes[..bytes.len() - rest.len()];
    if used.len() > T::MAX_LEN {
        return Err(DecodeError::TooLarge { what: T::NAME, len: used.len(), max: T::MAX_LEN });
    }
    if !encodes_to(&value, used) {
        return Err(DecodeError::Malformed { what: T::NAME, detail: "non-canonical encoding".into() });
    }
    Ok((value, rest))
}

/// Whether `value` encodes to exactly `bytes`, compared as the encoding is produced (a decode
/// checks every message it reads this way: no second buffer).
fn encodes_to<T: WireFormat>(value: &T, bytes: &[u8]) -> bool {
    let Some((&version, body)) = bytes.split_first() else { return false };
    let matched = postcard::to_extend(value, Matcher { rest: body, same: true })
        .expect("postcard encoding of a ClawNet type failed");
    version == T::VERSION && matched.same && matched.rest.is_empty()
}

/// Compares the bytes written to it with the bytes still expected.
struct Matcher<'a> {
    rest: &'a [u8],
    same: bool,
}

impl Extend<u8> for Matcher<'_> {
    fn extend<I: IntoIterator<Item = u8>>(&mut self, written: I) {
        for byte in written {
            match self.rest.split_first() {
                Some((&expected, rest)) if self.same && expected == byte => self.rest = rest,
                _ => self.same = false,
            }
        }
    }
}

/// The version byte, then one postcard value; returns what follows it.
fn take<T: WireFormat>(bytes: &[u8]) -> Result<(T, &[u8]), DecodeError> {
    let what = T::NAME;
    let Some((&version, body)) = bytes.split_first() else {
        return Err(DecodeError::Truncated { what });
    };
    if version != T::VERSION {
        return Err(DecodeError::UnknownVersion { what, found: version, supported: T::VERSION });
    }
    postcard::take_from_bytes::<T>(body).map_err(|err| match err {
        postcard::Error::DeserializeUnexpectedEnd => DecodeError::Truncated { what },
        other => DecodeError::Malformed { what, detail: other.to_string() },
    })
}

/// A `Vec<u8>` field as one run of bytes: `#[serde(with = "clawnet_crypto::encoding::bytes")]`.
///
/// Serde hands a plain `Vec<u8>` to the encoder one number at a time; postcard spells a byte
/// string the same way as a sequence of bytes (its length, then the bytes), so this changes the
/// speed only, not one encoded byte (JSON too reads and writes an array of numbers either way).
pub mod bytes {
    use std::fmt;

    use serde::de::{SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    /// Writes `bytes` as a byte string.
    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes)
    }

    /// Reads a byte string, or a sequence of numbers (how JSON spells one).
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        deserializer.deserialize_bytes(ByteString)
    }

    struct ByteString;

    impl<'de> Visitor<'de> for ByteString {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a byte string")
        }

        fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Vec<u8>, E> {
            Ok(bytes.to_vec())
        }

        fn visit_byte_buf<E: serde::de::Error>(self, bytes: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(bytes)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            // The hint comes from the input: trusted only as far as a small allocation.
            let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
            while let Some(byte) = seq.next_element()? {
                bytes.push(byte);
            }
            Ok(bytes)
        }
    }

    /// One byte string of a list (see [`super::byte_lists`]).
    pub(super) struct Item<'a>(pub(super) &'a [u8]);

    impl serde::Serialize for Item<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serialize(self.0, serializer)
        }
    }

    /// One byte string of a list, read.
    pub(super) struct OwnedItem(pub(super) Vec<u8>);

    impl<'de> serde::Deserialize<'de> for OwnedItem {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<OwnedItem, D::Error> {
            deserialize(deserializer).map(OwnedItem)
        }
    }
}

/// A `Vec<Vec<u8>>` field as a list of byte strings (see [`bytes`]):
/// `#[serde(with = "clawnet_crypto::encoding::byte_lists")]`.
pub mod byte_lists {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::bytes::{Item, OwnedItem};

    /// Writes `lists` as a sequence of byte strings.
    pub fn serialize<S: Serializer>(lists: &[Vec<u8>], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(lists.iter().map(|bytes| Item(bytes)))
    }

    /// Reads a sequence of byte strings.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Vec<u8>>, D::Error> {
        let items = Vec::<OwnedItem>::deserialize(deserializer)?;
        Ok(items.into_iter().map(|OwnedItem(bytes)| bytes).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sample {
        n: u64,
        text: String,
        flag: bool,
    }

    impl WireFormat for Sample {
        const NAME: &'static str = "sample";
        const VERSION: u8 = 3;
        const MAX_LEN: usize = 64;
    }

    fn sample() -> Sample {
        Sample { n: 300, text: "hi".into(), flag: true }
    }

    #[test]
    fn round_trip() {
        let bytes = encode(&sample());
        assert_eq!(bytes[0], 3);
        assert_eq!(decode::<Sample>(&bytes), Ok(sample()));
    }

    #[test]
    fn decoder_rejects_oversized_input() {
        let bytes = vec![3u8; 65];
        assert_eq!(decode::<Sample>(&bytes), Err(DecodeError::TooLarge { what: "sample", len: 65, max: 64 }));
    }

    #[test]
    fn decoder_rejects_truncated_input() {
        let bytes = encode(&sample());
        for cut in 0..bytes.len() {
            let err = decode::<Sample>(&bytes[..cut]).unwrap_err();
            assert_eq!(err, DecodeError::Truncated { what: "sample" }, "cut at {cut}");
        }
    }

    #[test]
    fn decoder_rejects_unknown_version() {
        let mut bytes = encode(&sample());
        bytes[0] = 4;
        assert_eq!(
            decode::<Sample>(&bytes),
            Err(DecodeError::UnknownVersion { what: "sample", found: 4, supported: 3 })
        );
    }

    #[test]
    fn decoder_rejects_trailing_bytes() {
        let mut bytes = encode(&sample());
        bytes.push(0);
        assert_eq!(decode::<Sample>(&bytes), Err(DecodeError::TrailingBytes { what: "sample", extra: 1 }));
    }

    #[test]
    fn decoder_rejects_non_canonical_varint() {
        // n = 300 is the varint ac 02; ac 82 00 spells the same number with a redundant byte.
        let canonical = encode(&sample());
        assert_eq!(&canonical[1..3], &[0xac, 0x02]);
        let mut padded = vec![3u8, 0xac, 0x82, 0x00];
        padded.extend_from_slice(&canonical[3..]);
        assert!(matches!(decode::<Sample>(&padded), Err(DecodeError::Malformed { .. })));
    }

    #[test]
    fn a_prefix_decode_returns_what_follows_and_splits_one_way() {
        let mut bytes = encode(&sample());
        let len = bytes.len();
        bytes.extend_from_slice(&[7; 5]);
        let (value, rest) = decode_prefix::<Sample>(&bytes).unwrap();
        assert_eq!((value, rest), (sample(), &[7u8; 5][..]));
        // No proper prefix of the encoding is a whole value, so a shorter split does not exist.
        for cut in 0..len {
            assert_eq!(decode_prefix::<Sample>(&bytes[..cut]).unwrap_err(), DecodeError::Truncated { what: "sample" });
        }
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = decode::<Sample>(&bytes);
        }

        #[test]
        fn encode_decode_is_identity(n in any::<u64>(), text in "[a-z]{0,20}", flag in any::<bool>()) {
            let value = Sample { n, text, flag };
            prop_assert_eq!(decode::<Sample>(&encode(&value)).unwrap(), value);
        }

        /// The byte-string helpers change no encoded byte: postcard and JSON spell a field the
        /// same with or without them, and each form reads the other's.
        #[test]
        fn byte_strings_encode_as_sequences_of_bytes_did(
            data in proptest::collection::vec(any::<u8>(), 0..300),
            lists in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..5),
        ) {
            let plain = PlainBytes { data: data.clone(), lists: lists.clone() };
            let fast = ByteStrings { data, lists };
            let encoded = postcard::to_allocvec(&fast).unwrap();
            prop_assert_eq!(&encoded, &postcard::to_allocvec(&plain).unwrap());
            prop_assert_eq!(postcard::from_bytes::<PlainBytes>(&encoded).unwrap(), plain.clone());
            prop_assert_eq!(postcard::from_bytes::<ByteStrings>(&encoded).unwrap(), fast.clone());
            let json = serde_json::to_string(&fast).unwrap();
            prop_assert_eq!(&json, &serde_json::to_string(&plain).unwrap());
            prop_assert_eq!(serde_json::from_str::<ByteStrings>(&json).unwrap(), fast);
        }
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct PlainBytes {
        data: Vec<u8>,
        lists: Vec<Vec<u8>>,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct ByteStrings {
        #[serde(with = "bytes")]
        data: Vec<u8>,
        #[serde(with = "byte_lists")]
        lists: Vec<Vec<u8>>,
    }

    #[test]
    fn a_byte_string_longer_than_its_input_is_truncated() {
        // A length of 200 followed by 3 bytes.
        let input = [0xc8, 0x01, 1, 2, 3];
        assert!(postcard::from_bytes::<ByteStrings>(&input).is_err());
    }
}
