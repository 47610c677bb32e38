//! Delivery lanes: `/clawnet/deliver/1` streams kept open between two nodes and used for one
//! request and its reply at a time, over and over.
//!
//! A request-response stream costs a round trip before its first byte: multistream-select waits
//! for the receiver to accept the protocol. A lane pays that once, when it opens. libp2p's lazy
//! negotiation would save the round trip too, but only swarm-wide, where it would also hand
//! gossipsub's subscriptions (our feed topics) to relays that do not speak it (BENCHMARKS.md).
//! A lane's bytes also go from the task that delivers straight to the connection, not through
//! the network actor on either side.
//!
//! The format is the one-shot one repeated: a length-prefixed encoded `DeliveryBatch`, then a
//! length-prefixed encoded `DeliveryReply`; either side may close the stream between two
//! exchanges. A peer that answers once and closes is served too: the next request finds the lane
//! closed and takes a fresh one.
//!
//! Lanes close when unused, so they do not hold an idle connection open: the sender forgets a
//! lane after [`SENDER_IDLE`], the receiver closes one after [`RECEIVER_IDLE`] without a request.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use clawnet_crypto::{WireFormat, encoding};
use clawnet_protocol::wire::{DeliveryBatch, DeliveryReply};
use futures::future::BoxFuture;
use futures::{AsyncWriteExt, StreamExt};
use libp2p::{PeerId, Stream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::codec::{DELIVER_PROTOCOL, read_body, read_frame, read_len, send_frame};
use super::{NetworkError, NetworkEvent};

/// How long a sender keeps an unused lane.
const SENDER_IDLE: Duration = Duration::from_secs(10);
/// How long a receiver waits for the next request on a lane; longer than [`SENDER_IDLE`], so a
/// sender rarely picks a lane the receiver is closing.
const RECEIVER_IDLE: Duration = Duration::from_secs(20);
/// The longest each step of a delivery may take: connecting, opening a lane, one exchange.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);
/// Unused lanes kept per peer: the outbox has at most two requests on their way to a node.
const IDLE_PER_PEER: usize = 4;

/// Answers a delivery batch from `peer`, on the task that read it from its lane.
pub type DeliveryHandler = Arc<dyn Fn(PeerId, DeliveryBatch) -> BoxFuture<'static, DeliveryReply> + Send + Sync>;

/// The receiving side's handler, once the node has set one (see
/// [`super::Network::answer_deliveries`]), until the network shuts down: the handler usually
/// holds the node, which holds the network, so keeping it longer would keep the node (and its
/// database) alive forever.
#[derive(Default)]
pub(super) struct Answer(Mutex<Option<DeliveryHandler>>);

impl Answer {
    /// Sets the handler; false if one was set before.
    pub(super) fn set(&self, handler: DeliveryHandler) -> bool {
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_some() {
            return false;
        }
        *slot = Some(handler);
        true
    }

    fn get(&self) -> Option<DeliveryHandler> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn clear(&self) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take();
    }
}

impl fmt::Debug for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Answer").field("set", &self.get().is_some()).finish()
    }
}

/// The sending side's unused lanes, by peer, and the control that opens new ones.
pub(super) struct Lanes {
    control: libp2p_stream::Control,
    idle: Mutex<HashMap<PeerId, Vec<(Stream, Instant)>>>,
}

impl fmt::Debug for Lanes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lanes").field("peers", &self.lock().len()).finish_non_exhaustive()
    }
}

/// Why an exchange on a lane failed.
enum Failure {
    /// The lane broke (closed by the receiver, reset, connection gone): a fresh one may work.
    Lane(io::Error),
    /// No lane could be opened to the peer, or the exchange took too long.
    Peer(String),
}

impl Lanes {
    pub(super) fn new(control: libp2p_stream::Control) -> Lanes {
        Lanes { control, idle: Mutex::new(HashMap::new()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PeerId, Vec<(Stream, Instant)>>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends `batch` to `peer` and waits for its reply: on an unused lane if there is one, else
    /// on a new one, once `reach` has the swarm connected to `peer`. A broken lane costs another
    /// try (the receiver records by message id, so a request it already had is answered from
    /// its records): on the next unused lane, or on a new one, twice at most (the receiver
    /// drops a new lane it cannot take at once).
    pub(super) async fn deliver<R>(
        &self,
        peer: PeerId,
        batch: &DeliveryBatch,
        reach: R,
    ) -> Result<DeliveryReply, NetworkError>
    where
        R: Future<Output = Result<(), NetworkError>>,
    {
        let request = batch.encode();
        let unreachable = |reason: String| NetworkError::Unreachable { peer, reason };
        let mut reach = std::pin::pin!(reach);
        let mut opened = 0;
        loop {
            let lane = match self.take(peer) {
                Some(lane) => lane,
                None => {
                    if opened == 0 {
                        match tokio::time::timeout(EXCHANGE_TIMEOUT, &mut reach).await {
                            Ok(reached) => reached?,
                            Err(_) => return Err(unreachable("not connected in time".to_owned())),
                        }
                    }
                    opened += 1;
                    self.open(peer).await.map_err(unreachable)?
                }
            };
            match self.exchange(peer, lane, &request).await {
                Ok(reply) => return Ok(reply),
                Err(Failure::Peer(reason)) => return Err(unreachable(reason)),
                Err(Failure::Lane(err)) if opened >= 2 => return Err(unreachable(err.to_string())),
                Err(Failure::Lane(err)) => tracing::debug!(%peer, %err, "delivery lane closed; trying another"),
            }
        }
    }

    async fn open(&self, peer: PeerId) -> Result<Stream, String> {
        let mut control = self.control.clone();
        match tokio::time::timeout(EXCHANGE_TIMEOUT, control.open_stream(peer, DELIVER_PROTOCOL)).await {
            Ok(Ok(lane)) => Ok(lane),
            Ok(Err(err)) => Err(err.to_string()),
            Err(_) => Err("no delivery lane opened in time".to_owned()),
        }
    }

    /// One request and its reply on `lane`, which goes back to the unused ones if it worked.
    async fn exchange(&self, peer: PeerId, mut lane: Stream, request: &[u8]) -> Result<DeliveryReply, Failure> {
        let exchange = async {
            send_frame(&mut lane, request).await?;
            let frame = read_frame(&mut lane, DeliveryReply::MAX_LEN).await?;
            encoding::decode::<DeliveryReply>(&frame).map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))
        };
        let reply = match tokio::time::timeout(EXCHANGE_TIMEOUT, exchange).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(err)) if err.kind() == io::ErrorKind::InvalidData => return Err(Failure::Peer(err.to_string())),
            Ok(Err(err)) => return Err(Failure::Lane(err)),
            Err(_) => return Err(Failure::Peer("no reply in time".to_owned())),
        };
        self.put(peer, lane);
        Ok(reply)
    }

    fn take(&self, peer: PeerId) -> Option<Stream> {
        let mut idle = self.lock();
        let lanes = idle.get_mut(&peer)?;
        // The most recently used lane is the likeliest to be still open.
        let lane = lanes.pop().map(|(lane, _)| lane);
        if lanes.is_empty() {
            idle.remove(&peer);
        }
        lane
    }

    fn put(&self, peer: PeerId, lane: Stream) {
        let mut idle = self.lock();
        let lanes = idle.entry(peer).or_default();
        if lanes.len() < IDLE_PER_PEER {
            lanes.push((lane, Instant::now()));
        }
    }

    /// Forgets the lanes unused for longer than [`SENDER_IDLE`] (closing them), so that an idle
    /// connection can time out.
    pub(super) fn sweep(&self) {
        let now = Instant::now();
        self.lock().retain(|_, lanes| {
            lanes.retain(|(_, since)| now.duration_since(*since) < SENDER_IDLE);
            !lanes.is_empty()
        });
    }

    /// How many unused lanes to `peer` are open (for tests).
    pub(super) fn idle(&self, peer: PeerId) -> usize {
        self.lock().get(&peer).map_or(0, Vec::len)
    }
}

/// Serves the lanes other nodes open to this one until `shutdown` (or the swarm stops): each
/// request goes to the handler, or until one is set becomes a [`NetworkEvent::Delivery`], and
/// its reply goes back on the lane. Drops the handler when it stops.
pub(super) async fn serve(
    mut incoming: libp2p_stream::IncomingStreams,
    answer: Arc<Answer>,
    events: mpsc::Sender<NetworkEvent>,
    shutdown: CancellationToken,
) {
    let mut lanes = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            lane = incoming.next() => match lane {
                Some((peer, lane)) => {
                    lanes.spawn(serve_lane(peer, lane, answer.clone(), events.clone(), shutdown.clone()));
                }
                None => break,
            },
            Some(_) = lanes.join_next(), if !lanes.is_empty() => {}
        }
    }
    // Requests being answered are abandoned (their senders will try again), and once this
    // returns nothing here holds the handler any more.
    lanes.shutdown().await;
    answer.clear();
}

/// Answers the requests on one lane, in turn, until the sender closes it, it stays unused for
/// [`RECEIVER_IDLE`], or a frame is malformed.
async fn serve_lane(
    peer: PeerId,
    mut lane: Stream,
    answer: Arc<Answer>,
    events: mpsc::Sender<NetworkEvent>,
    shutdown: CancellationToken,
) {
    loop {
        // Waiting for a request is bounded by RECEIVER_IDLE; reading one that began, like the
        // sender's whole exchange.
        let frame = tokio::select! {
            () = shutdown.cancelled() => break,
            frame = async {
                let len = tokio::time::timeout(RECEIVER_IDLE, read_len(&mut lane)).await.map_err(|_| None)?.map_err(Some)?;
                tokio::time::timeout(EXCHANGE_TIMEOUT, read_body(&mut lane, len, DeliveryBatch::MAX_LEN))
                    .await
                    .map_err(|_| Some(io::Error::new(io::ErrorKind::TimedOut, "the request stalled")))?
                    .map_err(Some)
            } => frame,
        };
        let batch = match frame {
            // Unused for RECEIVER_IDLE.
            Err(None) => break,
            Err(Some(err)) => {
                if err.kind() != io::ErrorKind::UnexpectedEof {
                    tracing::debug!(%peer, %err, "delivery lane failed");
                }
                break;
            }
            Ok(frame) => match DeliveryBatch::decode(&frame) {
                Ok(batch) => batch,
                Err(err) => {
                    tracing::debug!(%peer, %err, "malformed delivery batch; closing its lane");
                    break;
                }
            },
        };
        let count = batch.messages.len();
        let shutting_down = || DeliveryReply::try_later(count, "the node is shutting down");
        let reply = if let Some(handler) = answer.get() {
            tokio::select! {
                () = shutdown.cancelled() => shutting_down(),
                reply = handler(peer, batch) => reply,
            }
        } else {
            let (reply, answer) = oneshot::channel();
            match events.try_send(NetworkEvent::Delivery { peer, batch, reply }) {
                Ok(()) => tokio::select! {
                    () = shutdown.cancelled() => shutting_down(),
                    answer = answer => answer.unwrap_or_else(|_| shutting_down()),
                },
                Err(_) => DeliveryReply::try_later(count, "the node is busy"),
            }
        };
        if let Err(err) = send_frame(&mut lane, &encoding::encode(&reply)).await {
            tracing::debug!(%peer, %err, "delivery reply not sent");
            break;
        }
    }
    let _ = lane.close().await;
}
