//! The `/clawnet/deliver/1` stream format: one length-prefixed frame each way. The request is
//! an encoded `DeliveryBatch`, the response an encoded `DeliveryReply`; frames are size-checked
//! before anything is allocated.

use std::io;

use clawnet_crypto::{WireFormat, encoding};
use clawnet_protocol::wire::{DeliveryBatch, DeliveryReply};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use libp2p::request_response::Codec;

/// The delivery protocol.
pub const DELIVER_PROTOCOL: StreamProtocol = StreamProtocol::new("/clawnet/deliver/1");

/// Frames deliveries and replies.
#[derive(Debug, Clone, Default)]
pub(crate) struct DeliverCodec;

impl Codec for DeliverCodec {
    type Protocol = StreamProtocol;
    type Request = DeliveryBatch;
    type Response = DeliveryReply;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<DeliveryBatch>
    where
        T: AsyncRead + Unpin + Send,
    {
        let frame = read_frame(io, DeliveryBatch::MAX_LEN).await?;
        DeliveryBatch::decode(&frame).map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<DeliveryReply>
    where
        T: AsyncRead + Unpin + Send,
    {
        let frame = read_frame(io, DeliveryReply::MAX_LEN).await?;
        encoding::decode(&frame).map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, request: DeliveryBatch) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &request.encode()).await
    }

    async fn write_response<T>(&mut self, _: &StreamProtocol, io: &mut T, response: DeliveryReply) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &encoding::encode(&response)).await
    }
}

/// Reads one frame of at most `max` bytes. Memory grows with the bytes that actually arrive,
/// so a peer announcing a large frame and sending nothing costs nothing.
pub(super) async fn read_frame<T: AsyncRead + Unpin>(io: &mut T, max: usize) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("frame of {len} bytes exceeds {max}")));
    }
    let mut frame = Vec::with_capacity(len.min(FIRST_ALLOCATION));
    (&mut *io).take(len as u64).read_to_end(&mut frame).await?;
    if frame.len() != len {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the frame ended early"));
    }
    Ok(frame)
}

/// The most a frame reserves before its bytes arrive.
const FIRST_ALLOCATION: usize = 64 * 1024;

pub(super) async fn write_frame<T: AsyncWrite + Unpin>(io: &mut T, frame: &[u8]) -> io::Result<()> {
    let len = u32::try_from(frame.len()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(frame).await?;
    io.close().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;

    #[test]
    fn oversized_frame_is_refused_before_allocating() {
        let mut input = Cursor::new(u32::MAX.to_be_bytes().to_vec());
        let err = futures::executor::block_on(read_frame(&mut input, 1024)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn frames_round_trip_and_truncation_fails() {
        let mut out = Cursor::new(Vec::new());
        futures::executor::block_on(write_frame(&mut out, b"hello")).unwrap();
        let bytes = out.into_inner();
        let read = futures::executor::block_on(read_frame(&mut Cursor::new(bytes.clone()), 16)).unwrap();
        assert_eq!(read, b"hello");
        let cut = &bytes[..bytes.len() - 1];
        assert!(futures::executor::block_on(read_frame(&mut Cursor::new(cut.to_vec()), 16)).is_err());
    }
}
