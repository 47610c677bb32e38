//! The model brain: an OpenAI-compatible chat-completions client with tool calling, for Ollama,
//! llama.cpp's server, vLLM and hosted APIs ([`LlmBrain`], configured by [`LlmConfig`], the
//! `[llm]` section of `config.toml`).
//!
//! One decision is one `POST {base_url}/chat/completions`, streamed (server-sent events) or not.
//! Everything the server sends is bounded and checked: the answer is read up to
//! [`MAX_ANSWER_BYTES`], each request is cut off after `timeout_secs`, rate limits (429) and
//! server errors (5xx) are retried `max_retries` times with exponential backoff (or the server's
//! `Retry-After`, capped), and what comes back is read tolerantly but must be a completion whose
//! tool calls name offered tools with a JSON object of arguments (details in `llm/wire.rs`). A
//! server that refuses `tool_choice` (HTTP 400 naming it) is asked again without it, and this
//! brain never sends it again. The API key is sent only as a bearer token: it is not printed by
//! `Debug`, is removed from every error, and is never sent in clear to a host off this machine.

mod request;
mod sse;
mod wire;

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};

use super::brain::{Brain, BrainError, BrainReply};
use super::conversation::{Message, ToolSpec};
use sse::SseDecoder;
use wire::{CallRules, StreamAssembly};

/// The most an answer may weigh, streamed or not.
pub const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;
/// The most read of an error answer (only its start is reported).
const MAX_ERROR_BYTES: usize = 64 * 1024;
/// The most retries a configuration may ask for.
const MAX_RETRIES_ALLOWED: u32 = 10;
/// Where Ollama serves its OpenAI-compatible API.
const OLLAMA_BASE_URL: &str = "http://127.0.0.1:11434/v1";

/// The `[llm]` section: which model server and model an agent's brain uses.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LlmConfig {
    /// The API root, up to and without `/chat/completions` (default Ollama's
    /// `http://127.0.0.1:11434/v1`; llama.cpp's server is `http://127.0.0.1:8080/v1`).
    pub base_url: String,
    /// The model to ask (required; e.g. `qwen2.5:7b`).
    pub model: String,
    /// Bearer token for hosted APIs. Never printed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// Seconds one request may take, from connecting to the last byte (default 120).
    pub timeout_secs: u64,
    /// Seconds to establish the connection (default 10).
    pub connect_timeout_secs: u64,
    /// Retries after a rate limit (429) or server error (5xx) (default 3, at most 10).
    pub max_retries: u32,
    /// Stream the answer, so text reaches the owner as it is produced (default true).
    pub stream: bool,
    /// Sampling temperature, 0 to 2 (default: the server's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Most tokens to generate (default: the server's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
}

impl Default for LlmConfig {
    /// Ollama on this machine, with no model named yet (so not yet valid).
    fn default() -> LlmConfig {
        LlmConfig {
            base_url: OLLAMA_BASE_URL.into(),
            model: String::new(),
            api_key: None,
            timeout_secs: 120,
            connect_timeout_secs: 10,
            max_retries: 3,
            stream: true,
            temperature: None,
            max_tokens: None,
        }
    }
}

impl fmt::Debug for LlmConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LlmConfig")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| Redacted))
            .field("timeout_secs", &self.timeout_secs)
            .field("connect_timeout_secs", &self.connect_timeout_secs)
            .field("max_retries", &self.max_retries)
            .field("stream", &self.stream)
            .field("temperature", &self.temperature)
            .field("max_tokens", &self.max_tokens)
            .finish()
    }
}

impl LlmConfig {
    /// `model` at `base_url`, with the defaults for everything else.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> LlmConfig {
        LlmConfig { base_url: base_url.into(), model: model.into(), ..LlmConfig::default() }
    }

    /// Checks what would otherwise fail at the first decision, with a message naming the key.
    pub fn validate(&self) -> Result<(), BrainError> {
        self.endpoint().map(|_| ())
    }

    /// The key to send, if any (an empty key counts as none).
    fn key(&self) -> Option<&str> {
        self.api_key.as_deref().map(str::trim).filter(|key| !key.is_empty())
    }

    /// Validates and returns the chat-completions URL.
    fn endpoint(&self) -> Result<Url, BrainError> {
        let config = |message: String| Err(BrainError::Config(message));
        let base = self.base_url.trim();
        let scheme = base.split_once("://").map(|(scheme, _)| scheme.to_ascii_lowercase());
        if !matches!(scheme.as_deref(), Some("http" | "https")) {
            return config(format!("llm.base_url {base:?} must start with http:// or https://"));
        }
        let mut url = match Url::parse(base) {
            Ok(url) => url,
            Err(err) => return config(format!("llm.base_url {base:?} is not a URL ({err})")),
        };
        if url.host_str().is_none_or(str::is_empty) {
            return config(format!("llm.base_url {base:?} names no host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return config("llm.base_url must not carry credentials: put the key in llm.api_key".into());
        }
        if url.query().is_some() || url.fragment().is_some() {
            return config("llm.base_url must not have a query or fragment".into());
        }
        if self.model.trim().is_empty() {
            return config("llm.model is empty: name the model to use (e.g. \"qwen2.5:7b\")".into());
        }
        if self.timeout_secs == 0 || self.connect_timeout_secs == 0 {
            return config("llm.timeout_secs and llm.connect_timeout_secs must be at least 1".into());
        }
        if self.max_retries > MAX_RETRIES_ALLOWED {
            return config(format!("llm.max_retries must be at most {MAX_RETRIES_ALLOWED}"));
        }
        if let Some(temperature) = self.temperature
            && !(0.0..=2.0).contains(&temperature)
        {
            return config("llm.temperature must be between 0 and 2".into());
        }
        if self.max_tokens == Some(0) {
            return config("llm.max_tokens must be at least 1".into());
        }
        if let Some(key) = self.key() {
            if !key.bytes().all(|byte| byte.is_ascii_graphic()) {
                return config("llm.api_key has characters that cannot be sent in an HTTP header".into());
            }
            if url.scheme() == "http" && !is_loopback(&url) {
                return config(format!(
                    "llm.api_key would be sent in clear to {}: use https:// for a model server on another machine",
                    url.host_str().unwrap_or_default()
                ));
            }
        }
        let path = url.path().trim_end_matches('/');
        if !path.ends_with("/chat/completions") {
            let path = format!("{path}/chat/completions");
            url.set_path(&path);
        }
        Ok(url)
    }
}

/// How long to wait before retrying a rate-limited or failing server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryDelays {
    /// The wait before the first retry; each next one doubles.
    pub first: Duration,
    /// The longest wait, also the cap on a server's `Retry-After`.
    pub max: Duration,
}

impl Default for RetryDelays {
    fn default() -> RetryDelays {
        RetryDelays { first: Duration::from_millis(500), max: Duration::from_secs(30) }
    }
}

impl RetryDelays {
    /// The wait before retry number `retry` (from 1), or what the server asked for, capped.
    fn before(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let backoff = self.first.saturating_mul(2u32.saturating_pow(retry.saturating_sub(1)));
        retry_after.unwrap_or(backoff).min(self.max)
    }
}

/// A [`Brain`] backed by an OpenAI-compatible chat-completions server.
pub struct LlmBrain {
    config: LlmConfig,
    endpoint: Url,
    http: reqwest::Client,
    delays: RetryDelays,
    /// Cleared for good once the server refuses `tool_choice`.
    offer_tool_choice: AtomicBool,
}

impl fmt::Debug for LlmBrain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LlmBrain")
            .field("endpoint", &self.endpoint.as_str())
            .field("model", &self.config.model)
            .field("api_key", &self.config.key().map(|_| Redacted))
            .field("stream", &self.config.stream)
            .field("offer_tool_choice", &self.offer_tool_choice.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl LlmBrain {
    /// A brain asking `config.model`; fails only on an invalid configuration (nothing is sent).
    pub fn new(config: LlmConfig) -> Result<LlmBrain, BrainError> {
        let endpoint = config.endpoint()?;
        let mut http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(config.connect_timeout_secs))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("clawnet/", env!("CARGO_PKG_VERSION")));
        if is_loopback(&endpoint) {
            http = http.no_proxy(); // a proxy from the environment must not see local traffic
        }
        let http = http.build().map_err(|err| BrainError::Config(format!("cannot set up HTTP: {}", cause(&err))))?;
        Ok(LlmBrain {
            config,
            endpoint,
            http,
            delays: RetryDelays::default(),
            offer_tool_choice: AtomicBool::new(true),
        })
    }

    /// The same brain waiting `delays` between retries (tests use short ones).
    pub fn with_retry_delays(mut self, delays: RetryDelays) -> LlmBrain {
        self.delays = delays;
        self
    }

    /// Its configuration.
    pub fn config(&self) -> &LlmConfig {
        &self.config
    }

    /// Whether requests still carry `tool_choice` (false once the server refused it).
    pub fn offers_tool_choice(&self) -> bool {
        self.offer_tool_choice.load(Ordering::Relaxed)
    }

    async fn decide_unscrubbed(
        &self,
        conversation: &[Message],
        tools: &[ToolSpec],
        on_text: &mut (dyn FnMut(&str) + Send),
    ) -> Result<BrainReply, BrainError> {
        let rules = CallRules { tools, turn: conversation.len() };
        let mut tool_choice = !tools.is_empty() && self.offers_tool_choice();
        let mut body = request::request_body(&self.config, conversation, tools, tool_choice)?;
        let timeout = Duration::from_secs(self.config.timeout_secs);
        let mut attempts = 0u32;
        let mut retries = 0u32;
        loop {
            attempts += 1;
            let refusal = match tokio::time::timeout(timeout, self.attempt(&body, rules, &mut *on_text)).await {
                Err(_elapsed) => return Err(BrainError::Timeout(self.config.timeout_secs)),
                Ok(Err(err)) => return Err(err),
                Ok(Ok(Attempt::Answer(reply))) => return Ok(reply),
                Ok(Ok(Attempt::Refused(refusal))) => refusal,
            };
            if matches!(refusal.status.as_u16(), 400 | 422) && tool_choice && refusal.mentions_tool_choice() {
                tracing::info!(endpoint = %self.endpoint, "the model server refuses tool_choice; no longer sending it");
                self.offer_tool_choice.store(false, Ordering::Relaxed);
                tool_choice = false;
                body = request::request_body(&self.config, conversation, tools, false)?;
                continue;
            }
            let transient = refusal.status == StatusCode::TOO_MANY_REQUESTS || refusal.status.is_server_error();
            if !transient || retries >= self.config.max_retries {
                return Err(BrainError::Http { status: refusal.status.as_u16(), attempts, body: refusal.excerpt() });
            }
            retries += 1;
            let wait = self.delays.before(retries, refusal.retry_after);
            tracing::debug!(status = refusal.status.as_u16(), ?wait, retries, "model server busy; retrying");
            tokio::time::sleep(wait).await;
        }
    }

    /// One HTTP request. Text reaches `on_text` as it arrives.
    async fn attempt(
        &self,
        body: &[u8],
        rules: CallRules<'_>,
        on_text: &mut (dyn FnMut(&str) + Send),
    ) -> Result<Attempt, BrainError> {
        let accept = if self.config.stream { "text/event-stream" } else { "application/json" };
        let mut request = self
            .http
            .post(self.endpoint.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, accept)
            .body(body.to_vec());
        if let Some(key) = self.config.key() {
            request = request.bearer_auth(key);
        }
        let mut response = request.send().await.map_err(|err| self.transport_error(&err))?;
        let status = response.status();
        if !status.is_success() {
            let retry_after = retry_after(response.headers());
            let (mut body, _) = read_up_to(&mut response, MAX_ERROR_BYTES).await;
            if body.len() >= MAX_ERROR_BYTES {
                // Cut so that no partial key can remain at the end.
                body.truncate(MAX_ERROR_BYTES.saturating_sub(self.config.key().map_or(0, str::len)));
            }
            let body = redact(&body, self.config.key());
            return Ok(Attempt::Refused(Refusal { status, retry_after, body: String::from_utf8_lossy(&body).into() }));
        }
        if response.content_length().is_some_and(|length| length > MAX_ANSWER_BYTES as u64) {
            return Err(too_large());
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        // Servers may ignore `stream`: believe the content type, else what was asked for.
        let streamed =
            content_type.starts_with("text/event-stream") || (self.config.stream && !content_type.contains("json"));
        if streamed {
            return read_stream(&mut response, self.config.key(), rules, on_text).await.map(Attempt::Answer);
        }
        let (body, complete) = read_up_to(&mut response, MAX_ANSWER_BYTES + 1).await;
        if body.len() > MAX_ANSWER_BYTES {
            return Err(too_large());
        }
        if let Err(err) = complete {
            return Err(BrainError::Malformed(format!("the answer broke off: {err}")));
        }
        let reply = wire::read_completion(&redact(&body, self.config.key()), rules)?;
        let (BrainReply::Say(text) | BrainReply::Call { text, .. }) = &reply;
        if !text.is_empty() {
            on_text(text);
        }
        Ok(Attempt::Answer(reply))
    }

    fn transport_error(&self, err: &reqwest::Error) -> BrainError {
        let host = match (self.endpoint.host_str(), self.endpoint.port_or_known_default()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (host, _) => host.unwrap_or_default().to_owned(),
        };
        if err.is_connect() && err.is_timeout() {
            BrainError::Unreachable(format!("{host}: no connection within {} s", self.config.connect_timeout_secs))
        } else {
            BrainError::Unreachable(format!("{host}: {}", cause(err)))
        }
    }

    /// `err` with every trace of the API key removed (servers echo keys in their errors).
    fn scrub(&self, err: BrainError) -> BrainError {
        let Some(key) = self.config.key() else { return err };
        let clean = |text: String| if text.contains(key) { text.replace(key, "[api key]") } else { text };
        match err {
            BrainError::Timeout(secs) => BrainError::Timeout(secs),
            BrainError::Unreachable(text) => BrainError::Unreachable(clean(text)),
            BrainError::Http { status, attempts, body } => BrainError::Http { status, attempts, body: clean(body) },
            BrainError::Malformed(text) => BrainError::Malformed(clean(text)),
            BrainError::Config(text) => BrainError::Config(clean(text)),
        }
    }
}

impl Brain for LlmBrain {
    /// Cancel-safe: dropping the future abandons the request.
    async fn decide(
        &self,
        conversation: &[Message],
        tools: &[ToolSpec],
        on_text: &mut (dyn FnMut(&str) + Send),
    ) -> Result<BrainReply, BrainError> {
        self.decide_unscrubbed(conversation, tools, on_text).await.map_err(|err| self.scrub(err))
    }

    fn describe(&self) -> String {
        format!("llm {} at {}", self.config.model.trim(), self.config.base_url.trim())
    }
}

/// What one request came to.
#[derive(Debug)]
enum Attempt {
    Answer(BrainReply),
    Refused(Refusal),
}

/// A non-success status.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    retry_after: Option<Duration>,
    body: String,
}

impl Refusal {
    /// Whether the server complains about `tool_choice` (vLLM says "tool choice").
    fn mentions_tool_choice(&self) -> bool {
        let body = self.body.to_ascii_lowercase();
        body.contains("tool_choice") || body.contains("tool choice")
    }

    /// The start of the body, or of the error message in it.
    fn excerpt(&self) -> String {
        let message = serde_json::from_str::<serde_json::Value>(&self.body).ok().and_then(|body| {
            let error = body.get("error").unwrap_or(&body);
            error.as_str().or_else(|| error.get("message").and_then(serde_json::Value::as_str)).map(str::to_owned)
        });
        wire::excerpt(message.as_deref().unwrap_or(&self.body))
    }
}

/// Reads a streamed answer, passing its text on as it comes.
async fn read_stream(
    response: &mut reqwest::Response,
    secret: Option<&str>,
    rules: CallRules<'_>,
    on_text: &mut (dyn FnMut(&str) + Send),
) -> Result<BrainReply, BrainError> {
    let mut decoder = SseDecoder::default();
    let mut assembly = StreamAssembly::default();
    let mut n_bytes = 0usize;
    while !assembly.is_done() {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                n_bytes += chunk.len();
                if n_bytes > MAX_ANSWER_BYTES {
                    return Err(too_large());
                }
                for event in decoder.push(&chunk, secret) {
                    assembly.push(&event.name, &event.data, on_text)?;
                }
            }
            Ok(None) => {
                if let Some(event) = decoder.finish(secret) {
                    assembly.push(&event.name, &event.data, on_text)?;
                }
                break;
            }
            Err(err) => {
                return Err(BrainError::Malformed(format!(
                    "the stream broke off after {} chunks: {}",
                    assembly.n_chunks(),
                    cause(&err)
                )));
            }
        }
    }
    assembly.finish(rules)
}

/// Up to `limit` bytes of the body, and whether it ended cleanly (`Err` says why not).
async fn read_up_to(response: &mut reqwest::Response, limit: usize) -> (Vec<u8>, Result<(), String>) {
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = limit.saturating_sub(body.len());
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if body.len() >= limit {
                    return (body, Ok(()));
                }
            }
            Ok(None) => return (body, Ok(())),
            Err(err) => return (body, Err(cause(&err))),
        }
    }
}

/// `body` with every occurrence of `secret` replaced by `[api key]`, before anything reads it.
fn redact<'a>(body: &'a [u8], secret: Option<&str>) -> Cow<'a, [u8]> {
    let Some(secret) = secret.map(str::as_bytes).filter(|secret| !secret.is_empty()) else {
        return Cow::Borrowed(body);
    };
    let mut found = body.windows(secret.len()).position(|window| window == secret);
    if found.is_none() {
        return Cow::Borrowed(body);
    }
    let mut clean = Vec::with_capacity(body.len());
    let mut rest = body;
    while let Some(at) = found {
        clean.extend_from_slice(&rest[..at]);
        clean.extend_from_slice(b"[api key]");
        rest = &rest[at + secret.len()..];
        found = rest.windows(secret.len()).position(|window| window == secret);
    }
    clean.extend_from_slice(rest);
    Cow::Owned(clean)
}

/// `Retry-After` in seconds (the HTTP-date form is rare from model servers and ignored).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let secs: f64 = value.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(86_400.0)))
}

fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else { return false };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost") || host.to_ascii_lowercase().ends_with(".localhost"),
    }
}

/// The innermost cause of `err`, which says what happened ("Connection refused (os error 111)").
fn cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut innermost = err;
    while let Some(source) = innermost.source() {
        innermost = source;
    }
    wire::excerpt(&innermost.to_string())
}

fn too_large() -> BrainError {
    BrainError::Malformed(format!("the answer is larger than {} MiB", MAX_ANSWER_BYTES / (1024 * 1024)))
}

/// Prints as `Redacted` in place of a secret.
struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Redacted")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> LlmConfig {
        LlmConfig::new("http://127.0.0.1:11434/v1", "qwen2.5:7b")
    }

    fn refused(config: LlmConfig) -> String {
        match config.validate() {
            Err(BrainError::Config(message)) => message,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn config_defaults_and_toml() {
        let config: LlmConfig = toml::from_str("model = \"llama3.2\"").unwrap();
        assert_eq!(config, LlmConfig::new(OLLAMA_BASE_URL, "llama3.2"));
        assert_eq!((config.timeout_secs, config.connect_timeout_secs, config.max_retries), (120, 10, 3));
        assert!(config.stream && config.api_key.is_none() && config.temperature.is_none());
        let config: LlmConfig = toml::from_str(
            "base_url = \"https://api.example.com/v1\"\nmodel = \"m\"\napi_key = \"k\"\ntimeout_secs = 30\n\
             connect_timeout_secs = 5\nmax_retries = 0\nstream = false\ntemperature = 0.2\nmax_tokens = 100",
        )
        .unwrap();
        assert_eq!(config.temperature, Some(0.2));
        assert!(config.validate().is_ok());
        assert!(toml::from_str::<LlmConfig>("model = \"m\"\ntemprature = 1").is_err());
        let written = toml::to_string(&valid()).unwrap();
        assert!(!written.contains("api_key"));
        assert_eq!(toml::from_str::<LlmConfig>(&written).unwrap(), valid());
    }

    #[test]
    fn bad_configurations_are_refused_clearly() {
        assert!(valid().validate().is_ok());
        let with = |change: fn(&mut LlmConfig)| {
            let mut config = valid();
            change(&mut config);
            refused(config)
        };
        assert!(with(|c| c.base_url = "127.0.0.1:11434".into()).contains("http:// or https://"));
        assert!(with(|c| c.base_url = "http://exa mple.com/v1".into()).contains("is not a URL"));
        assert!(with(|c| c.base_url = "ftp://host/v1".into()).contains("http:// or https://"));
        assert!(with(|c| c.base_url = "https://user:pw@host/v1".into()).contains("must not carry credentials"));
        assert!(with(|c| c.base_url = "https://host/v1?x=1".into()).contains("query"));
        assert!(with(|c| c.model = "  ".into()).starts_with("llm.model is empty"));
        assert!(LlmConfig::default().validate().is_err());
        assert!(with(|c| c.timeout_secs = 0).contains("at least 1"));
        assert!(with(|c| c.max_retries = 1000).contains("at most 10"));
        assert!(with(|c| c.temperature = Some(f32::NAN)).contains("between 0 and 2"));
        assert!(with(|c| c.max_tokens = Some(0)).contains("at least 1"));
        assert!(with(|c| c.api_key = Some("sk-1\nx".into())).contains("cannot be sent"));
        let clear = with(|c| {
            c.base_url = "http://10.0.0.5:8000/v1".into();
            c.api_key = Some("sk-secret".into());
        });
        assert!(clear.contains("in clear to 10.0.0.5") && !clear.contains("sk-secret"), "{clear}");
    }

    #[test]
    fn keys_may_go_in_clear_only_to_this_machine() {
        for base in [
            "http://127.0.0.1:8080/v1",
            "http://localhost:8080/v1",
            "http://[::1]:8080/v1",
            "https://api.example.com/v1",
        ] {
            let config = LlmConfig { api_key: Some("k".into()), ..LlmConfig::new(base, "m") };
            assert!(config.validate().is_ok(), "{base}");
        }
    }

    #[test]
    fn the_endpoint_follows_the_base_url() {
        for (base, endpoint) in [
            ("http://127.0.0.1:11434/v1", "http://127.0.0.1:11434/v1/chat/completions"),
            ("http://127.0.0.1:11434/v1/", "http://127.0.0.1:11434/v1/chat/completions"),
            ("https://host", "https://host/chat/completions"),
            ("https://host/openai/v1/chat/completions", "https://host/openai/v1/chat/completions"),
        ] {
            assert_eq!(LlmConfig::new(base, "m").endpoint().unwrap().as_str(), endpoint);
        }
    }

    #[test]
    fn debug_never_prints_the_key() {
        let config = LlmConfig { api_key: Some("sk-very-secret".into()), ..LlmConfig::new("https://h/v1", "m") };
        let printed = format!("{config:?}");
        assert!(!printed.contains("sk-very-secret") && printed.contains("Redacted"), "{printed}");
        let brain = LlmBrain::new(config).unwrap();
        let printed = format!("{brain:?}");
        assert!(!printed.contains("sk-very-secret") && printed.contains("Redacted"), "{printed}");
        assert_eq!(brain.describe(), "llm m at https://h/v1");
    }

    #[test]
    fn errors_are_scrubbed_of_the_key() {
        let config = LlmConfig { api_key: Some("sk-very-secret".into()), ..valid() };
        let brain = LlmBrain::new(config).unwrap();
        let err = brain.scrub(BrainError::Http { status: 401, attempts: 1, body: "bad key sk-very-secret".into() });
        assert_eq!(err.to_string(), "the model server answered HTTP 401 (1 attempts): bad key [api key]");
        let err = brain.scrub(BrainError::Malformed("sk-very-secret".into()));
        assert_eq!(err, BrainError::Malformed("[api key]".into()));
    }

    #[test]
    fn secrets_are_redacted_from_bodies() {
        assert_eq!(redact(b"abc", None), &b"abc"[..]);
        assert_eq!(redact(b"abc", Some("")), &b"abc"[..]);
        assert!(matches!(redact(b"abc", Some("zz")), Cow::Borrowed(_)));
        assert_eq!(redact(b"kk-k-kk", Some("kk")), &b"[api key]-k-[api key]"[..]);
        assert_eq!(redact(b"k", Some("kk")), &b"k"[..]);
    }

    #[test]
    fn retry_delays_double_and_are_capped() {
        let delays = RetryDelays::default();
        let waits: Vec<u64> = (1..=8).map(|retry| delays.before(retry, None).as_millis() as u64).collect();
        assert_eq!(waits, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
        assert_eq!(delays.before(1, Some(Duration::from_secs(2))), Duration::from_secs(2));
        assert_eq!(delays.before(1, Some(Duration::from_secs(3600))), Duration::from_secs(30));
        assert_eq!(delays.before(u32::MAX, None), Duration::from_secs(30));
    }

    #[test]
    fn retry_after_is_read_in_seconds() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        for (value, expected) in [("2", Some(2000)), (" 1.5 ", Some(1500)), ("-1", None), ("NaN", None), ("soon", None)]
        {
            headers.insert(RETRY_AFTER, value.parse().unwrap());
            assert_eq!(retry_after(&headers).map(|wait| wait.as_millis()), expected, "{value}");
        }
        headers.insert(RETRY_AFTER, "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap());
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, "1e300".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(86_400)));
    }

    #[test]
    fn refusals_report_the_error_message() {
        let refusal = |body: &str| Refusal { status: StatusCode::BAD_REQUEST, retry_after: None, body: body.into() };
        assert_eq!(refusal("{\"error\": {\"message\": \"no such model\"}}").excerpt(), "no such model");
        assert_eq!(refusal("{\"error\": \"tool_choice unsupported\"}").excerpt(), "tool_choice unsupported");
        assert_eq!(refusal("<html>\n<b>Bad</b>\n</html>").excerpt(), "<html> <b>Bad</b> </html>");
        assert!(refusal("\"tool_choice\" is not allowed").mentions_tool_choice());
        let vllm = "\"auto\" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set";
        assert!(refusal(vllm).mentions_tool_choice());
        assert!(!refusal("model not found").mentions_tool_choice());
    }
}
