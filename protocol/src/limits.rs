//! Hard limits on everything that crosses the network. Decoders refuse larger input before
//! parsing it; validators refuse fields beyond their own limits.

use std::time::Duration;

/// The largest encoded wire message.
pub const MAX_WIRE_MESSAGE: usize = 512 * 1024;
/// The longest text of one session turn, in bytes.
pub const MAX_TURN_TEXT: usize = 16 * 1024;
/// The longest purpose of a proposal, in bytes.
pub const MAX_PURPOSE: usize = 2 * 1024;
/// The longest display name, in bytes.
pub const MAX_DISPLAY_NAME: usize = 128;
/// The longest identity description, in bytes.
pub const MAX_DESCRIPTION: usize = 1024;
/// The longest reason (rejection, revocation), in bytes.
pub const MAX_REASON: usize = 512;
/// The most identity tags in one announcement.
pub const MAX_TAGS: usize = 64;
/// The most offers listed by one identity tag.
pub const MAX_OFFERS: usize = 16;
/// The longest offer text, in bytes.
pub const MAX_OFFER: usize = 128;
/// No session may ask for more turns than this, whatever the local configuration.
pub const MAX_TURNS_CAP: u16 = 1000;
/// No session may nest deeper than this, whatever the local configuration.
pub const MAX_DEPTH_CAP: u8 = 8;
/// How far in the future a signed timestamp may be before it is refused.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// The most network addresses one message may list.
pub const MAX_ADDRESSES: usize = 8;
/// The longest network address (multiaddr text), in bytes.
pub const MAX_ADDRESS: usize = 256;

/// Refuses more than [`MAX_ADDRESSES`] addresses or one longer than [`MAX_ADDRESS`].
pub fn check_addresses(addresses: &[String]) -> Result<(), FieldTooLong> {
    if addresses.len() > MAX_ADDRESSES {
        return Err(FieldTooLong { field: "address list", len: addresses.len(), max: MAX_ADDRESSES });
    }
    addresses.iter().try_for_each(|address| check_len("address", address, MAX_ADDRESS))
}

/// Refuses `text` longer than `max` bytes.
pub fn check_len(field: &'static str, text: &str, max: usize) -> Result<(), FieldTooLong> {
    if text.len() > max { Err(FieldTooLong { field, len: text.len(), max }) } else { Ok(()) }
}

/// A field is longer than its limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} is {len} bytes, more than the limit of {max}")]
pub struct FieldTooLong {
    /// The field.
    pub field: &'static str,
    /// Its length.
    pub len: usize,
    /// The limit.
    pub max: usize,
}
