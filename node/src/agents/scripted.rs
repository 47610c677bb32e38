//! A brain that says lines from a script, in order, instantly: for tests and benchmarks that
//! need sessions whose content is known in advance (and whose cost is the node's, not a
//! model's). It calls no tool except `end_conversation` on a line that ends, and
//! `request_collaboration` on a line that asks for another contact (the line is said, with
//! `{relay}` replaced by what that contact said, once the node reports the session's end).

use std::time::Duration;

use clawnet_protocol::session::EndMarker;
use serde_json::json;

use super::brain::{Brain, BrainError, BrainReply};
use super::conversation::NODE_NOTE;
use super::conversation::{Message, Role, ToolCall, ToolSpec};
use super::tools::{END_CONVERSATION, REQUEST_COLLABORATION};

/// One line of a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptLine {
    /// What to say.
    pub text: String,
    /// End the conversation with it.
    pub end: Option<EndMarker>,
    /// Before saying it, ask for a session with this contact (name) for this purpose.
    pub ask: Option<(String, String)>,
}

/// Says its n-th line when it has spoken n times in the conversation (the last line again
/// after the script runs out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptedBrain {
    lines: Vec<ScriptLine>,
    delay: Duration,
    /// Other scripts for conversations with the agent of a named owner.
    towards: Vec<(String, ScriptedBrain)>,
}

impl ScriptedBrain {
    /// A script of `lines`, none of which ends the conversation.
    pub fn saying<S: Into<String>>(lines: impl IntoIterator<Item = S>) -> ScriptedBrain {
        let lines = lines.into_iter().map(|text| ScriptLine { text: text.into(), end: None, ask: None }).collect();
        ScriptedBrain { lines, delay: Duration::ZERO, towards: Vec::new() }
    }

    /// The same brain, saying `script` instead when it talks with the agent of `owner`.
    pub fn towards(mut self, owner: &str, script: ScriptedBrain) -> ScriptedBrain {
        self.towards.push((owner.to_lowercase(), script));
        self
    }

    /// The script for this conversation: the one for the counterpart the role prompt names.
    fn script_for(&self, conversation: &[Message]) -> &ScriptedBrain {
        let prompt = conversation.iter().find(|m| m.role == Role::System).map(|m| m.content.to_lowercase());
        let talking_with = |owner: &str| prompt.as_deref().is_some_and(|p| p.contains(&format!("agent of {owner}")));
        self.towards.iter().find(|(owner, _)| talking_with(owner)).map_or(self, |(_, script)| script)
    }

    /// The same script, thinking `delay` before each answer (a slow model).
    pub fn with_delay(mut self, delay: Duration) -> ScriptedBrain {
        self.delay = delay;
        self
    }

    /// The same script, line `index` first asking for a session with `contact` about `purpose`.
    pub fn asking(mut self, index: usize, contact: &str, purpose: &str) -> ScriptedBrain {
        if let Some(line) = self.lines.get_mut(index) {
            line.ask = Some((contact.into(), purpose.into()));
        }
        self
    }

    /// The same script, its last line ending the conversation with `marker`.
    pub fn ending_with(mut self, marker: EndMarker) -> ScriptedBrain {
        if let Some(last) = self.lines.last_mut() {
            last.end = Some(marker);
        }
        self
    }
}

impl Brain for ScriptedBrain {
    async fn decide(
        &self,
        conversation: &[Message],
        tools: &[ToolSpec],
        _on_text: &mut (dyn FnMut(&str) + Send),
    ) -> Result<BrainReply, BrainError> {
        // A finished end_conversation call is followed by the runtime's own finish; this brain
        // only ever speaks once per turn.
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let script = self.script_for(conversation);
        let spoken = conversation.iter().filter(|m| m.role == Role::Assistant && m.tool_calls.is_empty()).count();
        let Some(line) = script.lines.get(spoken).or(script.lines.last()) else {
            return Ok(BrainReply::Say("(nothing scripted)".into()));
        };
        let offered = |name: &str| tools.iter().any(|tool| tool.name == name);
        let since_ours = conversation.iter().rposition(|m| m.role == Role::Assistant && m.tool_calls.is_empty());
        let recent = &conversation[since_ours.map_or(0, |i| i + 1)..];
        let note = recent.iter().rev().find(|m| m.role == Role::User && m.content.starts_with(NODE_NOTE));
        let asked = recent.iter().any(|m| m.tool_calls.iter().any(|c| c.name == REQUEST_COLLABORATION));
        if let Some((contact, purpose)) = line.ask.as_ref().filter(|_| offered(REQUEST_COLLABORATION))
            && note.is_none()
            && !asked
        {
            let arguments = json!({ "contact": contact, "purpose": purpose });
            let call = ToolCall { id: String::new(), name: REQUEST_COLLABORATION.into(), arguments };
            return Ok(BrainReply::Call { text: String::new(), calls: vec![call] });
        }
        let relayed = note
            .and_then(|m| m.content.split_once(" said: "))
            .map(|(_, said)| said.trim_end_matches(']').trim().to_owned())
            .unwrap_or_default();
        let text = line.text.replace("{relay}", &relayed);
        let can_end = offered(END_CONVERSATION);
        Ok(match line.end.filter(|_| can_end) {
            Some(marker) => {
                let outcome = match marker {
                    EndMarker::Resolved => "resolved",
                    EndMarker::Deadlock => "deadlock",
                    EndMarker::NeedsOwner => "need_owner",
                };
                let call = ToolCall {
                    id: String::new(),
                    name: END_CONVERSATION.into(),
                    arguments: json!({ "outcome": outcome }),
                };
                BrainReply::Call { text, calls: vec![call] }
            }
            None => BrainReply::Say(text),
        })
    }

    fn describe(&self) -> String {
        format!("a scripted brain ({} lines, {} other scripts)", self.lines.len(), self.towards.len())
    }
}
