//! Node configuration: `DIR/config.toml`, then environment variables, then command-line flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::agents::llm::LlmConfig;
use crate::error::NodeError;
use crate::files::FolderConfig;
use crate::sessions::{OwnerPolicy, SessionSettings};

/// The configuration file inside a data directory.
pub const CONFIG_FILE: &str = "config.toml";

/// Everything configurable about a running node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Peer-to-peer networking.
    pub network: NetworkSettings,
    /// The local API the `clawnet` command talks to while the node runs.
    pub api: ApiSettings,
    /// The model server the agents think with. Absent: the rule brain, which needs no model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub llm: Option<LlmConfig>,
    /// Bounds on collaboration sessions.
    pub sessions: SessionSettings,
    /// Standing owner decisions (`[[policy]]`); without one, every collaboration waits for the
    /// owner.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policy: Vec<OwnerPolicy>,
    /// The folders agents may work in (layer 2 of file authorization; each identity also needs
    /// a grant, `clawnet files grant`).
    #[serde(skip_serializing_if = "FileSettings::is_empty")]
    pub files: FileSettings,
}

/// The node-local folder whitelist.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileSettings {
    /// The folders (`[[files.folder]]`).
    pub folder: Vec<FolderConfig>,
}

impl FileSettings {
    fn is_empty(&self) -> bool {
        self.folder.is_empty()
    }
}

/// Peer-to-peer networking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkSettings {
    /// Multiaddrs to listen on. Empty: reachable only through a relay.
    pub listen: Vec<String>,
    /// Bootstrap relays, as multiaddrs ending in `/p2p/<peer id>`.
    pub bootstrap: Vec<String>,
    /// Reserve a slot on each bootstrap relay, so nodes that cannot reach us directly can
    /// reach us through it.
    pub relay: bool,
    /// Established connections at once.
    pub max_connections: u32,
    /// Established connections at once with one peer.
    pub max_connections_per_peer: u32,
    /// Seconds an idle connection is kept.
    pub idle_timeout_secs: u64,
    /// Seconds a new connection may take to be set up (dial, Noise, Yamux) before the peer
    /// counts as unreachable for now.
    pub connect_timeout_secs: u64,
}

impl Default for NetworkSettings {
    fn default() -> NetworkSettings {
        NetworkSettings {
            listen: vec!["/ip4/0.0.0.0/tcp/4002".into(), "/ip4/0.0.0.0/udp/4002/quic-v1".into()],
            bootstrap: Vec::new(),
            relay: true,
            max_connections: 256,
            max_connections_per_peer: 4,
            idle_timeout_secs: 300,
            connect_timeout_secs: 10,
        }
    }
}

/// The local API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSettings {
    /// Loopback address to serve on; port 0 picks a free one (written to `DIR/api.json`).
    pub listen: String,
}

impl Default for ApiSettings {
    fn default() -> ApiSettings {
        ApiSettings { listen: "127.0.0.1:0".into() }
    }
}

/// Environment variables that override the file (comma-separated lists).
pub const LISTEN_ENV: &str = "CLAWNET_LISTEN";
/// See [`LISTEN_ENV`].
pub const BOOTSTRAP_ENV: &str = "CLAWNET_BOOTSTRAP";
/// Selects a model (and so the model brain) without editing the file.
pub const LLM_MODEL_ENV: &str = "CLAWNET_LLM_MODEL";
/// The model server's API root (`llm.base_url`).
pub const LLM_BASE_URL_ENV: &str = "CLAWNET_LLM_BASE_URL";
/// The model server's API key, so it need not sit in the file.
pub const LLM_API_KEY_ENV: &str = "CLAWNET_LLM_API_KEY";

impl NodeConfig {
    /// Reads `DIR/config.toml` (defaults if it does not exist), then applies the environment.
    pub fn load(dir: &Path) -> Result<NodeConfig, NodeError> {
        let path = config_path(dir);
        let mut config = match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text)
                .map_err(|err| NodeError::Config(format!("{}: {}", path.display(), one_line(&err.to_string()))))?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => NodeConfig::default(),
            Err(err) => return Err(NodeError::io(format!("reading {}", path.display()))(err)),
        };
        if let Ok(listen) = std::env::var(LISTEN_ENV) {
            config.network.listen = split_list(&listen);
        }
        if let Ok(bootstrap) = std::env::var(BOOTSTRAP_ENV) {
            config.network.bootstrap = split_list(&bootstrap);
        }
        config.apply_llm_env(
            std::env::var(LLM_MODEL_ENV).ok(),
            std::env::var(LLM_BASE_URL_ENV).ok(),
            std::env::var(LLM_API_KEY_ENV).ok(),
        );
        config.validate()?;
        Ok(config)
    }

    /// Applies the model variables: a model or base URL turns the model brain on; a key is
    /// added to whatever model is configured.
    fn apply_llm_env(&mut self, model: Option<String>, base_url: Option<String>, api_key: Option<String>) {
        let nonempty = |value: Option<String>| value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let (model, base_url, api_key) = (nonempty(model), nonempty(base_url), nonempty(api_key));
        if model.is_some() || base_url.is_some() {
            let llm = self.llm.get_or_insert_with(LlmConfig::default);
            if let Some(model) = model {
                llm.model = model;
            }
            if let Some(base_url) = base_url {
                llm.base_url = base_url;
            }
        }
        if let (Some(llm), Some(key)) = (self.llm.as_mut(), api_key) {
            llm.api_key = Some(key);
        }
    }

    /// Checks values that would only fail later, at an unhelpful moment.
    pub fn validate(&self) -> Result<(), NodeError> {
        self.sessions.validate()?;
        for policy in &self.policy {
            if policy.contact.trim().is_empty() || policy.identity.trim().is_empty() {
                return Err(NodeError::Config("every [[policy]] names a contact and an identity".into()));
            }
        }
        if let Some(llm) = &self.llm {
            if llm.model.trim().is_empty() {
                return Err(NodeError::Config(format!(
                    "[llm] names no model: set llm.model (for example \"qwen2.5:7b\") or {LLM_MODEL_ENV}, or remove \
                     the [llm] section to use the rule brain"
                )));
            }
            llm.validate().map_err(|err| NodeError::Config(err.to_string()))?;
        }
        let api: SocketAddr = self.api.listen.parse().map_err(|_| {
            NodeError::Config(format!("api.listen {:?} is not an address like 127.0.0.1:0", self.api.listen))
        })?;
        if !api.ip().is_loopback() {
            return Err(NodeError::Config(format!(
                "api.listen {api} is not a loopback address: the local API must not be reachable from the network"
            )));
        }
        for address in self.network.listen.iter().chain(&self.network.bootstrap) {
            address
                .parse::<libp2p::Multiaddr>()
                .map_err(|err| NodeError::Config(format!("{address:?} is not a multiaddr: {err}")))?;
        }
        Ok(())
    }

    /// The file `clawnet init` writes: the defaults, commented.
    pub fn template() -> String {
        let defaults = NodeConfig::default();
        format!(
            "# ClawNet node configuration. Environment variables {LISTEN_ENV} and {BOOTSTRAP_ENV}\n\
             # (comma-separated) and `clawnet run` flags override these values.\n\n{}\n\
             # The agents' brain. Without an [llm] section they use the rule brain, which needs no\n\
             # model. To think with a model, name it; any OpenAI-compatible server works (Ollama,\n\
             # llama.cpp's server, vLLM, hosted APIs). {LLM_MODEL_ENV}, {LLM_BASE_URL_ENV} and\n\
             # {LLM_API_KEY_ENV} override these.\n\
             #\n\
             # [llm]\n\
             # base_url = \"http://127.0.0.1:11434/v1\"   # Ollama; llama.cpp: http://127.0.0.1:8080/v1\n\
             # model = \"qwen2.5:7b\"\n\
             # api_key = \"...\"                         # hosted APIs only\n\
             # timeout_secs = 120\n\
             # max_retries = 3\n\
             # stream = true\n\n\
             # Standing decisions: approve collaboration between one identity and one contact\n\
             # without asking (default: every session waits for `clawnet approve`).\n\
             #\n\
             # [[policy]]\n\
             # contact = \"Globex\"          # name or fingerprint prefix\n\
             # identity = \"procurement\"\n\
             # direction = \"both\"          # outgoing | incoming | both\n\
             # max_turns = 12\n\
             # recursion = false\n\n\
             # Folders identity agents may work in (each identity also needs `clawnet files grant`).\n\
             # Links are never followed; the data directory and key folders are never reachable.\n\
             #\n\
             # [[files.folder]]\n\
             # path = \"/home/me/Projects\"\n\
             # access = \"read-write\"       # or read-only\n",
            toml::to_string_pretty(&defaults).unwrap_or_default()
        )
    }
}

/// Where the configuration of the node in `dir` lives.
pub fn config_path(dir: &Path) -> PathBuf {
    dir.join(CONFIG_FILE)
}

fn split_list(text: &str) -> Vec<String> {
    text.split(',').map(str::trim).filter(|item| !item.is_empty()).map(str::to_owned).collect()
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_parses_back_to_the_defaults() {
        let parsed: NodeConfig = toml::from_str(&NodeConfig::template()).unwrap();
        assert_eq!(parsed, NodeConfig::default());
    }

    #[test]
    fn bad_values_are_refused_clearly() {
        let mut config = NodeConfig::default();
        config.api.listen = "0.0.0.0:8080".into();
        assert!(config.validate().unwrap_err().to_string().contains("not a loopback address"));
        let mut config = NodeConfig::default();
        config.network.bootstrap = vec!["not an address".into()];
        assert!(config.validate().unwrap_err().to_string().contains("not a multiaddr"));
        assert!(toml::from_str::<NodeConfig>("[network]\nlisten = 3").is_err());
        assert!(toml::from_str::<NodeConfig>("[network]\nunknown = 1").is_err());
        let no_model: NodeConfig = toml::from_str("[llm]\nbase_url = \"http://127.0.0.1:8080/v1\"").unwrap();
        assert!(no_model.validate().unwrap_err().to_string().contains("names no model"));
        let bad_url: NodeConfig = toml::from_str("[llm]\nmodel = \"m\"\nbase_url = \"ftp://x\"").unwrap();
        assert!(bad_url.validate().unwrap_err().to_string().contains("llm.base_url"));
    }

    #[test]
    fn model_variables_turn_the_model_brain_on() {
        let mut config = NodeConfig::default();
        config.apply_llm_env(None, None, Some("sk-only-a-key".into()));
        assert_eq!(config.llm, None, "a key alone selects no model");
        config.apply_llm_env(Some("llama3.1".into()), None, Some("sk-key".into()));
        let llm = config.llm.clone().unwrap();
        assert_eq!((llm.model.as_str(), llm.api_key.as_deref()), ("llama3.1", Some("sk-key")));
        assert_eq!(llm.base_url, LlmConfig::default().base_url);
        config.validate().unwrap();
        let parsed: NodeConfig = toml::from_str("[llm]\nmodel = \"qwen2.5:7b\"\ntimeout_secs = 30").unwrap();
        assert_eq!(parsed.llm.unwrap().timeout_secs, 30);
    }
}
