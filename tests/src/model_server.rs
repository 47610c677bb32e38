//! A scripted OpenAI-compatible model server on loopback, for tests of the model brain and of the
//! agents that use it.
//!
//! A test queues [`Script`]s; each request (any path, any method) takes the next one, and every
//! request is recorded so the test can check what the client sent. With the queue empty the server
//! answers 410 with a message saying so (not retried by clients, so a test that pushed too few
//! replies fails at once and clearly).
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use clawnet_node::agents::{Brain, BrainReply, Message};
//! use clawnet_tests::model_server::{ModelServer, Script};
//! let server = ModelServer::start().await?;
//! server.push(Script::status(503));
//! server.push(Script::answer("hello"));
//! let brain = server.brain(false)?; // or `LlmBrain::new(server.config())`
//! let reply = brain.decide(&[Message::user("hi")], &[], &mut |_: &str| {}).await?;
//! assert_eq!(reply, BrainReply::Say("hello".into()));
//! assert_eq!(server.requests().len(), 2);
//! # Ok(()) }
//! ```

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::Response;
use clawnet_node::agents::llm::{LlmBrain, LlmConfig, RetryDelays};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// One scripted reply.
#[derive(Debug, Clone)]
pub enum Script {
    /// 200 with this JSON body.
    Json(Value),
    /// 200 `text/event-stream`: each chunk written separately, `gap` apart. With `break_off`
    /// the connection is cut after the last chunk instead of the body ending cleanly.
    Stream {
        /// The body, in the pieces it is written in.
        chunks: Vec<Bytes>,
        /// Pause before each chunk after the first.
        gap: Duration,
        /// Cut the connection instead of ending the body.
        break_off: bool,
    },
    /// Exactly these bytes with this status and content type.
    Raw {
        /// The status.
        status: u16,
        /// The `Content-Type`.
        content_type: String,
        /// The body.
        body: Bytes,
    },
    /// An error status with an OpenAI-style error body, and `Retry-After` if given.
    Status {
        /// The status.
        status: u16,
        /// `Retry-After`, in seconds.
        retry_after: Option<u64>,
        /// The error message.
        message: String,
    },
    /// Wait, then reply with the inner script.
    Slow {
        /// How long to wait before answering at all.
        delay: Duration,
        /// The reply after the wait.
        then: Box<Script>,
    },
}

impl Script {
    /// A whole completion saying `text`.
    pub fn answer(text: &str) -> Script {
        Script::message(json!({"role": "assistant", "content": text}), "stop")
    }

    /// A whole completion calling `name` with `arguments` (sent as a JSON string, id `call_1`).
    pub fn tool_call(name: &str, arguments: Value) -> Script {
        Script::tool_calls(&[(name, arguments)])
    }

    /// A whole completion calling several tools (ids `call_1`, `call_2`, ...).
    pub fn tool_calls(calls: &[(&str, Value)]) -> Script {
        let calls: Vec<Value> = calls
            .iter()
            .enumerate()
            .map(|(idx, (name, arguments))| {
                json!({"id": format!("call_{}", idx + 1), "type": "function",
                       "function": {"name": name, "arguments": arguments.to_string()}})
            })
            .collect();
        Script::message(json!({"role": "assistant", "content": null, "tool_calls": calls}), "tool_calls")
    }

    /// A whole completion carrying `message` as its one choice.
    pub fn message(message: Value, finish_reason: &str) -> Script {
        Script::Json(json!({
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": 0,
            "model": "scripted",
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }))
    }

    /// A stream saying `pieces` one chunk each, then `finish_reason: stop` and `[DONE]`.
    pub fn stream_answer(pieces: &[&str]) -> Script {
        let mut events = vec![delta(json!({"role": "assistant", "content": ""}))];
        events.extend(pieces.iter().map(|piece| delta(json!({"content": piece}))));
        events.push(finish("stop"));
        Script::stream_events(&events)
    }

    /// A stream calling `name` with its arguments text cut into `fragments`, the way servers
    /// stream calls (id and name in the first delta, then argument pieces by `index`).
    pub fn stream_tool_call(name: &str, fragments: &[&str]) -> Script {
        let mut events = vec![delta(json!({"role": "assistant", "tool_calls": [
            {"index": 0, "id": "call_1", "type": "function", "function": {"name": name, "arguments": ""}}
        ]}))];
        events.extend(
            fragments
                .iter()
                .map(|fragment| delta(json!({"tool_calls": [{"index": 0, "function": {"arguments": fragment}}]}))),
        );
        events.push(finish("tool_calls"));
        Script::stream_events(&events)
    }

    /// A stream of these chunk objects, one event each, then `[DONE]`.
    pub fn stream_events(events: &[Value]) -> Script {
        let mut chunks: Vec<Bytes> = events.iter().map(|event| Bytes::from(sse_event(event))).collect();
        chunks.push(Bytes::from_static(b"data: [DONE]\n\n"));
        Script::sse(chunks)
    }

    /// A stream of exactly these body pieces (write the `data:` lines yourself).
    pub fn sse<B: Into<Bytes>>(chunks: impl IntoIterator<Item = B>) -> Script {
        Script::Stream { chunks: chunks.into_iter().map(Into::into).collect(), gap: Duration::ZERO, break_off: false }
    }

    /// This stream, cut off after its last chunk (the connection drops mid-body).
    pub fn broken(self) -> Script {
        match self {
            Script::Stream { chunks, gap, .. } => Script::Stream { chunks, gap, break_off: true },
            other => other,
        }
    }

    /// This stream, pausing `gap` between chunks.
    pub fn with_gap(self, gap: Duration) -> Script {
        match self {
            Script::Stream { chunks, break_off, .. } => Script::Stream { chunks, gap, break_off },
            other => other,
        }
    }

    /// An error status (429, 500, ...).
    pub fn status(status: u16) -> Script {
        Script::Status { status, retry_after: None, message: format!("scripted HTTP {status}") }
    }

    /// An error status whose message is `message`.
    pub fn status_with(status: u16, message: &str) -> Script {
        Script::Status { status, retry_after: None, message: message.into() }
    }

    /// An error status with `Retry-After: secs`.
    pub fn retry_after(status: u16, secs: u64) -> Script {
        Script::Status { status, retry_after: Some(secs), message: format!("scripted HTTP {status}, retry later") }
    }

    /// `then`, after waiting `delay`.
    pub fn slow(delay: Duration, then: Script) -> Script {
        Script::Slow { delay, then: Box::new(then) }
    }

    /// 200 `application/json` with exactly these bytes (which need not be JSON).
    pub fn raw(body: impl Into<Bytes>) -> Script {
        Script::raw_with(200, "application/json", body)
    }

    /// Exactly these bytes with this status and content type.
    pub fn raw_with(status: u16, content_type: &str, body: impl Into<Bytes>) -> Script {
        Script::Raw { status, content_type: content_type.into(), body: body.into() }
    }
}

/// A streamed chunk whose one choice carries `delta`.
pub fn delta(delta: Value) -> Value {
    json!({"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 0, "model": "scripted",
           "choices": [{"index": 0, "delta": delta, "finish_reason": null}]})
}

/// The last streamed chunk: an empty delta with `finish_reason`.
pub fn finish(finish_reason: &str) -> Value {
    json!({"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 0, "model": "scripted",
           "choices": [{"index": 0, "delta": {}, "finish_reason": finish_reason}]})
}

/// `value` as one server-sent event.
pub fn sse_event(value: &Value) -> String {
    format!("data: {value}\n\n")
}

/// A request the server received.
#[derive(Debug, Clone)]
pub struct ReceivedRequest {
    /// `POST`, normally.
    pub method: String,
    /// The path, e.g. `/v1/chat/completions`.
    pub path: String,
    /// Its headers (names in lowercase).
    pub headers: Vec<(String, String)>,
    /// The body as JSON (a JSON string of the text if it was not JSON).
    pub body: Value,
}

impl ReceivedRequest {
    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }
}

/// The running server; stops when dropped.
#[derive(Debug)]
pub struct ModelServer {
    address: SocketAddr,
    state: Arc<Shared>,
    task: JoinHandle<()>,
}

#[derive(Debug, Default)]
struct Shared {
    scripts: Mutex<VecDeque<Script>>,
    received: Mutex<Vec<ReceivedRequest>>,
}

impl ModelServer {
    /// Starts a server on `127.0.0.1` at a free port.
    pub async fn start() -> anyhow::Result<ModelServer> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding the model server")?;
        let address = listener.local_addr()?;
        let state = Arc::new(Shared::default());
        let app =
            Router::new().fallback(serve).layer(DefaultBodyLimit::max(64 * 1024 * 1024)).with_state(Arc::clone(&state));
        let task = tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                eprintln!("model server stopped: {err}");
            }
        });
        Ok(ModelServer { address, state, task })
    }

    /// The API root to configure a client with: `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.address)
    }

    /// A configuration pointing at this server: model `scripted`, not streamed, 5 s per request.
    pub fn config(&self) -> LlmConfig {
        LlmConfig {
            timeout_secs: 5,
            connect_timeout_secs: 2,
            stream: false,
            ..LlmConfig::new(self.base_url(), "scripted")
        }
    }

    /// A brain asking this server (streaming or not), retrying after 10 ms instead of seconds.
    pub fn brain(&self, stream: bool) -> anyhow::Result<LlmBrain> {
        let brain = LlmBrain::new(LlmConfig { stream, ..self.config() })?;
        Ok(brain.with_retry_delays(RetryDelays { first: Duration::from_millis(10), max: Duration::from_secs(2) }))
    }

    /// The address it listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Queues `script` as the reply to a coming request.
    pub fn push(&self, script: Script) {
        lock(&self.state.scripts).push_back(script);
    }

    /// Queues several replies, in order.
    pub fn push_all(&self, scripts: impl IntoIterator<Item = Script>) {
        lock(&self.state.scripts).extend(scripts);
    }

    /// Replies queued and not yet used.
    pub fn n_unused(&self) -> usize {
        lock(&self.state.scripts).len()
    }

    /// The bodies of the requests received so far, in order.
    pub fn requests(&self) -> Vec<Value> {
        lock(&self.state.received).iter().map(|request| request.body.clone()).collect()
    }

    /// The requests received so far, with path and headers.
    pub fn received(&self) -> Vec<ReceivedRequest> {
        lock(&self.state.received).clone()
    }
}

impl Drop for ModelServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    State(state): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = serde_json::from_slice(&body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into()));
    let headers = headers
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
        .collect();
    lock(&state.received).push(ReceivedRequest {
        method: method.to_string(),
        path: uri.path().to_owned(),
        headers,
        body,
    });
    let script = lock(&state.scripts).pop_front();
    match script {
        Some(script) => reply(script).await,
        None => error_response(410, None, "the scripted model server has no reply left for this request"),
    }
}

async fn reply(mut script: Script) -> Response {
    while let Script::Slow { delay, then } = script {
        tokio::time::sleep(delay).await;
        script = *then;
    }
    match script {
        Script::Json(body) => response(200, "application/json", Body::from(body.to_string())),
        Script::Raw { status, content_type, body } => response(status, &content_type, Body::from(body)),
        Script::Status { status, retry_after, message } => error_response(status, retry_after, &message),
        Script::Stream { chunks, gap, break_off } => {
            let pieces = futures::stream::unfold((chunks.into_iter(), true, break_off), move |state| async move {
                let (mut chunks, first, break_off) = state;
                match chunks.next() {
                    Some(chunk) => {
                        if !first && !gap.is_zero() {
                            tokio::time::sleep(gap).await;
                        }
                        Some((Ok(chunk), (chunks, false, break_off)))
                    }
                    None if break_off => {
                        // Let what was written reach the client before the connection drops.
                        tokio::time::sleep(gap.max(Duration::from_millis(50))).await;
                        Some((Err(std::io::Error::other("scripted break-off")), (chunks, false, false)))
                    }
                    None => None,
                }
            });
            response(200, "text/event-stream", Body::from_stream(pieces))
        }
        Script::Slow { .. } => error_response(500, None, "unreachable: slow scripts are unwrapped above"),
    }
}

fn error_response(status: u16, retry_after: Option<u64>, message: &str) -> Response {
    let body = json!({"error": {"message": message, "type": "scripted", "code": status}});
    let mut reply = response(status, "application/json", Body::from(body.to_string()));
    if let Some(secs) = retry_after {
        reply.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
    }
    reply
}

fn response(status: u16, content_type: &str, body: Body) -> Response {
    let mut reply = Response::new(body);
    *reply.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(value) = header::HeaderValue::from_str(content_type) {
        reply.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    reply
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
