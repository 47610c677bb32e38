//! The chat-completions request the model brain sends, in the OpenAI shape every compatible
//! server reads.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::Value;

use super::LlmConfig;
use crate::agents::brain::BrainError;
use crate::agents::conversation::{Message, Role, ToolSpec};

/// The request body for `conversation` with `tools` on offer. `tool_choice` adds
/// `"tool_choice": "auto"` when tools are offered (some servers refuse the field).
pub(super) fn request_body(
    config: &LlmConfig,
    conversation: &[Message],
    tools: &[ToolSpec],
    tool_choice: bool,
) -> Result<Vec<u8>, BrainError> {
    let request = ChatRequest {
        model: config.model.trim(),
        messages: conversation.iter().map(RequestMessage::from).collect(),
        tools: tools.iter().map(RequestTool::from).collect(),
        tool_choice: (tool_choice && !tools.is_empty()).then_some("auto"),
        stream: config.stream,
        temperature: config.temperature,
        max_tokens: config.max_tokens,
    };
    serde_json::to_vec(&request).map_err(|err| BrainError::Config(format!("cannot encode the request: {err}")))
}

#[derive(Debug, Serialize)]
struct ChatRequest<'a> {
    model: &'a str,
    messages: Vec<RequestMessage<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<RequestTool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<&'static str>,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
}

#[derive(Debug, Serialize)]
struct RequestMessage<'a> {
    role: Role,
    /// Always a string, empty beside tool calls: some servers' templates refuse `null`.
    content: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<RequestCall<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<&'a str>,
}

impl<'a> From<&'a Message> for RequestMessage<'a> {
    fn from(message: &'a Message) -> RequestMessage<'a> {
        RequestMessage {
            role: message.role,
            content: &message.content,
            tool_calls: message
                .tool_calls
                .iter()
                .map(|call| RequestCall {
                    id: &call.id,
                    kind: "function",
                    function: RequestFunction { name: &call.name, arguments: call.arguments.to_string() },
                })
                .collect(),
            tool_call_id: message.tool_call_id.as_deref(),
        }
    }
}

#[derive(Debug, Serialize)]
struct RequestCall<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: RequestFunction<'a>,
}

#[derive(Debug, Serialize)]
struct RequestFunction<'a> {
    name: &'a str,
    /// The arguments as JSON text, as the OpenAI API has them.
    arguments: String,
}

#[derive(Debug, Serialize)]
struct RequestTool<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: RequestToolFunction<'a>,
}

#[derive(Debug, Serialize)]
struct RequestToolFunction<'a> {
    name: &'a str,
    description: &'a str,
    parameters: Cow<'a, Value>,
}

impl<'a> From<&'a ToolSpec> for RequestTool<'a> {
    fn from(tool: &'a ToolSpec) -> RequestTool<'a> {
        let parameters = match &tool.parameters {
            // Servers want a schema even for a tool without arguments.
            Value::Null => Cow::Owned(serde_json::json!({"type": "object", "properties": {}})),
            schema => Cow::Borrowed(schema),
        };
        RequestTool {
            kind: "function",
            function: RequestToolFunction { name: &tool.name, description: &tool.description, parameters },
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::agents::conversation::ToolCall;

    fn tools() -> Vec<ToolSpec> {
        ["recall", "store"]
            .into_iter()
            .map(|name| ToolSpec {
                name: name.into(),
                description: format!("{name} a memory"),
                parameters: json!({"type": "object", "properties": {"query": {"type": "string"}}}),
            })
            .collect()
    }

    fn config() -> LlmConfig {
        LlmConfig { model: "qwen2.5".into(), ..LlmConfig::default() }
    }

    #[test]
    fn request_carries_the_conversation_in_openai_shape() {
        let call = ToolCall { id: "c1".into(), name: "recall".into(), arguments: json!({"query": "dentist"}) };
        let conversation = vec![
            Message::system("be brief"),
            Message::user("when is the dentist?"),
            Message::calls("", vec![call.clone()]),
            Message::tool_result(&call, "tuesday"),
        ];
        let mut config = config();
        config.temperature = Some(0.5);
        config.max_tokens = Some(256);
        let body: Value =
            serde_json::from_slice(&request_body(&config, &conversation, &tools(), true).unwrap()).unwrap();
        assert_eq!(
            body,
            json!({
                "model": "qwen2.5",
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": "when is the dentist?"},
                    {"role": "assistant", "content": "", "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "recall", "arguments": "{\"query\":\"dentist\"}"}}
                    ]},
                    {"role": "tool", "content": "tuesday", "tool_call_id": "c1"},
                ],
                "tools": [
                    {"type": "function", "function": {"name": "recall", "description": "recall a memory",
                        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}},
                    {"type": "function", "function": {"name": "store", "description": "store a memory",
                        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}},
                ],
                "tool_choice": "auto",
                "stream": true,
                "temperature": 0.5,
                "max_tokens": 256,
            })
        );
    }

    #[test]
    fn request_without_tools_omits_tools_and_tool_choice() {
        let body: Value =
            serde_json::from_slice(&request_body(&config(), &[Message::user("hi")], &[], true).unwrap()).unwrap();
        assert_eq!(body, json!({"model": "qwen2.5", "messages": [{"role": "user", "content": "hi"}], "stream": true}));
        let body: Value =
            serde_json::from_slice(&request_body(&config(), &[Message::user("hi")], &tools(), false).unwrap()).unwrap();
        assert!(body.get("tools").is_some() && body.get("tool_choice").is_none());
    }

    #[test]
    fn a_tool_without_parameters_gets_an_empty_schema() {
        let tool = ToolSpec { name: "end".into(), description: "end".into(), parameters: Value::Null };
        let body: Value = serde_json::from_slice(&request_body(&config(), &[], &[tool], false).unwrap()).unwrap();
        assert_eq!(body["tools"][0]["function"]["parameters"], json!({"type": "object", "properties": {}}));
    }
}
