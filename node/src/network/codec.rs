//! Length-prefixed frames, the format of every ClawNet stream: `/clawnet/deliver/1` (see
//! `lanes`), `/clawnet/endpoint/1` and `/clawnet/mailbox/1`. Frames are size-checked before
//! anything is allocated.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;

/// The delivery protocol.
pub const DELIVER_PROTOCOL: StreamProtocol = StreamProtocol::new("/clawnet/deliver/1");

/// Reads one frame of at most `max` bytes. Memory grows with the bytes that actually arrive,
/// so a peer announcing a large frame and sending nothing costs nothing.
pub(super) async fn read_frame<T: AsyncRead + Unpin>(io: &mut T, max: usize) -> io::Result<Vec<u8>> {
    let len = read_len(io).await?;
    read_body(io, len, max).await
}

/// Reads a frame's length prefix (for a reader that waits differently for a frame to begin).
pub(super) async fn read_len<T: AsyncRead + Unpin>(io: &mut T) -> io::Result<usize> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    Ok(u32::from_be_bytes(len) as usize)
}

/// Reads the `len` bytes of a frame that follow its prefix, refusing more than `max`.
pub(super) async fn read_body<T: AsyncRead + Unpin>(io: &mut T, len: usize, max: usize) -> io::Result<Vec<u8>> {
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

/// Writes one frame and closes the stream (one frame each way).
pub(super) async fn write_frame<T: AsyncWrite + Unpin>(io: &mut T, frame: &[u8]) -> io::Result<()> {
    send_frame(io, frame).await?;
    io.close().await
}

/// Writes one frame and flushes it, leaving the stream open for more.
pub(super) async fn send_frame<T: AsyncWrite + Unpin>(io: &mut T, frame: &[u8]) -> io::Result<()> {
    let len = u32::try_from(frame.len()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    // One write: each write on a Yamux stream is a frame of its own, sealed by Noise on its own.
    let mut bytes = Vec::with_capacity(4 + frame.len());
    bytes.extend_from_slice(&len.to_be_bytes());
    bytes.extend_from_slice(frame);
    io.write_all(&bytes).await?;
    io.flush().await
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
