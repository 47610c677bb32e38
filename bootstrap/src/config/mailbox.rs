//! Limits of the encrypted mailbox, and their command line form.

use std::time::Duration;

use clap::Args;
use clawnet_protocol::mailbox;

/// Smallest item limit accepted: the smallest sealed envelope is 531 bytes.
const MIN_ITEM_BYTES: usize = 1024;
const MAX_ITEM_BYTES_CAP: u64 = mailbox::MAX_ITEM_LEN as u64;
/// TTLs travel as `u32` seconds.
const MAX_TTL_SECS: u64 = u32::MAX as u64;

/// Limits of the encrypted mailbox: what it holds, for whom, for how long.
///
/// Everything is in memory (a relay keeps no disk state besides its key) and bounded: the
/// per-recipient quotas keep one box from growing without bound, the per-sender share keeps one
/// depositor from filling someone's box, the per-sender byte cap and rate keep one depositor
/// from filling the relay, and the relay-wide byte cap bounds the whole. A sender with many
/// peer ids gets around the per-sender limits but not the per-recipient and relay-wide ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxLimits {
    /// Largest sealed item accepted, in bytes; at most [`mailbox::MAX_ITEM_LEN`]. A deposit
    /// over it is refused without being buffered.
    pub max_item_bytes: usize,
    /// Longest an item is held; a deposit asking for more is held this long.
    pub max_ttl: Duration,
    /// Items held at once for one recipient.
    pub max_items_per_recipient: usize,
    /// Bytes held at once for one recipient.
    pub max_bytes_per_recipient: usize,
    /// Items one sender may hold at once in one recipient's box.
    pub sender_share_items: usize,
    /// Bytes one sender may hold at once in one recipient's box.
    pub sender_share_bytes: usize,
    /// Bytes one sender may hold at once over all boxes.
    pub max_bytes_per_sender: usize,
    /// Deposits one sender may make per minute (a bucket of this many, refilled over a minute).
    pub deposits_per_minute: u32,
    /// Bytes held at once over all boxes.
    pub max_total_bytes: usize,
    /// Bytes of requests being received at once, over all peers; a request that does not fit
    /// is refused as busy without being buffered. At least one largest request.
    pub max_receiving_bytes: usize,
    /// How often expired items are dropped (expired items are never returned in between).
    pub sweep_interval: Duration,
}

impl MailboxLimits {
    /// The defaults: 512 KiB items, 7 days, 256 items / 8 MiB per recipient, a quarter of that
    /// per sender and box, 32 MiB and 120 deposits a minute per sender, 256 MiB in all.
    pub const DEFAULT: Self = Self {
        max_item_bytes: 512 * 1024,
        max_ttl: Duration::from_secs(7 * 24 * 60 * 60),
        max_items_per_recipient: 256,
        max_bytes_per_recipient: 8 * 1024 * 1024,
        sender_share_items: 64,
        sender_share_bytes: 2 * 1024 * 1024,
        max_bytes_per_sender: 32 * 1024 * 1024,
        deposits_per_minute: 120,
        max_total_bytes: 256 * 1024 * 1024,
        max_receiving_bytes: 32 * 1024 * 1024,
        sweep_interval: Duration::from_secs(60),
    };

    /// The largest request frame the relay reads: a deposit of the largest item accepted, or a
    /// full delete if that is larger.
    pub fn max_request_len(&self) -> usize {
        mailbox::max_request_len(self.max_item_bytes)
    }
}

impl Default for MailboxLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Command line form of [`MailboxLimits`], plus the switch that turns the mailbox off.
#[derive(Debug, Args)]
pub struct MailboxArgs {
    /// Do not offer the encrypted mailbox (/clawnet/mailbox/1) at all.
    #[arg(long, env = "CLAWNET_BOOTSTRAP_NO_MAILBOX", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_mailbox: bool,

    /// Largest sealed item accepted, in bytes.
    #[arg(long, value_name = "BYTES", env = "CLAWNET_BOOTSTRAP_MAILBOX_MAX_ITEM_BYTES",
        value_parser = clap::value_parser!(u64).range(MIN_ITEM_BYTES as u64..=MAX_ITEM_BYTES_CAP),
        default_value_t = MailboxLimits::DEFAULT.max_item_bytes as u64)]
    pub mailbox_max_item_bytes: u64,

    /// Longest an item is held, in seconds; longer requests are shortened to this.
    #[arg(long, value_name = "SECS", env = "CLAWNET_BOOTSTRAP_MAILBOX_MAX_TTL_SECS",
        value_parser = clap::value_parser!(u64).range(1..=MAX_TTL_SECS),
        default_value_t = MailboxLimits::DEFAULT.max_ttl.as_secs())]
    pub mailbox_max_ttl_secs: u64,

    /// Items held at once for one recipient.
    #[arg(long, value_name = "N", env = "CLAWNET_BOOTSTRAP_MAILBOX_MAX_ITEMS_PER_RECIPIENT",
        default_value_t = MailboxLimits::DEFAULT.max_items_per_recipient)]
    pub mailbox_max_items_per_recipient: usize,

    /// Bytes held at once for one recipient.
    #[arg(long, value_name = "BYTES", env = "CLAWNET_BOOTSTRAP_MAILBOX_MAX_BYTES_PER_RECIPIENT",
        default_value_t = MailboxLimits::DEFAULT.max_bytes_per_recipient)]
    pub mailbox_max_bytes_per_recipient: usize,

    /// Items one sender may hold at once in one recipient's box.
    #[arg(long, value_name = "N", env = "CLAWNET_BOOTSTRAP_MAILBOX_SENDER_SHARE_ITEMS",
        default_value_t = MailboxLimits::DEFAULT.sender_share_items)]
    pub mailbox_sender_share_items: usize,

    /// Bytes one sender may hold at once in one recipient's box.
    #[arg(long, value_name = "BYTES", env = "CLAWNET_BOOTSTRAP_MAILBOX_SENDER_SHARE_BYTES",
        default_value_t = MailboxLimits::DEFAULT.sender_share_bytes)]
    pub mailbox_sender_share_bytes: usize,

    /// Bytes one sender may hold at once over all boxes.
    #[arg(long, value_name = "BYTES", env = "CLAWNET_BOOTSTRAP_MAILBOX_MAX_BYTES_PER_SENDER",
        default_value_t = MailboxLimits::DEFAULT.max_bytes_per_sender)]
    pub mailbox_max_bytes_per_sender: usize,

    /// Deposits one sender may make per minute.
    #[arg(long, value_name = "N", env = "CLAWNET_BOOTSTRAP_MAILBOX_DEPOSITS_PER_MINUTE",
        value_parser = clap::value_parser!(u32).range(1..),
        default_value_t = MailboxLimits::DEFAULT.deposits_per_minute)]
    pub mailbox_deposits_per_minute: u32,

    /// Bytes held at once over all boxes.
    #[arg(long, value_name = "BYTES", env = "CLAWNET_BOOTSTRAP_MAILBOX_MAX_TOTAL_BYTES",
        default_value_t = MailboxLimits::DEFAULT.max_total_bytes)]
    pub mailbox_max_total_bytes: usize,

    /// Bytes of mailbox requests being received at once, over all peers.
    #[arg(long, value_name = "BYTES", env = "CLAWNET_BOOTSTRAP_MAILBOX_MAX_RECEIVING_BYTES",
        default_value_t = MailboxLimits::DEFAULT.max_receiving_bytes)]
    pub mailbox_max_receiving_bytes: usize,

    /// Seconds between sweeps of expired items.
    #[arg(long, value_name = "SECS", env = "CLAWNET_BOOTSTRAP_MAILBOX_SWEEP_INTERVAL_SECS",
        value_parser = clap::value_parser!(u64).range(1..=MAX_TTL_SECS),
        default_value_t = MailboxLimits::DEFAULT.sweep_interval.as_secs())]
    pub mailbox_sweep_interval_secs: u64,
}

impl MailboxArgs {
    /// The limits these options ask for, or `None` with `--no-mailbox`.
    pub fn limits(&self) -> Option<MailboxLimits> {
        if self.no_mailbox {
            return None;
        }
        Some(MailboxLimits {
            // Range-checked by clap to at most MAX_ITEM_LEN.
            max_item_bytes: usize::try_from(self.mailbox_max_item_bytes).unwrap_or(mailbox::MAX_ITEM_LEN),
            max_ttl: Duration::from_secs(self.mailbox_max_ttl_secs),
            max_items_per_recipient: self.mailbox_max_items_per_recipient,
            max_bytes_per_recipient: self.mailbox_max_bytes_per_recipient,
            sender_share_items: self.mailbox_sender_share_items,
            sender_share_bytes: self.mailbox_sender_share_bytes,
            max_bytes_per_sender: self.mailbox_max_bytes_per_sender,
            deposits_per_minute: self.mailbox_deposits_per_minute,
            max_total_bytes: self.mailbox_max_total_bytes,
            max_receiving_bytes: self.mailbox_max_receiving_bytes,
            sweep_interval: Duration::from_secs(self.mailbox_sweep_interval_secs),
        })
    }
}
