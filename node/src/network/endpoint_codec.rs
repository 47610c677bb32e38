//! The `/clawnet/endpoint/1` stream format: between a node and the file endpoints on its
//! owner's other devices. One length-prefixed frame each way, opaque here (the file endpoint
//! encodes and checks what is inside); only the two ends' peer ids, authenticated by Noise,
//! say who is talking.

use std::io;

use futures::{AsyncRead, AsyncWrite};
use libp2p::StreamProtocol;
use libp2p::request_response::Codec;

use super::codec::{read_frame, write_frame};

/// The remote file endpoint protocol.
pub const ENDPOINT_PROTOCOL: StreamProtocol = StreamProtocol::new("/clawnet/endpoint/1");

/// The largest frame: a whole file of the largest size a write may carry, and its envelope.
pub const MAX_ENDPOINT_FRAME: usize = 65 * 1024 * 1024;

/// Frames endpoint calls and answers.
#[derive(Debug, Clone, Default)]
pub(crate) struct EndpointCodec;

impl Codec for EndpointCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, MAX_ENDPOINT_FRAME).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, MAX_ENDPOINT_FRAME).await
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, request: Vec<u8>) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &request).await
    }

    async fn write_response<T>(&mut self, _: &StreamProtocol, io: &mut T, response: Vec<u8>) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &response).await
    }
}
