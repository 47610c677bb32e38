//! The API client the `clawnet` command uses while a node runs: generic JSON helpers (`get`,
//! `post`, `post_lines`, `text`) and typed calls for approvals, sessions and the live events.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::server::RejectApproval;
use super::{ApiAnnouncement, ErrorBody, api_file};
use crate::approvals::ApprovalView;
use crate::error::NodeError;
use crate::sessions::{NodeEvent, SessionDetail, SessionView};

/// How long a streamed answer may run: an agent's turn may take long, a watch runs for days.
const STREAM_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

/// A connection to a running node's local API.
#[derive(Debug, Clone)]
pub struct ApiClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl ApiClient {
    /// The API of the node running on `dir`, if one is running (a stale `api.json` left by a
    /// node that died is ignored).
    pub async fn discover(dir: &Path) -> Option<ApiClient> {
        let text = std::fs::read_to_string(api_file(dir)).ok()?;
        let announcement: ApiAnnouncement = serde_json::from_str(&text).ok()?;
        if !announcement.address.ip().is_loopback() {
            return None;
        }
        let http = reqwest::Client::builder().timeout(Duration::from_secs(120)).no_proxy().build().ok()?;
        let client = ApiClient { base: format!("http://{}", announcement.address), token: announcement.token, http };
        let probe =
            client.http.get(client.url("/v1/status")).bearer_auth(&client.token).timeout(Duration::from_secs(5));
        match probe.send().await {
            Ok(response) if response.status().is_success() => Some(client),
            _ => None,
        }
    }

    /// `GET path`, decoded from JSON.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, NodeError> {
        let response = self.http.get(self.url(path)).bearer_auth(&self.token).send().await;
        decode(response).await
    }

    /// `POST path` with a JSON body, decoded from JSON.
    pub async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T, NodeError> {
        let response = self.http.post(self.url(path)).bearer_auth(&self.token).json(body).send().await;
        decode(response).await
    }

    /// `POST path` with a JSON body, answered by newline-delimited JSON: each line is decoded
    /// and handed to `on_line` as it arrives. No practical timeout: an agent's turn may take long.
    pub async fn post_lines<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        on_line: impl FnMut(T),
    ) -> Result<(), NodeError> {
        read_lines(self.http.post(self.url(path)).bearer_auth(&self.token).json(body), on_line).await
    }

    /// Every approval, oldest first (`GET /v1/approvals`).
    pub async fn approvals(&self) -> Result<Vec<ApprovalView>, NodeError> {
        self.get("/v1/approvals").await
    }

    /// Approves the pending approval `id` (a unique prefix of its id).
    pub async fn approve(&self, id: &str) -> Result<ApprovalView, NodeError> {
        self.post(&format!("/v1/approvals/{}/approve", segment(id)), &()).await
    }

    /// Rejects the pending approval `id`, telling the other owner `reason` where one waits.
    pub async fn reject(&self, id: &str, reason: &str) -> Result<ApprovalView, NodeError> {
        let body = RejectApproval { reason: reason.to_owned() };
        self.post(&format!("/v1/approvals/{}/reject", segment(id)), &body).await
    }

    /// Every session, newest first.
    pub async fn sessions(&self) -> Result<Vec<SessionView>, NodeError> {
        self.get("/v1/sessions").await
    }

    /// Session `id` (a unique prefix of its id) with its transcript.
    pub async fn session(&self, id: &str) -> Result<SessionDetail, NodeError> {
        self.get(&format!("/v1/sessions/{}", segment(id))).await
    }

    /// Stops session `id`.
    pub async fn stop_session(&self, id: &str) -> Result<SessionView, NodeError> {
        self.post(&format!("/v1/sessions/{}/stop", segment(id)), &()).await
    }

    /// Hands each of the node's events to `on_event` as it happens, until the node stops (then
    /// `Ok`) or the connection fails.
    pub async fn events(&self, on_event: impl FnMut(NodeEvent)) -> Result<(), NodeError> {
        read_lines(self.http.get(self.url("/v1/events")).bearer_auth(&self.token), on_event).await
    }

    /// `GET path` as text.
    pub async fn text(&self, path: &str) -> Result<String, NodeError> {
        let response = self.http.get(self.url(path)).bearer_auth(&self.token).send().await.map_err(transport)?;
        if !response.status().is_success() {
            return Err(error_of(response).await);
        }
        response.text().await.map_err(transport)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// Sends `request` and decodes its newline-delimited JSON answer line by line (empty lines, the
/// server's heartbeats, are skipped).
async fn read_lines<T: DeserializeOwned>(
    request: reqwest::RequestBuilder,
    mut on_line: impl FnMut(T),
) -> Result<(), NodeError> {
    let mut response = request.timeout(STREAM_TIMEOUT).send().await.map_err(transport)?;
    if !response.status().is_success() {
        return Err(error_of(response).await);
    }
    let mut pending: Vec<u8> = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let decoded = serde_json::from_slice(&line)
                .map_err(|err| NodeError::Api(format!("the running node sent an unreadable line: {err}")))?;
            on_line(decoded);
        }
    }
    Ok(())
}

/// `value` as one URL path segment: an id typed by a person may hold any character.
fn segment(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn decode<T: DeserializeOwned>(response: Result<reqwest::Response, reqwest::Error>) -> Result<T, NodeError> {
    let response = response.map_err(transport)?;
    if !response.status().is_success() {
        return Err(error_of(response).await);
    }
    response.json().await.map_err(transport)
}

async fn error_of(response: reqwest::Response) -> NodeError {
    let status = response.status();
    match response.json::<ErrorBody>().await {
        Ok(body) => NodeError::Api(body.error),
        Err(_) => NodeError::Api(format!("the node answered {status}")),
    }
}

fn transport(err: reqwest::Error) -> NodeError {
    NodeError::Api(format!("cannot talk to the running node: {err}"))
}

#[cfg(test)]
mod tests {
    use super::segment;

    #[test]
    fn a_typed_id_stays_one_path_segment() {
        assert_eq!(segment("ab12-CD"), "ab12-CD");
        assert_eq!(segment("a/b?c d"), "a%2Fb%3Fc%20d");
        assert_eq!(segment("é"), "%C3%A9");
    }
}
