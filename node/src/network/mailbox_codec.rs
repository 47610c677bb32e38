//! The client side of `/clawnet/mailbox/1`, the bootstrap relays' encrypted mailbox: one
//! length-prefixed frame each way, checked against the protocol's limits before anything is
//! allocated beyond the bytes that arrive. Nodes only ask; they never serve a mailbox.

use std::io;

use clawnet_protocol::mailbox::{self, MailboxRequest, MailboxResponse};
use futures::{AsyncRead, AsyncWrite};
use libp2p::StreamProtocol;
use libp2p::request_response::Codec;

use super::codec::{read_frame, write_frame};

/// The mailbox protocol.
pub const MAILBOX_PROTOCOL: StreamProtocol = StreamProtocol::new(mailbox::PROTOCOL_NAME);

/// Frames mailbox requests and responses.
#[derive(Debug, Clone, Default)]
pub(crate) struct MailboxCodec;

fn invalid(err: impl std::error::Error + Send + Sync + 'static) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, err)
}

impl Codec for MailboxCodec {
    type Protocol = StreamProtocol;
    type Request = MailboxRequest;
    type Response = MailboxResponse;

    async fn read_request<T>(&mut self, _: &StreamProtocol, _: &mut T) -> io::Result<MailboxRequest>
    where
        T: AsyncRead + Unpin + Send,
    {
        // Only offered outbound; a peer cannot open this protocol towards a node.
        Err(io::Error::new(io::ErrorKind::Unsupported, "nodes do not serve a mailbox"))
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<MailboxResponse>
    where
        T: AsyncRead + Unpin + Send,
    {
        let frame = read_frame(io, mailbox::MAX_RESPONSE_LEN).await?;
        MailboxResponse::decode(&frame).map_err(invalid)
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, request: MailboxRequest) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &request.encode()).await
    }

    async fn write_response<T>(&mut self, _: &StreamProtocol, _: &mut T, _: MailboxResponse) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        Err(io::Error::new(io::ErrorKind::Unsupported, "nodes do not serve a mailbox"))
    }
}
