//! The chat-completions answers: a tolerant reading of what servers send, whole or streamed,
//! into a [`BrainReply`] (the request is in `request.rs`).
//!
//! Tolerated: `content` null, missing or an array of text parts; tool-call `arguments` as a JSON
//! string, an object, a doubly encoded string, or empty/null for a call without arguments;
//! missing or repeated call ids (replaced by ids derived from the turn and position); unknown
//! fields (`reasoning_content`, `usage`, ...); any `finish_reason`; streamed calls keyed by
//! `index`, by `id`, or by neither (continuing the last call). Refused: a body that is not a
//! completion, a call naming no tool or a tool not offered, arguments that are not a JSON object.

use std::collections::HashSet;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::agents::brain::{BrainError, BrainReply};
use crate::agents::conversation::{ToolCall, ToolSpec};

/// Most tool calls one answer may carry.
pub(super) const MAX_TOOL_CALLS: usize = 64;
/// Longest tool-call id kept as given (longer ones are replaced).
const MAX_CALL_ID_LEN: usize = 128;
/// Longest tool name quoted in an error.
const MAX_QUOTED_NAME: usize = 64;

/// What the tool calls of an answer are checked against.
#[derive(Debug, Clone, Copy)]
pub(super) struct CallRules<'a> {
    /// The tools on offer.
    pub(super) tools: &'a [ToolSpec],
    /// Where in the conversation the answer goes (for ids the server did not give).
    pub(super) turn: usize,
}

/// Reads a whole (non-streamed) completion.
pub(super) fn read_completion(body: &[u8], rules: CallRules<'_>) -> Result<BrainReply, BrainError> {
    let completion: Completion = serde_json::from_slice(body).map_err(|err| {
        let what = match err.classify() {
            serde_json::error::Category::Data => "not a chat completion",
            _ => "not JSON",
        };
        malformed(format!(
            "the answer is {what} ({err}): {}",
            excerpt(&String::from_utf8_lossy(&body[..body.len().min(1024)]))
        ))
    })?;
    let choices = match (completion.choices, completion.error) {
        (Some(choices), _) if !choices.is_empty() => choices,
        (_, Some(error)) => return Err(malformed(format!("the server reported an error: {}", error_text(&error)))),
        (Some(_), None) => return Err(malformed("the completion has no choices")),
        (None, None) => return Err(malformed("the answer is not a chat completion (no `choices`)")),
    };
    let choice = first_choice(choices);
    let finish_reason = choice.finish_reason.as_ref().and_then(Value::as_str).map(str::to_owned);
    let Some(message) = choice.message.or(choice.delta) else {
        return Err(malformed("the completion's choice has no `message`"));
    };
    let text = content_text(message.content)?;
    let calls = message.tool_calls.unwrap_or_default();
    if calls.len() > MAX_TOOL_CALLS {
        return Err(too_many_calls());
    }
    let raw = calls.into_iter().map(RawCall::whole).collect();
    into_reply(text, raw, finish_reason.as_deref(), rules)
}

/// A streamed completion being put together from its chunks.
#[derive(Debug, Default)]
pub(super) struct StreamAssembly {
    text: String,
    calls: Vec<RawCall>,
    finish_reason: Option<String>,
    n_chunks: usize,
    done: bool,
}

impl StreamAssembly {
    /// Takes one event's data; new content goes to `on_text` at once.
    pub(super) fn push(
        &mut self,
        event_name: &str,
        data: &str,
        on_text: &mut (dyn FnMut(&str) + Send),
    ) -> Result<(), BrainError> {
        let data = data.trim();
        if self.done || data.is_empty() {
            return Ok(());
        }
        if data == "[DONE]" {
            self.done = true;
            return Ok(());
        }
        let chunk: Completion = match serde_json::from_str(data) {
            Ok(chunk) => chunk,
            Err(_) if event_name == "error" => {
                return Err(malformed(format!("the server reported an error: {}", excerpt(data))));
            }
            Err(err) => {
                return Err(malformed(format!("stream chunk {} is not a completion chunk ({err})", self.n_chunks + 1)));
            }
        };
        self.n_chunks += 1;
        if let Some(error) = chunk.error {
            return Err(malformed(format!("the server reported an error: {}", error_text(&error))));
        }
        let Some(choices) = chunk.choices.filter(|choices| !choices.is_empty()) else {
            return Ok(()); // usage-only or role-only chunks
        };
        let choice = first_choice(choices);
        if let Some(reason) = choice.finish_reason.as_ref().and_then(Value::as_str) {
            self.finish_reason = Some(reason.to_owned());
        }
        let Some(delta) = choice.delta.or(choice.message) else { return Ok(()) };
        let piece = content_text(delta.content)?;
        if !piece.is_empty() {
            on_text(&piece);
            self.text.push_str(&piece);
        }
        for call in delta.tool_calls.unwrap_or_default() {
            self.merge(call)?;
        }
        Ok(())
    }

    /// Whether the server said `[DONE]` (nothing after it matters).
    pub(super) fn is_done(&self) -> bool {
        self.done
    }

    /// Chunks read so far.
    pub(super) fn n_chunks(&self) -> usize {
        self.n_chunks
    }

    /// The reply, once the stream has ended.
    pub(super) fn finish(self, rules: CallRules<'_>) -> Result<BrainReply, BrainError> {
        if self.n_chunks == 0 {
            return Err(malformed("the stream ended without a completion chunk"));
        }
        into_reply(self.text, self.calls, self.finish_reason.as_deref(), rules)
    }

    fn merge(&mut self, delta: ReplyCall) -> Result<(), BrainError> {
        let id = delta.id.filter(|id| !id.is_empty());
        let slot = match (delta.index, &id) {
            (Some(index), _) => self.calls.iter().rposition(|call| call.index == Some(index)),
            (None, Some(id)) => self.calls.iter().rposition(|call| call.id.as_ref() == Some(id)),
            (None, None) => self.calls.len().checked_sub(1),
        };
        // Some servers give every call index 0: a new id at a known index starts a new call.
        let slot = slot.filter(|&slot| match (&self.calls[slot].id, &id) {
            (Some(known), Some(new)) => known == new,
            _ => true,
        });
        let slot = match slot {
            Some(slot) => slot,
            None => {
                if self.calls.len() >= MAX_TOOL_CALLS {
                    return Err(too_many_calls());
                }
                self.calls.push(RawCall { index: delta.index, ..RawCall::default() });
                self.calls.len() - 1
            }
        };
        let call = &mut self.calls[slot];
        if call.id.is_none() {
            call.id = id;
        }
        let Some(function) = delta.function else { return Ok(()) };
        if let Some(name) = function.name.filter(|name| !name.is_empty()) {
            // The name normally comes whole in the first delta; some servers repeat it.
            if call.name != name {
                call.name.push_str(&name);
            }
        }
        match function.arguments {
            Some(Value::String(fragment)) => call.arguments.push_str(&fragment),
            Some(Value::Null) | None => {}
            Some(value) => call.arguments_value = Some(value),
        }
        Ok(())
    }
}

/// A tool call as the server gave it, before checking.
#[derive(Debug, Default)]
struct RawCall {
    index: Option<u64>,
    id: Option<String>,
    name: String,
    /// Arguments as JSON text (concatenated fragments when streamed).
    arguments: String,
    /// Arguments given as a JSON value rather than text.
    arguments_value: Option<Value>,
}

impl RawCall {
    fn whole(call: ReplyCall) -> RawCall {
        let (name, arguments) = match call.function {
            Some(function) => (function.name.unwrap_or_default(), function.arguments),
            None => (String::new(), None),
        };
        let (arguments, arguments_value) = match arguments {
            Some(Value::String(text)) => (text, None),
            Some(Value::Null) | None => (String::new(), None),
            Some(value) => (String::new(), Some(value)),
        };
        RawCall { index: call.index, id: call.id, name, arguments, arguments_value }
    }
}

fn into_reply(
    text: String,
    raw: Vec<RawCall>,
    finish_reason: Option<&str>,
    rules: CallRules<'_>,
) -> Result<BrainReply, BrainError> {
    if raw.is_empty() {
        return Ok(BrainReply::Say(text));
    }
    let cut_off = finish_reason == Some("length");
    let mut ids = HashSet::new();
    let mut calls = Vec::with_capacity(raw.len());
    for (position, call) in raw.into_iter().enumerate() {
        calls.push(check_call(call, position, cut_off, rules, &mut ids)?);
    }
    Ok(BrainReply::Call { text, calls })
}

fn check_call(
    raw: RawCall,
    position: usize,
    cut_off: bool,
    rules: CallRules<'_>,
    ids: &mut HashSet<String>,
) -> Result<ToolCall, BrainError> {
    let name = raw.name.trim();
    if name.is_empty() {
        return Err(malformed("a tool call names no tool"));
    }
    let quoted = quote(name);
    let Some(tool) = rules.tools.iter().find(|tool| tool.name == name) else {
        return Err(malformed(format!("the model called {quoted}, which is not an offered tool")));
    };
    let arguments = arguments_of(raw.arguments_value, &raw.arguments).map_err(|why| {
        let cut = if cut_off { " (the answer was cut off at the token limit)" } else { "" };
        malformed(format!("the arguments of the call to {quoted} {why}{cut}"))
    })?;
    let id = match raw.id.filter(|id| !id.trim().is_empty() && id.len() <= MAX_CALL_ID_LEN && !ids.contains(id)) {
        Some(id) => id,
        None => {
            let mut id = format!("call_{}_{position}", rules.turn);
            while ids.contains(&id) {
                id.push('_');
            }
            id
        }
    };
    ids.insert(id.clone());
    Ok(ToolCall { id, name: tool.name.clone(), arguments })
}

/// The arguments as a JSON object, or why not ("are not valid JSON ...").
fn arguments_of(value: Option<Value>, text: &str) -> Result<Value, String> {
    let value = match value {
        Some(value) => value,
        None if text.trim().is_empty() => return Ok(Value::Object(Map::new())),
        None => serde_json::from_str(text).map_err(|err| format!("are not valid JSON ({err})"))?,
    };
    match value {
        Value::Object(_) => Ok(value),
        Value::Null => Ok(Value::Object(Map::new())),
        // Some models encode the arguments twice.
        Value::String(inner) => match serde_json::from_str::<Value>(&inner) {
            Ok(object @ Value::Object(_)) => Ok(object),
            _ => Err("are not a JSON object".to_owned()),
        },
        _ => Err("are not a JSON object".to_owned()),
    }
}

/// The text of a message's `content`: a string, null, or an array of text parts.
fn content_text(content: Option<Value>) -> Result<String, BrainError> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(text)) => Ok(text),
        Some(Value::Array(parts)) => Ok(parts
            .iter()
            .filter_map(|part| match part {
                Value::String(text) => Some(text.as_str()),
                Value::Object(part) => part.get("text").and_then(Value::as_str),
                _ => None,
            })
            .collect()),
        Some(_) => Err(malformed("the message content is neither text nor null")),
    }
}

/// The choice to read: the one with index 0 (we ask for one), else the first.
fn first_choice(mut choices: Vec<Choice>) -> Choice {
    let position = choices.iter().position(|choice| choice.index.unwrap_or(0) == 0).unwrap_or(0);
    choices.swap_remove(position)
}

/// A server's error object (or string) in a few words.
fn error_text(error: &Value) -> String {
    let message = match error {
        Value::String(text) => Some(text.as_str()),
        Value::Object(fields) => fields.get("message").and_then(Value::as_str),
        _ => None,
    };
    excerpt(&message.map_or_else(|| error.to_string(), str::to_owned))
}

/// At most a couple of hundred characters of `text`, on one line.
pub(super) fn excerpt(text: &str) -> String {
    const MAX_CHARS: usize = 200;
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let line: String = line.chars().filter(|c| !c.is_control()).collect();
    match line.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}

fn quote(name: &str) -> String {
    match name.char_indices().nth(MAX_QUOTED_NAME) {
        Some((cut, _)) => format!("{:?}…", &name[..cut]),
        None => format!("{name:?}"),
    }
}

fn malformed(message: impl Into<String>) -> BrainError {
    BrainError::Malformed(message.into())
}

fn too_many_calls() -> BrainError {
    malformed(format!("the answer asks for more than {MAX_TOOL_CALLS} tool calls"))
}

// ---- Answer shapes (whole completions and stream chunks share them) ----

#[derive(Debug, Deserialize)]
struct Completion {
    choices: Option<Vec<Choice>>,
    error: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    index: Option<u64>,
    message: Option<ReplyMessage>,
    delta: Option<ReplyMessage>,
    finish_reason: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct ReplyMessage {
    content: Option<Value>,
    tool_calls: Option<Vec<ReplyCall>>,
}

#[derive(Debug, Deserialize)]
struct ReplyCall {
    index: Option<u64>,
    id: Option<String>,
    function: Option<ReplyFunction>,
}

#[derive(Debug, Deserialize)]
struct ReplyFunction {
    name: Option<String>,
    arguments: Option<Value>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

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

    fn read(body: Value) -> Result<BrainReply, BrainError> {
        let tools = tools();
        read_completion(body.to_string().as_bytes(), CallRules { tools: &tools, turn: 3 })
    }

    fn completion(message: Value) -> Value {
        json!({"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]})
    }

    fn call(name: &str, arguments: Value) -> Value {
        json!({"id": "call_a", "type": "function", "function": {"name": name, "arguments": arguments}})
    }

    fn calls(reply: BrainReply) -> Vec<ToolCall> {
        match reply {
            BrainReply::Call { calls, .. } => calls,
            BrainReply::Say(text) => panic!("expected calls, got text {text:?}"),
        }
    }

    fn message(reply: Result<BrainReply, BrainError>) -> String {
        match reply {
            Err(BrainError::Malformed(message)) => message,
            other => panic!("expected a malformed answer, got {other:?}"),
        }
    }

    #[test]
    fn plain_answers_and_null_or_missing_content() {
        assert_eq!(
            read(completion(json!({"role": "assistant", "content": "hi"}))).unwrap(),
            BrainReply::Say("hi".into())
        );
        assert_eq!(
            read(completion(json!({"role": "assistant", "content": null}))).unwrap(),
            BrainReply::Say("".into())
        );
        assert_eq!(read(completion(json!({"role": "assistant"}))).unwrap(), BrainReply::Say("".into()));
        let parts = json!({"content": [{"type": "text", "text": "a"}, "b", {"type": "image"}]});
        assert_eq!(read(completion(parts)).unwrap(), BrainReply::Say("ab".into()));
    }

    #[test]
    fn extra_fields_are_ignored() {
        let body = json!({
            "choices": [{"index": 0, "logprobs": null, "finish_reason": "eos",
                "message": {"role": "assistant", "content": "ok", "reasoning_content": "hmm", "refusal": null}}],
            "usage": {"prompt_tokens": 1}, "system_fingerprint": "fp", "timings": {}
        });
        assert_eq!(read(body).unwrap(), BrainReply::Say("ok".into()));
    }

    #[test]
    fn tool_call_arguments_as_string_object_or_double_encoded() {
        let expected = json!({"query": "x"});
        for arguments in [json!("{\"query\": \"x\"}"), expected.clone(), json!("\"{\\\"query\\\":\\\"x\\\"}\"")] {
            let reply = read(completion(json!({"content": null, "tool_calls": [call("recall", arguments)]}))).unwrap();
            assert_eq!(calls(reply)[0].arguments, expected);
        }
        for arguments in [json!(""), json!(null), json!("  ")] {
            let reply = read(completion(json!({"tool_calls": [call("recall", arguments)]}))).unwrap();
            assert_eq!(calls(reply)[0].arguments, json!({}));
        }
    }

    #[test]
    fn text_beside_calls_is_kept() {
        let reply = read(completion(json!({"content": "let me look", "tool_calls": [call("recall", json!({}))]})));
        assert!(
            matches!(reply.unwrap(), BrainReply::Call { text, calls } if text == "let me look" && calls.len() == 1)
        );
    }

    #[test]
    fn missing_and_repeated_ids_are_replaced_by_stable_ones() {
        let body = completion(json!({"tool_calls": [
            {"function": {"name": "recall", "arguments": "{}"}},
            {"id": "", "function": {"name": "store", "arguments": "{}"}},
            {"id": "same", "function": {"name": "recall", "arguments": "{}"}},
            {"id": "same", "function": {"name": "recall", "arguments": "{}"}},
        ]}));
        let ids: Vec<String> = calls(read(body.clone()).unwrap()).into_iter().map(|call| call.id).collect();
        assert_eq!(ids, ["call_3_0", "call_3_1", "same", "call_3_3"]);
        let again: Vec<String> = calls(read(body).unwrap()).into_iter().map(|call| call.id).collect();
        assert_eq!(ids, again);
    }

    #[test]
    fn bad_calls_are_refused_clearly() {
        let text = message(read(completion(json!({"tool_calls": [call("recall", json!("{\"query\": "))]}))));
        assert!(text.starts_with("the arguments of the call to \"recall\" are not valid JSON"), "{text}");
        let text = message(read(completion(json!({"tool_calls": [call("recall", json!("[1, 2]"))]}))));
        assert_eq!(text, "the arguments of the call to \"recall\" are not a JSON object");
        let text = message(read(completion(json!({"tool_calls": [call("recall", json!(7))]}))));
        assert_eq!(text, "the arguments of the call to \"recall\" are not a JSON object");
        let text = message(read(completion(json!({"tool_calls": [call("delete_everything", json!({}))]}))));
        assert_eq!(text, "the model called \"delete_everything\", which is not an offered tool");
        let text = message(read(completion(json!({"tool_calls": [{"id": "x", "type": "function"}]}))));
        assert_eq!(text, "a tool call names no tool");
        let long = "x".repeat(10_000);
        let text = message(read(completion(json!({"tool_calls": [call(&long, json!({}))]}))));
        assert!(text.len() < 200, "{text}");
    }

    #[test]
    fn arguments_cut_off_at_the_token_limit_say_so() {
        let body = json!({"choices": [{"finish_reason": "length", "message": {"tool_calls": [call("recall", json!("{\"qu"))]}}]});
        assert!(message(read(body)).ends_with("(the answer was cut off at the token limit)"));
    }

    #[test]
    fn bodies_that_are_not_completions_are_refused() {
        let tools = tools();
        let rules = CallRules { tools: &tools, turn: 0 };
        assert!(message(read_completion(b"<html>oops</html>", rules)).starts_with("the answer is not JSON"));
        assert!(
            message(read_completion(b"{\"choices\": 5}", rules)).starts_with("the answer is not a chat completion")
        );
        assert!(message(read(json!({"object": "list", "data": []}))).contains("no `choices`"));
        assert_eq!(message(read(json!({"choices": []}))), "the completion has no choices");
        assert_eq!(message(read(json!({"choices": [{"index": 0}]}))), "the completion's choice has no `message`");
        assert_eq!(
            message(read(json!({"error": {"message": "model not found", "type": "invalid_request"}}))),
            "the server reported an error: model not found"
        );
        assert!(message(read(completion(json!({"content": 5})))).contains("neither text nor null"));
        let deep = format!("{{\"error\": {}", "[".repeat(100_000));
        assert!(message(read_completion(deep.as_bytes(), rules)).contains("recursion limit exceeded"));
    }

    #[test]
    fn too_many_calls_are_refused() {
        let many: Vec<Value> = (0..=MAX_TOOL_CALLS).map(|_| call("recall", json!({}))).collect();
        assert!(message(read(completion(json!({"tool_calls": many})))).contains("more than 64 tool calls"));
    }

    fn stream(events: &[Value]) -> (Result<BrainReply, BrainError>, Vec<String>) {
        let tools = tools();
        let mut assembly = StreamAssembly::default();
        let mut pieces = Vec::new();
        let mut on_text = |piece: &str| pieces.push(piece.to_owned());
        for event in events {
            let data = match event {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            if let Err(err) = assembly.push("", &data, &mut on_text) {
                return (Err(err), pieces);
            }
        }
        (assembly.finish(CallRules { tools: &tools, turn: 1 }), pieces)
    }

    fn delta(delta: Value) -> Value {
        json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": null}]})
    }

    #[test]
    fn streamed_text_arrives_in_pieces() {
        let (reply, pieces) = stream(&[
            delta(json!({"role": "assistant", "content": ""})),
            delta(json!({"content": "Hel"})),
            delta(json!({"content": null, "reasoning_content": "thinking"})),
            delta(json!({"content": "lo"})),
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
            json!({"choices": [], "usage": {"total_tokens": 3}}),
            json!("[DONE]"),
            delta(json!({"content": "after done"})),
        ]);
        assert_eq!(reply.unwrap(), BrainReply::Say("Hello".into()));
        assert_eq!(pieces, ["Hel", "lo"]);
    }

    #[test]
    fn streamed_calls_are_assembled_by_index() {
        let (reply, _) = stream(&[
            delta(
                json!({"tool_calls": [{"index": 0, "id": "a", "type": "function", "function": {"name": "recall", "arguments": ""}}]}),
            ),
            delta(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"que"}}]})),
            delta(json!({"tool_calls": [{"index": 1, "id": "b", "function": {"name": "store", "arguments": "{}"}}]})),
            delta(json!({"tool_calls": [{"index": 0, "function": {"arguments": "ry\": \"x\"}"}}]})),
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
        ]);
        let found = calls(reply.unwrap());
        assert_eq!(found.len(), 2);
        assert_eq!(
            (found[0].id.as_str(), found[0].name.as_str(), &found[0].arguments),
            ("a", "recall", &json!({"query": "x"}))
        );
        assert_eq!((found[1].id.as_str(), found[1].name.as_str(), &found[1].arguments), ("b", "store", &json!({})));
    }

    #[test]
    fn streamed_calls_without_index_or_with_index_zero_for_all() {
        let (reply, _) = stream(&[
            delta(json!({"tool_calls": [{"function": {"name": "recall", "arguments": "{\"query\":"}}]})),
            delta(json!({"tool_calls": [{"function": {"arguments": "\"x\"}"}}]})),
            delta(json!({"tool_calls": [{"id": "n2", "function": {"name": "store", "arguments": {"query": "y"}}}]})),
        ]);
        let found = calls(reply.unwrap());
        assert_eq!(found[0].arguments, json!({"query": "x"}));
        assert_eq!(found[0].id, "call_1_0");
        assert_eq!((found[1].id.as_str(), &found[1].arguments), ("n2", &json!({"query": "y"})));

        let (reply, _) = stream(&[
            delta(json!({"tool_calls": [{"index": 0, "id": "p", "function": {"name": "recall", "arguments": "{}"}}]})),
            delta(json!({"tool_calls": [{"index": 0, "id": "q", "function": {"name": "store", "arguments": "{}"}}]})),
        ]);
        let names: Vec<String> = calls(reply.unwrap()).into_iter().map(|call| call.name).collect();
        assert_eq!(names, ["recall", "store"]);
    }

    #[test]
    fn a_whole_completion_sent_as_one_event_is_read() {
        let (reply, pieces) = stream(&[completion(json!({"content": "all at once"}))]);
        assert_eq!(reply.unwrap(), BrainReply::Say("all at once".into()));
        assert_eq!(pieces, ["all at once"]);
    }

    #[test]
    fn broken_streams_are_refused() {
        let (reply, _) = stream(&[]);
        assert_eq!(message(reply), "the stream ended without a completion chunk");
        let (reply, pieces) = stream(&[delta(json!({"content": "a"})), json!("{\"choices\": [")]);
        assert!(message(reply).starts_with("stream chunk 2 is not a completion chunk"));
        assert_eq!(pieces, ["a"]);
        let (reply, _) = stream(&[json!({"error": {"message": "out of memory"}})]);
        assert_eq!(message(reply), "the server reported an error: out of memory");
        let (reply, _) = stream(&[delta(
            json!({"tool_calls": [{"index": 0, "function": {"name": "recall", "arguments": "{\"a\""}}]}),
        )]);
        assert!(message(reply).contains("are not valid JSON"));
        let many: Vec<Value> = (0..=MAX_TOOL_CALLS as u64)
            .map(|index| delta(json!({"tool_calls": [{"index": index, "function": {"name": "recall"}}]})))
            .collect();
        assert!(message(stream(&many).0).contains("more than 64 tool calls"));
    }

    #[test]
    fn an_error_event_is_reported() {
        let mut assembly = StreamAssembly::default();
        let err = assembly.push("error", "upstream timed out", &mut |_: &str| {}).unwrap_err();
        assert_eq!(err, BrainError::Malformed("the server reported an error: upstream timed out".into()));
    }

    #[test]
    fn excerpts_are_short_single_lines() {
        assert_eq!(excerpt("a\n  b\tc"), "a b c");
        let long = "é".repeat(500);
        let cut = excerpt(&long);
        assert_eq!(cut.chars().count(), 201);
        assert!(cut.ends_with('…'));
    }
}
