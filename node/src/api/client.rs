//! The API client the `clawnet` command uses while a node runs.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{ApiAnnouncement, ErrorBody, api_file};
use crate::error::NodeError;

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
    /// and handed to `on_line` as it arrives. No overall timeout: an agent's turn may take long.
    pub async fn post_lines<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        mut on_line: impl FnMut(T),
    ) -> Result<(), NodeError> {
        let mut response = self
            .http
            .post(self.url(path))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(24 * 3600))
            .json(body)
            .send()
            .await
            .map_err(transport)?;
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
