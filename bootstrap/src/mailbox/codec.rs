//! The relay's side of `/clawnet/mailbox/1` framing: length-prefixed frames (see
//! [`clawnet_protocol::mailbox`]) with every size checked before anything is allocated.
//!
//! A request frame over the protocol's hard limit is a protocol violation: the stream is reset
//! without an answer. A frame over this relay's own (smaller) limit, or one that does not fit the
//! relay-wide [`ReceiveBudget`], is read into nothing and answered with a typed refusal, so the
//! client learns why without the relay ever holding its bytes. A frame that does not decode is
//! answered `BadRequest`.

use std::{
    io,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use clawnet_protocol::mailbox::{self, FRAME_HEADER_LEN, MailboxRequest, MailboxResponse, Quota};
use libp2p::{
    StreamProtocol,
    futures::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, io as futures_io},
    request_response,
};

/// The mailbox protocol as libp2p names it.
pub(crate) const PROTOCOL: StreamProtocol = StreamProtocol::new(mailbox::PROTOCOL_NAME);

/// A request as the relay reads it: decoded, or refused before decoding.
#[derive(Debug)]
pub(crate) enum InboundRequest {
    /// A well-formed request.
    Request(MailboxRequest),
    /// Refused before decoding; answer with [`FrameRefusal::response`].
    Refused(FrameRefusal),
}

/// Why a request frame was refused before it was decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FrameRefusal {
    /// Over this relay's request limit (only deposits get that large); it was not buffered.
    TooLarge {
        /// This relay's request limit.
        max_len: usize,
    },
    /// The relay-wide receive budget is spent; it was not buffered.
    Busy,
    /// The frame does not decode as a request.
    Malformed(String),
}

impl FrameRefusal {
    /// The answer to the refused request.
    pub(crate) fn response(&self) -> MailboxResponse {
        match self {
            FrameRefusal::TooLarge { max_len } => {
                MailboxResponse::TooLarge { max_len: u32::try_from(*max_len).unwrap_or(u32::MAX) }
            }
            FrameRefusal::Busy => MailboxResponse::QuotaExceeded(Quota::RelayBusy),
            FrameRefusal::Malformed(reason) => MailboxResponse::bad_request(reason.clone()),
        }
    }
}

/// Bytes of request frames being received at once, shared by every connection: with
/// per-connection stream limits alone, many peers sending slowly could make the relay hold
/// `connections × streams × largest request`.
#[derive(Debug, Clone)]
pub(crate) struct ReceiveBudget {
    available: Arc<AtomicUsize>,
}

/// Bytes taken from a [`ReceiveBudget`], given back when dropped.
#[derive(Debug)]
struct Reservation {
    available: Arc<AtomicUsize>,
    bytes: usize,
}

impl ReceiveBudget {
    /// A budget of `bytes`.
    pub(crate) fn new(bytes: usize) -> Self {
        Self { available: Arc::new(AtomicUsize::new(bytes)) }
    }

    fn try_reserve(&self, bytes: usize) -> Option<Reservation> {
        self.available
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |available| available.checked_sub(bytes))
            .ok()
            .map(|_| Reservation { available: Arc::clone(&self.available), bytes })
    }

    #[cfg(test)]
    fn available(&self) -> usize {
        self.available.load(Ordering::Acquire)
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.available.fetch_add(self.bytes, Ordering::AcqRel);
    }
}

/// The relay's codec: reads requests, writes responses. It never sends requests.
#[derive(Debug, Clone)]
pub(crate) struct MailboxCodec {
    max_request_len: usize,
    budget: ReceiveBudget,
}

impl MailboxCodec {
    /// Reads requests of at most `max_request_len` bytes (capped at the protocol's limit),
    /// drawing on `budget` while receiving them.
    pub(crate) fn new(max_request_len: usize, budget: ReceiveBudget) -> Self {
        Self { max_request_len: max_request_len.min(mailbox::MAX_REQUEST_LEN), budget }
    }

    async fn read_inbound<T: AsyncRead + Unpin + Send>(&self, io: &mut T) -> io::Result<InboundRequest> {
        let mut header = [0u8; FRAME_HEADER_LEN];
        io.read_exact(&mut header).await?;
        let len = mailbox::payload_len(header, mailbox::MAX_REQUEST_LEN)
            .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))?;
        if len > self.max_request_len {
            discard(io, len).await?;
            return Ok(InboundRequest::Refused(FrameRefusal::TooLarge { max_len: self.max_request_len }));
        }
        let Some(_reservation) = self.budget.try_reserve(len) else {
            discard(io, len).await?;
            return Ok(InboundRequest::Refused(FrameRefusal::Busy));
        };
        let mut payload = vec![0u8; len];
        io.read_exact(&mut payload).await?;
        Ok(match MailboxRequest::decode(&payload) {
            Ok(request) => InboundRequest::Request(request),
            Err(err) => InboundRequest::Refused(FrameRefusal::Malformed(err.to_string())),
        })
    }
}

/// Reads and drops exactly `len` bytes without holding them.
async fn discard<T: AsyncRead + Unpin + Send>(io: &mut T, len: usize) -> io::Result<()> {
    let expected = len as u64;
    let copied = futures_io::copy((&mut *io).take(expected), &mut futures_io::sink()).await?;
    if copied == expected { Ok(()) } else { Err(io::ErrorKind::UnexpectedEof.into()) }
}

fn unsupported() -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, "a bootstrap relay only answers mailbox requests")
}

impl request_response::Codec for MailboxCodec {
    type Protocol = StreamProtocol;
    type Request = InboundRequest;
    type Response = MailboxResponse;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<InboundRequest>
    where
        T: AsyncRead + Unpin + Send,
    {
        self.read_inbound(io).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, _: &mut T) -> io::Result<MailboxResponse>
    where
        T: AsyncRead + Unpin + Send,
    {
        Err(unsupported())
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, _: &mut T, _: InboundRequest) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        Err(unsupported())
    }

    async fn write_response<T>(&mut self, _: &StreamProtocol, io: &mut T, response: MailboxResponse) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&response.to_frame()).await?;
        io.flush().await
    }
}

#[cfg(test)]
mod tests {
    use clawnet_crypto::{SealedEnvelope, SigningSecret};
    use libp2p::futures::{executor::block_on, io::Cursor};
    use proptest::prelude::*;
    use request_response::Codec as _;

    use super::*;

    fn codec(max_request_len: usize, budget: usize) -> MailboxCodec {
        MailboxCodec::new(max_request_len, ReceiveBudget::new(budget))
    }

    fn read(codec: &mut MailboxCodec, bytes: &[u8]) -> (io::Result<InboundRequest>, u64) {
        let mut io = Cursor::new(bytes.to_vec());
        let result = block_on(codec.read_request(&PROTOCOL, &mut io));
        (result, io.position())
    }

    fn deposit(item_len: usize) -> MailboxRequest {
        let mut bytes = vec![0u8; item_len];
        bytes[0] = 1;
        bytes[65..67].copy_from_slice(&4u16.to_le_bytes());
        MailboxRequest::Deposit {
            recipient: SigningSecret::from_bytes(&[9; 32]).public_key(),
            item: SealedEnvelope::from_bytes(bytes).unwrap(),
            ttl_secs: 60,
        }
    }

    #[test]
    fn a_request_round_trips_through_a_frame() {
        let mut codec = codec(mailbox::MAX_REQUEST_LEN, 1 << 20);
        let request = deposit(2000);
        let (result, consumed) = read(&mut codec, &request.to_frame());
        assert!(matches!(result.unwrap(), InboundRequest::Request(decoded) if decoded == request));
        assert_eq!(consumed as usize, request.to_frame().len());
        assert_eq!(codec.budget.available(), 1 << 20, "the reservation is given back");
    }

    #[test]
    fn over_the_protocol_limit_is_a_protocol_error_before_reading_on() {
        let mut codec = codec(mailbox::MAX_REQUEST_LEN, usize::MAX);
        let mut frame = u32::MAX.to_be_bytes().to_vec();
        frame.extend_from_slice(&[0; 100]);
        let (result, consumed) = read(&mut codec, &frame);
        let err = result.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let inner = err.get_ref().and_then(|inner| inner.downcast_ref::<mailbox::FrameTooLarge>());
        assert_eq!(inner, Some(&mailbox::FrameTooLarge { len: u64::from(u32::MAX), max: mailbox::MAX_REQUEST_LEN }));
        assert_eq!(consumed as usize, FRAME_HEADER_LEN, "nothing past the header was read");
    }

    #[test]
    fn over_the_relay_limit_is_refused_as_too_large_without_buffering() {
        // A budget smaller than the frame: had the codec tried to buffer it, it would say busy.
        let mut codec = codec(4096, 100);
        let frame = deposit(8000).to_frame();
        let (result, consumed) = read(&mut codec, &frame);
        let InboundRequest::Refused(refusal) = result.unwrap() else { panic!("decoded an oversized deposit") };
        assert_eq!(refusal, FrameRefusal::TooLarge { max_len: 4096 });
        assert_eq!(refusal.response(), MailboxResponse::TooLarge { max_len: 4096 });
        assert_eq!(consumed as usize, frame.len(), "the body is consumed so the answer can be read");
    }

    #[test]
    fn a_spent_budget_refuses_as_busy() {
        let mut codec = codec(mailbox::MAX_REQUEST_LEN, 1000);
        let held = codec.budget.try_reserve(900).unwrap();
        let (result, _) = read(&mut codec, &deposit(600).to_frame());
        assert!(matches!(result.unwrap(), InboundRequest::Refused(FrameRefusal::Busy)));
        drop(held);
        let (result, _) = read(&mut codec, &deposit(600).to_frame());
        assert!(matches!(result.unwrap(), InboundRequest::Request(_)));
    }

    #[test]
    fn truncated_frames_are_eof_errors() {
        let mut codec = codec(mailbox::MAX_REQUEST_LEN, 1 << 20);
        let frame = deposit(600).to_frame();
        for cut in [0, 2, FRAME_HEADER_LEN, FRAME_HEADER_LEN + 1, frame.len() - 1] {
            let (result, _) = read(&mut codec, &frame[..cut]);
            assert_eq!(result.unwrap_err().kind(), io::ErrorKind::UnexpectedEof, "cut at {cut}");
        }
        // Also when the frame is being discarded.
        let mut small = codec_with_limit(700);
        let (result, _) = read(&mut small, &frame[..frame.len() - 1]);
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(codec.budget.available(), 1 << 20);
    }

    fn codec_with_limit(max_request_len: usize) -> MailboxCodec {
        codec(max_request_len, 1 << 20)
    }

    #[test]
    fn garbage_is_answered_bad_request() {
        let mut codec = codec(mailbox::MAX_REQUEST_LEN, 1 << 20);
        let mut frame = 5u32.to_be_bytes().to_vec();
        frame.extend_from_slice(b"hello");
        let (result, _) = read(&mut codec, &frame);
        let InboundRequest::Refused(refusal @ FrameRefusal::Malformed(_)) = result.unwrap() else { panic!() };
        assert!(matches!(refusal.response(), MailboxResponse::BadRequest(_)));
    }

    #[test]
    fn responses_are_framed() {
        let mut codec = codec(mailbox::MAX_REQUEST_LEN, 0);
        let mut out = Cursor::new(Vec::new());
        let response = MailboxResponse::Deleted { count: 3 };
        block_on(codec.write_response(&PROTOCOL, &mut out, response.clone())).unwrap();
        let bytes = out.into_inner();
        let len = mailbox::payload_len(bytes[..FRAME_HEADER_LEN].try_into().unwrap(), mailbox::MAX_RESPONSE_LEN);
        assert_eq!(len, Ok(bytes.len() - FRAME_HEADER_LEN));
        assert_eq!(MailboxResponse::decode(&bytes[FRAME_HEADER_LEN..]), Ok(response));
    }

    proptest! {
        #[test]
        fn any_input_gives_a_request_a_refusal_or_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let mut codec = codec(2048, 1 << 20);
            let (result, consumed) = read(&mut codec, &bytes);
            prop_assert!(consumed as usize <= bytes.len());
            if let Ok(InboundRequest::Request(request)) = result {
                prop_assert!(request.encode().len() <= 2048);
            }
            prop_assert_eq!(codec.budget.available(), 1 << 20);
        }

        #[test]
        fn any_payload_in_a_valid_frame_is_answered(payload in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let mut codec = codec(mailbox::MAX_REQUEST_LEN, 1 << 20);
            let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
            frame.extend_from_slice(&payload);
            let (result, consumed) = read(&mut codec, &frame);
            prop_assert!(result.is_ok(), "a complete frame always gets an answer");
            prop_assert_eq!(consumed as usize, frame.len());
        }
    }
}
