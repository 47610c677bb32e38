//! Prometheus metrics: libp2p's own (swarm, bandwidth, identify, kad, ping, relay), plus the
//! relay's reservations and circuits, AutoNAT checks and the mailbox.
//!
//! The registry is filled once at start and served read-only by [`http`]; the recorders are
//! atomics, updated from the event loop.

pub(crate) mod http;

use libp2p::{
    autonat,
    metrics::{Metrics as Libp2pMetrics, Recorder as _, Registry},
    relay,
    swarm::SwarmEvent,
};
use prometheus_client::metrics::{counter::Counter, family::Family, gauge::Gauge};

/// One label, `name="value"`, with static strings only (labels never carry peer data).
type Label = Vec<(&'static str, &'static str)>;

/// Metrics of the relay's protocols.
pub(crate) struct RelayMetrics {
    libp2p: Libp2pMetrics,
    reservations: Gauge,
    circuits: Gauge,
    autonat_checks: Family<Label, Counter>,
}

impl std::fmt::Debug for RelayMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayMetrics")
            .field("reservations", &self.reservations.get())
            .field("circuits", &self.circuits.get())
            .finish_non_exhaustive()
    }
}

impl RelayMetrics {
    /// Registers libp2p's metrics (under `libp2p_`) and ours (under `clawnet_`) in `registry`.
    pub(crate) fn new(registry: &mut Registry) -> Self {
        let libp2p = Libp2pMetrics::new(registry);
        let ours = registry.sub_registry_with_prefix("clawnet");
        let reservations = Gauge::default();
        ours.register("relay_reservations", "Circuit relay reservations held now", reservations.clone());
        let circuits = Gauge::default();
        ours.register("relay_circuits", "Relayed circuits open now", circuits.clone());
        let autonat_checks = Family::default();
        ours.register("autonat_dial_backs", "AutoNAT v2 reachability checks served, by result", autonat_checks.clone());
        Self { libp2p, reservations, circuits, autonat_checks }
    }

    /// Records connection-level events (connections, listeners, dial errors).
    pub(crate) fn record_swarm<E>(&self, event: &SwarmEvent<E>) {
        self.libp2p.record(event);
    }

    /// Records an identify event.
    pub(crate) fn record_identify(&self, event: &libp2p::identify::Event) {
        self.libp2p.record(event);
    }

    /// Records a ping event.
    pub(crate) fn record_ping(&self, event: &libp2p::ping::Event) {
        self.libp2p.record(event);
    }

    /// Records a Kademlia event.
    pub(crate) fn record_kad(&self, event: &libp2p::kad::Event) {
        self.libp2p.record(event);
    }

    /// Records a relay event, and keeps the reservation and circuit gauges.
    pub(crate) fn record_relay(&self, event: &relay::Event) {
        self.libp2p.record(event);
        match event {
            relay::Event::ReservationReqAccepted { renewed: false, .. } => {
                self.reservations.inc();
            }
            relay::Event::ReservationClosed { .. } | relay::Event::ReservationTimedOut { .. } => {
                dec_to_zero(&self.reservations);
            }
            relay::Event::CircuitReqAccepted { .. } => {
                self.circuits.inc();
            }
            relay::Event::CircuitClosed { .. } => dec_to_zero(&self.circuits),
            _ => {}
        }
    }

    /// Records the outcome of an AutoNAT dial-back.
    pub(crate) fn record_autonat(&self, event: &autonat::v2::server::Event) {
        let result = if event.result.is_ok() { "ok" } else { "error" };
        self.autonat_checks.get_or_create(&vec![("result", result)]).inc();
    }
}

/// A gauge decremented by events that libp2p may report without a matching increment (a
/// reservation made before a restart of the counter is impossible, but stay safe).
fn dec_to_zero(gauge: &Gauge) {
    if gauge.get() > 0 {
        gauge.dec();
    }
}

/// The mailbox's gauges and counters. Always present (they are cheap atomics); registered only
/// when metrics are served.
#[derive(Debug, Clone, Default)]
pub(crate) struct MailboxMetrics {
    pub(crate) items: Gauge,
    pub(crate) bytes: Gauge,
    pub(crate) recipients: Gauge,
    pub(crate) deposits: Family<Label, Counter>,
    pub(crate) fetches: Counter,
    pub(crate) deleted: Counter,
    pub(crate) expired: Counter,
    pub(crate) refused_frames: Family<Label, Counter>,
}

impl MailboxMetrics {
    /// Registers these metrics under `clawnet_mailbox_`.
    pub(crate) fn register(&self, registry: &mut Registry) {
        let registry = registry.sub_registry_with_prefix("clawnet_mailbox");
        registry.register("items", "Sealed items held now", self.items.clone());
        registry.register("bytes", "Bytes of sealed items held now", self.bytes.clone());
        registry.register("recipients", "Recipients with at least one item held now", self.recipients.clone());
        registry.register(
            "deposits",
            "Deposits, by outcome: accepted, or the refusal (too_large, bad_request, or the quota)",
            self.deposits.clone(),
        );
        registry.register("fetches", "Fetch requests answered", self.fetches.clone());
        registry.register("deleted_items", "Items deleted by their recipient", self.deleted.clone());
        registry.register("expired_items", "Items dropped because their TTL ran out", self.expired.clone());
        registry.register(
            "refused_frames",
            "Requests refused before decoding, by reason (busy, malformed)",
            self.refused_frames.clone(),
        );
    }

    /// Counts a deposit's outcome.
    pub(crate) fn deposit(&self, outcome: &'static str) {
        self.deposits.get_or_create(&vec![("outcome", outcome)]).inc();
    }

    /// Counts a request refused before it was decoded.
    pub(crate) fn refused_frame(&self, reason: &'static str) {
        self.refused_frames.get_or_create(&vec![("reason", reason)]).inc();
    }

    /// Sets the gauges to what the mailbox holds.
    pub(crate) fn set_held(&self, items: usize, bytes: usize, recipients: usize) {
        self.items.set(gauge_value(items));
        self.bytes.set(gauge_value(bytes));
        self.recipients.set(gauge_value(recipients));
    }
}

fn gauge_value(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(registry: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, registry).unwrap();
        out
    }

    #[test]
    fn relay_gauges_follow_reservations_and_circuits() {
        let mut registry = Registry::default();
        let metrics = RelayMetrics::new(&mut registry);
        let peer = libp2p::PeerId::random();
        metrics.record_relay(&relay::Event::ReservationReqAccepted { src_peer_id: peer, renewed: false });
        metrics.record_relay(&relay::Event::ReservationReqAccepted { src_peer_id: peer, renewed: true });
        assert_eq!(metrics.reservations.get(), 1);
        metrics.record_relay(&relay::Event::CircuitReqAccepted { src_peer_id: peer, dst_peer_id: peer });
        assert_eq!(metrics.circuits.get(), 1);
        metrics.record_relay(&relay::Event::CircuitClosed { src_peer_id: peer, dst_peer_id: peer, error: None });
        metrics.record_relay(&relay::Event::CircuitClosed { src_peer_id: peer, dst_peer_id: peer, error: None });
        assert_eq!(metrics.circuits.get(), 0);
        metrics.record_relay(&relay::Event::ReservationTimedOut { src_peer_id: peer });
        assert_eq!(metrics.reservations.get(), 0);

        let text = text(&registry);
        assert!(text.contains("clawnet_relay_reservations 0"), "{text}");
        assert!(text.contains("libp2p_relay_events_total{event=\"ReservationReqAccepted\"} 2"), "{text}");
    }

    #[test]
    fn mailbox_metrics_are_exported_under_their_names() {
        let mut registry = Registry::default();
        let metrics = MailboxMetrics::default();
        metrics.register(&mut registry);
        metrics.set_held(3, 4000, 2);
        metrics.deposit("accepted");
        metrics.deposit("recipient_items");
        let text = text(&registry);
        for expected in [
            "clawnet_mailbox_items 3",
            "clawnet_mailbox_bytes 4000",
            "clawnet_mailbox_recipients 2",
            "clawnet_mailbox_deposits_total{outcome=\"accepted\"} 1",
            "clawnet_mailbox_deposits_total{outcome=\"recipient_items\"} 1",
        ] {
            assert!(text.contains(expected), "{expected} missing from {text}");
        }
    }
}
