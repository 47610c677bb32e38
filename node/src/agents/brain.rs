//! The brain interface: given the conversation and the tools on offer, decide the next step.

use super::conversation::{Message, ToolCall, ToolSpec};

/// What a brain decided.
#[derive(Debug, Clone, PartialEq)]
pub enum BrainReply {
    /// Say this (the turn is over).
    Say(String),
    /// Run these tools (with optional text said alongside), then ask again.
    Call {
        /// Text the model produced with the calls, if any.
        text: String,
        /// The calls, in order.
        calls: Vec<ToolCall>,
    },
}

/// Why a brain could not decide.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BrainError {
    /// The model server did not answer in time.
    #[error("the model server did not answer within {0} s")]
    Timeout(u64),
    /// The model server could not be reached.
    #[error("cannot reach the model server: {0}")]
    Unreachable(String),
    /// The model server kept refusing (rate limit or server error) after retries.
    #[error("the model server answered HTTP {status} ({attempts} attempts): {body}")]
    Http {
        /// The last status.
        status: u16,
        /// Attempts made.
        attempts: u32,
        /// The start of the last body.
        body: String,
    },
    /// The answer was not a usable chat completion.
    #[error("the model's answer is malformed: {0}")]
    Malformed(String),
    /// The configuration is unusable (no model named, bad URL).
    #[error("the model is not configured: {0}")]
    Config(String),
}

/// A decision maker for an agent.
pub trait Brain: Send + Sync {
    /// The next step for `conversation` with `tools` on offer. `on_text` receives text as it is
    /// produced (streaming brains call it many times; others once).
    fn decide(
        &self,
        conversation: &[Message],
        tools: &[ToolSpec],
        on_text: &mut (dyn FnMut(&str) + Send),
    ) -> impl Future<Output = Result<BrainReply, BrainError>> + Send;

    /// A short description for logs and `--json` output ("rule brain", "llm qwen2.5 at ...").
    fn describe(&self) -> String;
}

/// The brain a node runs: the model brain if one is configured, otherwise the rule brain.
#[derive(Debug)]
pub enum AnyBrain {
    /// The deterministic rule brain.
    Rule(super::rule_brain::RuleBrain),
    /// An OpenAI-compatible model.
    Llm(Box<super::llm::LlmBrain>),
    /// Fixed lines (tests and benchmarks).
    Scripted(super::scripted::ScriptedBrain),
}

impl AnyBrain {
    /// The model brain for `llm`, or the rule brain without one.
    pub fn from_config(llm: Option<&super::llm::LlmConfig>) -> Result<AnyBrain, BrainError> {
        match llm {
            Some(config) => Ok(AnyBrain::Llm(Box::new(super::llm::LlmBrain::new(config.clone())?))),
            None => Ok(AnyBrain::Rule(super::rule_brain::RuleBrain)),
        }
    }
}

impl Brain for AnyBrain {
    async fn decide(
        &self,
        conversation: &[Message],
        tools: &[ToolSpec],
        on_text: &mut (dyn FnMut(&str) + Send),
    ) -> Result<BrainReply, BrainError> {
        match self {
            AnyBrain::Rule(brain) => brain.decide(conversation, tools, on_text).await,
            AnyBrain::Llm(brain) => brain.decide(conversation, tools, on_text).await,
            AnyBrain::Scripted(brain) => brain.decide(conversation, tools, on_text).await,
        }
    }

    fn describe(&self) -> String {
        match self {
            AnyBrain::Rule(brain) => brain.describe(),
            AnyBrain::Llm(brain) => brain.describe(),
            AnyBrain::Scripted(brain) => brain.describe(),
        }
    }
}
