//! The metrics endpoint: a deliberately tiny HTTP/1.1 server that answers `GET /metrics`.
//!
//! One request per connection (`Connection: close`), a request head of at most
//! [`MAX_REQUEST_HEAD`] bytes read within [`CONNECTION_TIMEOUT`], and at most
//! [`MAX_CONNECTIONS`] connections served at once (further ones wait in the listen backlog).
//! Anything but `GET`/`HEAD` of `/metrics` gets a 4xx status and no body worth parsing.

use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use libp2p::metrics::Registry;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    task::JoinSet,
};

use crate::config::MetricsConfig;

/// The largest request head read; a scraper's is a few hundred bytes.
const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// Time allowed for one connection, from accept to the last byte of the response.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once.
const MAX_CONNECTIONS: usize = 16;
/// The content type of the OpenMetrics text format, which Prometheus scrapes.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Why the metrics endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsError {
    /// The address is not loopback and exposing metrics was not asked for.
    #[error("metrics address {0} is not loopback; pass --metrics-public to serve metrics on it")]
    NotLoopback(SocketAddr),
    /// The address could not be bound.
    #[error("cannot listen for metrics on {address}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// What the OS reported.
        #[source]
        source: io::Error,
    },
}

/// The endpoint's bound listener.
#[derive(Debug)]
pub(crate) struct BoundEndpoint {
    pub(crate) listener: TcpListener,
    /// The address bound, with the actual port if port 0 was asked for.
    pub(crate) address: SocketAddr,
}

/// Binds the endpoint's listener. Must be called inside a tokio runtime.
pub(crate) fn bind(config: &MetricsConfig) -> Result<BoundEndpoint, MetricsError> {
    let address = config.address;
    if !address.ip().is_loopback() && !config.allow_public {
        return Err(MetricsError::NotLoopback(address));
    }
    let bind_err = |source| MetricsError::Bind { address, source };
    let listener = std::net::TcpListener::bind(address).map_err(bind_err)?;
    listener.set_nonblocking(true).map_err(bind_err)?;
    let address = listener.local_addr().map_err(bind_err)?;
    Ok(BoundEndpoint { listener: TcpListener::from_std(listener).map_err(bind_err)?, address })
}

/// Serves `registry` on `listener` until dropped (dropping also stops every connection).
pub(crate) async fn serve(listener: TcpListener, registry: Arc<Registry>) {
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        if connections.len() >= MAX_CONNECTIONS {
            connections.join_next().await;
            continue;
        }
        match listener.accept().await {
            Ok((stream, remote)) => {
                let registry = Arc::clone(&registry);
                connections.spawn(async move {
                    match tokio::time::timeout(CONNECTION_TIMEOUT, answer(stream, &registry)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(err)) => tracing::debug!(%remote, %err, "metrics connection failed"),
                        Err(_) => tracing::debug!(%remote, "metrics connection timed out"),
                    }
                });
            }
            Err(err) => {
                // Typically out of file descriptors: back off instead of spinning.
                tracing::warn!(%err, "cannot accept a metrics connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn answer(mut stream: TcpStream, registry: &Registry) -> io::Result<()> {
    let response = match read_head(&mut stream).await? {
        Some(head) => respond(&head, registry),
        None => status_only("431 Request Header Fields Too Large"),
    };
    stream.write_all(&response).await?;
    stream.shutdown().await
}

/// Reads up to the end of the request head; `None` if it is longer than allowed.
async fn read_head(stream: &mut TcpStream) -> io::Result<Option<Vec<u8>>> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&chunk[..n]);
        if let Some(end) = head.windows(4).position(|window| window == b"\r\n\r\n") {
            head.truncate(end);
            return Ok(Some(head));
        }
        if head.len() > MAX_REQUEST_HEAD {
            return Ok(None);
        }
    }
}

fn respond(head: &[u8], registry: &Registry) -> Vec<u8> {
    let request_line = head.split(|&b| b == b'\r' || b == b'\n').next().unwrap_or_default();
    let mut parts = request_line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return status_only("400 Bad Request");
    };
    if !version.starts_with(b"HTTP/1.") {
        return status_only("505 HTTP Version Not Supported");
    }
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    if path != b"/metrics" {
        return status_only("404 Not Found");
    }
    let with_body = match method {
        b"GET" => true,
        b"HEAD" => false,
        _ => return status_only("405 Method Not Allowed"),
    };
    let mut body = String::new();
    if prometheus_client::encoding::text::encode(&mut body, registry).is_err() {
        return status_only("500 Internal Server Error");
    }
    let mut response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: {CONTENT_TYPE}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if with_body {
        response.extend_from_slice(body.as_bytes());
    }
    response
}

fn status_only(status: &str) -> Vec<u8> {
    let allow = if status.starts_with("405") { "allow: GET, HEAD\r\n" } else { "" };
    format!("HTTP/1.1 {status}\r\n{allow}content-length: 0\r\nconnection: close\r\n\r\n").into_bytes()
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::counter::Counter;

    use super::*;

    fn registry() -> Registry {
        let mut registry = Registry::default();
        let counter: Counter = Counter::default();
        counter.inc();
        registry.register("probe", "A test counter", counter);
        registry
    }

    fn status_of(response: &[u8]) -> String {
        let text = String::from_utf8_lossy(response);
        text.lines().next().unwrap_or_default().to_owned()
    }

    #[test]
    fn get_metrics_serves_the_registry() {
        let response = respond(b"GET /metrics HTTP/1.1\r\nHost: x", &registry());
        let text = String::from_utf8(response).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("probe_total 1"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");

        let head = respond(b"HEAD /metrics?x=1 HTTP/1.0", &registry());
        assert_eq!(status_of(&head), "HTTP/1.1 200 OK");
        assert!(String::from_utf8(head).unwrap().ends_with("\r\n\r\n"));
    }

    #[test]
    fn anything_else_gets_a_client_error() {
        let registry = registry();
        assert_eq!(status_of(&respond(b"GET / HTTP/1.1", &registry)), "HTTP/1.1 404 Not Found");
        assert_eq!(status_of(&respond(b"POST /metrics HTTP/1.1", &registry)), "HTTP/1.1 405 Method Not Allowed");
        assert_eq!(status_of(&respond(b"GET /metrics", &registry)), "HTTP/1.1 400 Bad Request");
        assert_eq!(status_of(&respond(b"", &registry)), "HTTP/1.1 400 Bad Request");
        assert_eq!(status_of(&respond(b"\xff\xfe \x00 HTTP/1.1", &registry)), "HTTP/1.1 404 Not Found");
        assert_eq!(status_of(&respond(b"GET /metrics SPDY/3", &registry)), "HTTP/1.1 505 HTTP Version Not Supported");
    }

    #[test]
    fn non_loopback_addresses_need_an_explicit_opt_in() {
        let public = MetricsConfig { address: "0.0.0.0:0".parse().unwrap(), allow_public: false };
        assert!(matches!(bind_for_test(&public), Err(MetricsError::NotLoopback(_))));
        let loopback = MetricsConfig { address: "127.0.0.1:0".parse().unwrap(), allow_public: false };
        assert!(bind_for_test(&loopback).is_ok());
    }

    fn bind_for_test(config: &MetricsConfig) -> Result<BoundEndpoint, MetricsError> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build().unwrap();
        runtime.block_on(async { bind(config) })
    }

    #[tokio::test]
    async fn a_head_that_never_ends_is_cut_off() {
        let BoundEndpoint { listener, address } =
            bind(&MetricsConfig { address: "127.0.0.1:0".parse().unwrap(), allow_public: false }).unwrap();
        assert_ne!(address.port(), 0);
        let server = tokio::spawn(serve(listener, Arc::new(registry())));
        let mut client = TcpStream::connect(address).await.unwrap();
        // One byte over the limit, so the server has read everything when it answers (unread
        // bytes would make it reset the connection instead of closing it).
        let mut head = b"GET /metrics HTTP/1.1\r\nx: ".to_vec();
        head.resize(MAX_REQUEST_HEAD + 1, b'a');
        client.write_all(&head).await.unwrap();
        let mut response = Vec::new();
        client.read_to_end(&mut response).await.unwrap();
        assert_eq!(status_of(&response), "HTTP/1.1 431 Request Header Fields Too Large");
        server.abort();
    }
}
