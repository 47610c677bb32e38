//! The encrypted mailbox of an in-process relay, as peers on loopback see it: delivery to the
//! authenticated recipient only, two-phase deletion, quotas, size limits and expiry.

#[path = "support/harness.rs"]
mod harness;

use std::time::Duration;

use anyhow::bail;
use clawnet_bootstrap::{MailboxLimits, MetricsConfig, RelayConfig};
use clawnet_crypto::{AgreementSecret, SigningPublicKey};
use clawnet_protocol::mailbox::{self, ItemId, MailboxRequest, MailboxResponse, Quota};
use harness::{InProcessRelay, MailboxClient, STEP_TIMEOUT, sample, scrape, sealed_for, within};

fn relay_config(limits: MailboxLimits) -> RelayConfig {
    RelayConfig { mailbox: Some(limits), ..RelayConfig::default() }
}

async fn connected(relay: &InProcessRelay) -> anyhow::Result<MailboxClient> {
    let mut client = MailboxClient::new()?;
    client.connect(&relay.addr).await?;
    Ok(client)
}

fn deposit(recipient: SigningPublicKey, owner: &AgreementSecret, payload: &[u8]) -> MailboxRequest {
    MailboxRequest::Deposit { recipient, item: sealed_for(owner, &recipient, payload), ttl_secs: 3600 }
}

async fn deposited(client: &mut MailboxClient, request: MailboxRequest) -> anyhow::Result<ItemId> {
    match client.ask(request).await? {
        MailboxResponse::Deposited { id, .. } => Ok(id),
        other => bail!("deposit answered {other:?}"),
    }
}

#[tokio::test]
async fn a_sealed_delivery_reaches_its_recipient_and_nobody_else() -> anyhow::Result<()> {
    let relay = InProcessRelay::start(RelayConfig::default()).await?;
    let mut sender = connected(&relay).await?;
    let mut recipient = connected(&relay).await?;
    let mut third = connected(&relay).await?;
    // The recipient's owner key, which the sender seals to; the relay never has it.
    let owner = AgreementSecret::generate();

    let id = deposited(&mut sender, deposit(recipient.key, &owner, b"a signed wire message")).await?;

    // A third peer, and the sender itself, see nothing of the recipient's box.
    assert_eq!(third.fetch().await?, []);
    assert_eq!(sender.fetch().await?, []);

    let items = recipient.fetch().await?;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].id, id);
    let opened = items[0].envelope.open(&owner, &mailbox::seal_context(&recipient.key))?;
    assert_eq!(opened.as_slice(), b"a signed wire message");

    // Only the recipient can delete: others' deletes remove nothing.
    for other in [&mut third, &mut sender] {
        assert_eq!(other.ask(MailboxRequest::Delete { ids: vec![id] }).await?, MailboxResponse::Deleted { count: 0 });
    }
    // Fetching does not consume: the item is still there until the recipient deletes it.
    assert_eq!(recipient.fetch().await?, items);
    assert_eq!(recipient.ask(MailboxRequest::Delete { ids: vec![id] }).await?, MailboxResponse::Deleted { count: 1 });
    assert_eq!(recipient.fetch().await?, []);
    Ok(())
}

#[tokio::test]
async fn a_full_box_refuses_deposits_by_items_and_by_bytes() -> anyhow::Result<()> {
    let limits = MailboxLimits { max_items_per_recipient: 3, max_bytes_per_recipient: 4000, ..MailboxLimits::DEFAULT };
    let relay = InProcessRelay::start(relay_config(limits)).await?;
    let mut sender = connected(&relay).await?;
    let owner = AgreementSecret::generate();

    // Small items (531 bytes sealed) fill the item quota first.
    let by_items = MailboxClient::new()?.key;
    for _ in 0..3 {
        deposited(&mut sender, deposit(by_items, &owner, b"x")).await?;
    }
    assert_eq!(
        sender.ask(deposit(by_items, &owner, b"x")).await?,
        MailboxResponse::QuotaExceeded(Quota::RecipientItems)
    );

    // Items of 2 KiB (2323 bytes sealed) fill the byte quota first.
    let by_bytes = MailboxClient::new()?.key;
    deposited(&mut sender, deposit(by_bytes, &owner, &[7; 2000])).await?;
    assert_eq!(
        sender.ask(deposit(by_bytes, &owner, &[7; 2000])).await?,
        MailboxResponse::QuotaExceeded(Quota::RecipientBytes)
    );
    Ok(())
}

#[tokio::test]
async fn one_sender_cannot_fill_a_box_alone() -> anyhow::Result<()> {
    let limits = MailboxLimits { sender_share_items: 2, ..MailboxLimits::DEFAULT };
    let relay = InProcessRelay::start(relay_config(limits)).await?;
    let mut flooder = connected(&relay).await?;
    let mut friend = connected(&relay).await?;
    let mut recipient = connected(&relay).await?;
    let owner = AgreementSecret::generate();

    for _ in 0..2 {
        deposited(&mut flooder, deposit(recipient.key, &owner, b"spam")).await?;
    }
    assert_eq!(
        flooder.ask(deposit(recipient.key, &owner, b"spam")).await?,
        MailboxResponse::QuotaExceeded(Quota::SenderShare)
    );
    deposited(&mut friend, deposit(recipient.key, &owner, b"hello")).await?;
    assert_eq!(recipient.fetch().await?.len(), 3);
    Ok(())
}

#[tokio::test]
async fn an_oversized_item_is_refused_as_too_large() -> anyhow::Result<()> {
    let limits = MailboxLimits { max_item_bytes: 4096, ..MailboxLimits::DEFAULT };
    let relay = InProcessRelay::start(relay_config(limits.clone())).await?;
    let mut sender = connected(&relay).await?;
    let mut recipient = connected(&relay).await?;
    let owner = AgreementSecret::generate();

    // 5000 bytes seal to 8467: over the relay's limit, far under the protocol's. The relay reads
    // the frame header, discards the body and answers without buffering it (see the codec's
    // unit tests for the "without buffering" part).
    let response = sender.ask(deposit(recipient.key, &owner, &[1; 5000])).await?;
    assert_eq!(response, MailboxResponse::TooLarge { max_len: u32::try_from(limits.max_request_len())? });
    assert_eq!(recipient.fetch().await?, []);

    // The connection is still usable, and an item under the limit goes through.
    deposited(&mut sender, deposit(recipient.key, &owner, &[1; 2000])).await?;
    assert_eq!(recipient.fetch().await?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn items_expire_and_the_sweep_drops_them() -> anyhow::Result<()> {
    let limits = MailboxLimits {
        max_ttl: Duration::from_secs(1),
        sweep_interval: Duration::from_millis(50),
        ..MailboxLimits::DEFAULT
    };
    let config = RelayConfig {
        metrics: Some(MetricsConfig { address: "127.0.0.1:0".parse()?, allow_public: false }),
        ..relay_config(limits)
    };
    let relay = InProcessRelay::start(config).await?;
    let metrics = relay.metrics.expect("metrics configured");
    let mut sender = connected(&relay).await?;
    let mut recipient = connected(&relay).await?;
    let owner = AgreementSecret::generate();

    // A week asked, one second granted.
    let response = sender.ask(deposit(recipient.key, &owner, b"soon stale")).await?;
    assert!(matches!(response, MailboxResponse::Deposited { ttl_secs: 1, .. }), "{response:?}");
    assert_eq!(recipient.fetch().await?.len(), 1);

    // Nobody touches the box now, so only the sweep can empty it.
    within(STEP_TIMEOUT, "the sweep to drop the expired item", async {
        loop {
            let (_, body) = scrape(metrics).await?;
            if sample(&body, "clawnet_mailbox_expired_items_total") == Some(1.0) {
                assert_eq!(sample(&body, "clawnet_mailbox_items"), Some(0.0), "{body}");
                assert_eq!(sample(&body, "clawnet_mailbox_bytes"), Some(0.0), "{body}");
                break Ok::<_, anyhow::Error>(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await??;
    assert_eq!(recipient.fetch().await?, []);
    Ok(())
}

#[tokio::test]
async fn a_relay_without_a_mailbox_does_not_offer_it() -> anyhow::Result<()> {
    let relay = InProcessRelay::start(RelayConfig { mailbox: None, ..RelayConfig::default() }).await?;
    let mut client = connected(&relay).await?;
    let failure = client.try_ask(MailboxRequest::Fetch { max_items: 1 }).await?;
    assert!(matches!(failure, Err(libp2p::request_response::OutboundFailure::UnsupportedProtocols)), "{failure:?}");
    Ok(())
}
