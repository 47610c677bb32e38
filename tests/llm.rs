//! The model brain against a scripted OpenAI-compatible server on loopback: what it sends, how it
//! reads whole and streamed answers, how it retries, and how it refuses hostile or broken ones.

use std::time::{Duration, Instant};

use clawnet_node::agents::llm::{LlmBrain, LlmConfig, RetryDelays};
use clawnet_node::agents::{Brain, BrainError, BrainReply, Message, ToolCall, ToolSpec};
use clawnet_tests::model_server::{ModelServer, Script, delta, finish, sse_event};
use serde_json::json;

/// A bound on every test: nothing here should take more than a few seconds.
const LIMIT: Duration = Duration::from_secs(20);

const KEY: &str = "sk-test-4f2a9c1e-do-not-print";

fn config(server: &ModelServer, stream: bool) -> LlmConfig {
    LlmConfig { model: "test-model".into(), stream, ..server.config() }
}

fn brain(config: LlmConfig) -> LlmBrain {
    LlmBrain::new(config)
        .unwrap()
        .with_retry_delays(RetryDelays { first: Duration::from_millis(10), max: Duration::from_secs(3) })
}

fn tools() -> Vec<ToolSpec> {
    vec![
        ToolSpec {
            name: "recall".into(),
            description: "Recall memories matching a query".into(),
            parameters: json!({"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}),
        },
        ToolSpec {
            name: "end_session".into(),
            description: "End the session".into(),
            parameters: json!({"type": "object", "properties": {}}),
        },
    ]
}

fn conversation() -> Vec<Message> {
    vec![Message::system("You are Ada's work agent."), Message::user("When is the dentist?")]
}

/// Runs one decision, returning the result and every piece of text passed to `on_text`.
async fn decide(
    brain: &LlmBrain,
    conversation: &[Message],
    tools: &[ToolSpec],
) -> (Result<BrainReply, BrainError>, Vec<String>) {
    let mut pieces = Vec::new();
    let mut on_text = |piece: &str| pieces.push(piece.to_owned());
    let result = tokio::time::timeout(LIMIT, brain.decide(conversation, tools, &mut on_text))
        .await
        .expect("the decision did not finish in time");
    (result, pieces)
}

fn calls(reply: BrainReply) -> Vec<ToolCall> {
    match reply {
        BrainReply::Call { calls, .. } => calls,
        BrainReply::Say(text) => panic!("expected tool calls, got text {text:?}"),
    }
}

fn malformed(result: Result<BrainReply, BrainError>) -> String {
    match result {
        Err(BrainError::Malformed(message)) => message,
        other => panic!("expected a malformed answer, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_answer() {
    let server = ModelServer::start().await.unwrap();
    server.push(Script::answer("Tuesday at 10."));
    let brain = brain(config(&server, false));

    let (reply, pieces) = decide(&brain, &conversation(), &[]).await;
    assert_eq!(reply.unwrap(), BrainReply::Say("Tuesday at 10.".into()));
    assert_eq!(pieces, ["Tuesday at 10."]);

    let received = server.received();
    assert_eq!(received.len(), 1);
    assert_eq!((received[0].method.as_str(), received[0].path.as_str()), ("POST", "/v1/chat/completions"));
    assert_eq!(received[0].header("content-type"), Some("application/json"));
    assert_eq!(received[0].header("authorization"), None);
    assert_eq!(
        received[0].body,
        json!({
            "model": "test-model",
            "messages": [
                {"role": "system", "content": "You are Ada's work agent."},
                {"role": "user", "content": "When is the dentist?"},
            ],
            "stream": false,
        })
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tool_call_and_its_result_round_trip() {
    let server = ModelServer::start().await.unwrap();
    server.push(Script::tool_call("recall", json!({"query": "dentist"})));
    server.push(Script::answer("Tuesday."));
    let brain = brain(config(&server, false));
    let tools = tools();
    let mut conversation = conversation();

    let (reply, pieces) = decide(&brain, &conversation, &tools).await;
    let found = calls(reply.unwrap());
    assert_eq!(
        found,
        [ToolCall { id: "call_1".into(), name: "recall".into(), arguments: json!({"query": "dentist"}) }]
    );
    assert!(pieces.is_empty(), "no text came with the call: {pieces:?}");

    conversation.push(Message::calls("", found.clone()));
    conversation.push(Message::tool_result(&found[0], "dentist: Tuesday 10:00"));
    let (reply, _) = decide(&brain, &conversation, &tools).await;
    assert_eq!(reply.unwrap(), BrainReply::Say("Tuesday.".into()));

    let requests = server.requests();
    assert_eq!(requests[0]["tool_choice"], "auto");
    assert_eq!(
        requests[0]["tools"][0],
        json!({"type": "function", "function": {
            "name": "recall",
            "description": "Recall memories matching a query",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
        }})
    );
    let messages = requests[1]["messages"].as_array().unwrap();
    assert_eq!(
        messages[2],
        json!({"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "recall", "arguments": "{\"query\":\"dentist\"}"}}
        ]})
    );
    assert_eq!(messages[3], json!({"role": "tool", "content": "dentist: Tuesday 10:00", "tool_call_id": "call_1"}));
}

#[tokio::test(flavor = "multi_thread")]
async fn streamed_tool_call_with_fragmented_arguments() {
    let server = ModelServer::start().await.unwrap();
    server.push(Script::stream_tool_call("recall", &["{\"qu", "ery\": \"den", "tist\"", "}"]));
    let brain = brain(config(&server, true));

    let (reply, pieces) = decide(&brain, &conversation(), &tools()).await;
    let found = calls(reply.unwrap());
    assert_eq!(
        found,
        [ToolCall { id: "call_1".into(), name: "recall".into(), arguments: json!({"query": "dentist"}) }]
    );
    assert!(pieces.is_empty());
    let received = server.received();
    assert_eq!(received[0].body["stream"], true);
    assert_eq!(received[0].header("accept"), Some("text/event-stream"));
}

#[tokio::test(flavor = "multi_thread")]
async fn streaming_passes_text_on_in_order() {
    let server = ModelServer::start().await.unwrap();
    server.push(Script::stream_answer(&["Tues", "day ", "at ", "10", "."]).with_gap(Duration::from_millis(20)));
    let brain = brain(config(&server, true));

    let (reply, pieces) = decide(&brain, &conversation(), &[]).await;
    assert_eq!(reply.unwrap(), BrainReply::Say("Tuesday at 10.".into()));
    assert_eq!(pieces, ["Tues", "day ", "at ", "10", "."]);
}

#[tokio::test(flavor = "multi_thread")]
async fn streams_with_keep_alives_and_without_done() {
    let server = ModelServer::start().await.unwrap();
    let text = |piece: &str| sse_event(&delta(json!({"content": piece})));
    server.push(Script::sse([
        ": keep-alive\n\n".to_owned(),
        text("Hel"),
        ": ping\r\n\r\n".to_owned(),
        // An event split across writes, with CRLF line ends.
        format!("data: {}", delta(json!({"content": "lo", "reasoning_content": "hm"}))),
        "\r\n\r\n".to_owned(),
        // The last event not closed by a blank line, and no [DONE]: the body just ends.
        format!("data: {}", finish("stop")),
    ]));
    let brain = brain(config(&server, true));

    let (reply, pieces) = decide(&brain, &conversation(), &[]).await;
    assert_eq!(reply.unwrap(), BrainReply::Say("Hello".into()));
    assert_eq!(pieces, ["Hel", "lo"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn servers_that_ignore_stream_are_read_whole() {
    let server = ModelServer::start().await.unwrap();
    server.push(Script::answer("not streamed"));
    let brain = brain(config(&server, true));

    let (reply, pieces) = decide(&brain, &conversation(), &[]).await;
    assert_eq!(reply.unwrap(), BrainReply::Say("not streamed".into()));
    assert_eq!(pieces, ["not streamed"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn arguments_given_as_an_object_and_missing_ids() {
    let server = ModelServer::start().await.unwrap();
    server.push(Script::message(
        json!({"role": "assistant", "content": "Checking.", "reasoning_content": "the user wants a date", "tool_calls": [
            {"type": "function", "function": {"name": "recall", "arguments": {"query": "dentist"}}},
            {"type": "function", "function": {"name": "end_session", "arguments": {}}},
        ]}),
        "stop",
    ));
    let brain = brain(config(&server, false));

    let (reply, pieces) = decide(&brain, &conversation(), &tools()).await;
    match reply.unwrap() {
        BrainReply::Call { text, calls } => {
            assert_eq!(text, "Checking.");
            assert_eq!(calls[0].arguments, json!({"query": "dentist"}));
            assert_eq!(calls[1].arguments, json!({}));
            assert_eq!((calls[0].id.as_str(), calls[1].id.as_str()), ("call_2_0", "call_2_1"));
        }
        other => panic!("expected calls, got {other:?}"),
    }
    assert_eq!(pieces, ["Checking."]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_refusing_tool_choice_is_asked_again_without_it() {
    let server = ModelServer::start().await.unwrap();
    server.push(Script::status_with(400, "Unsupported parameter: 'tool_choice'"));
    server.push(Script::tool_call("recall", json!({"query": "dentist"})));
    server.push(Script::answer("Tuesday."));
    let brain = brain(config(&server, false));
    assert!(brain.offers_tool_choice());

    let (reply, _) = decide(&brain, &conversation(), &tools()).await;
    assert_eq!(calls(reply.unwrap()).len(), 1);
    assert!(!brain.offers_tool_choice());
    // Remembered: the next decision does not try it again.
    let (reply, _) = decide(&brain, &conversation(), &tools()).await;
    assert_eq!(reply.unwrap(), BrainReply::Say("Tuesday.".into()));

    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[0]["tool_choice"], "auto");
    for request in &requests[1..] {
        assert_eq!(request.get("tool_choice"), None);
        assert!(request["tools"].is_array(), "tools are still offered");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn other_bad_requests_are_not_retried() {
    let server = ModelServer::start().await.unwrap();
    server.push(Script::status_with(400, "model 'test-model' not found"));
    let brain = brain(config(&server, false));

    let (reply, _) = decide(&brain, &conversation(), &tools()).await;
    assert_eq!(reply, Err(BrainError::Http { status: 400, attempts: 1, body: "model 'test-model' not found".into() }));
    assert_eq!(server.requests().len(), 1);
    assert!(brain.offers_tool_choice());
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limit_with_retry_after_then_success() {
    let server = ModelServer::start().await.unwrap();
    server.push(Script::retry_after(429, 1));
    server.push(Script::answer("finally"));
    let brain = brain(config(&server, false));

    let started = Instant::now();
    let (reply, _) = decide(&brain, &conversation(), &[]).await;
    assert_eq!(reply.unwrap(), BrainReply::Say("finally".into()));
    // The backoff here is 10 ms: waiting a second is the server's Retry-After.
    assert!(started.elapsed() >= Duration::from_secs(1), "waited only {:?}", started.elapsed());
    assert_eq!(server.requests().len(), 2);
    assert_eq!(server.requests()[0], server.requests()[1], "the retry sends the same request");
}

#[tokio::test(flavor = "multi_thread")]
async fn server_errors_are_retried_up_to_max_retries() {
    let server = ModelServer::start().await.unwrap();
    server.push_all([Script::status(502), Script::status(500), Script::status(503), Script::answer("too late")]);
    let brain = brain(LlmConfig { max_retries: 2, ..config(&server, false) });

    let (reply, _) = decide(&brain, &conversation(), &[]).await;
    assert_eq!(reply, Err(BrainError::Http { status: 503, attempts: 3, body: "scripted HTTP 503".into() }));
    assert_eq!(server.requests().len(), 3);
    assert_eq!(server.n_unused(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_server_times_out() {
    let server = ModelServer::start().await.unwrap();
    server.push(Script::slow(Duration::from_secs(10), Script::answer("too late")));
    let brain = brain(LlmConfig { timeout_secs: 1, ..config(&server, false) });

    let started = Instant::now();
    let (reply, _) = decide(&brain, &conversation(), &[]).await;
    assert_eq!(reply, Err(BrainError::Timeout(1)));
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    assert_eq!(server.requests().len(), 1, "a timeout is not retried");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_that_stalls_times_out() {
    let server = ModelServer::start().await.unwrap();
    server.push(Script::stream_answer(&["a", "b"]).with_gap(Duration::from_secs(10)));
    let brain = brain(LlmConfig { timeout_secs: 1, ..config(&server, true) });

    let (reply, pieces) = decide(&brain, &conversation(), &[]).await;
    assert_eq!(reply, Err(BrainError::Timeout(1)));
    assert!(pieces.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_absent_server_is_unreachable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let brain = brain(LlmConfig { timeout_secs: 5, ..LlmConfig::new(format!("http://{address}/v1"), "m") });

    let (reply, _) = decide(&brain, &conversation(), &[]).await;
    match reply {
        Err(BrainError::Unreachable(message)) => assert!(message.starts_with(&address.to_string()), "{message}"),
        other => panic!("expected unreachable, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_that_is_not_json_is_refused() {
    let server = ModelServer::start().await.unwrap();
    server.push(Script::raw(&b"{\"choices\": [{\"message\": {\"content\": \"unterminated"[..]));
    server.push(Script::raw_with(200, "text/html", &b"<html>gateway</html>"[..]));
    server.push(Script::Json(json!({"object": "list", "data": []})));
    let brain = brain(config(&server, false));

    let message = malformed(decide(&brain, &conversation(), &[]).await.0);
    assert!(message.starts_with("the answer is not JSON (EOF while parsing"), "{message}");
    let message = malformed(decide(&brain, &conversation(), &[]).await.0);
    assert!(message.starts_with("the answer is not JSON"), "{message}");
    let message = malformed(decide(&brain, &conversation(), &[]).await.0);
    assert_eq!(message, "the answer is not a chat completion (no `choices`)");
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_tool_calls_are_refused() {
    let server = ModelServer::start().await.unwrap();
    let with_arguments = |arguments: &str| {
        Script::message(
            json!({"role": "assistant", "tool_calls": [
                {"id": "c", "type": "function", "function": {"name": "recall", "arguments": arguments}}
            ]}),
            "tool_calls",
        )
    };
    server.push(with_arguments("{\"query\": \"dent"));
    server.push(with_arguments("[\"dentist\"]"));
    server.push(Script::tool_call("transfer_funds", json!({"to": "mallory"})));
    let brain = brain(config(&server, false));
    let tools = tools();

    let message = malformed(decide(&brain, &conversation(), &tools).await.0);
    assert!(message.starts_with("the arguments of the call to \"recall\" are not valid JSON"), "{message}");
    let message = malformed(decide(&brain, &conversation(), &tools).await.0);
    assert_eq!(message, "the arguments of the call to \"recall\" are not a JSON object");
    let message = malformed(decide(&brain, &conversation(), &tools).await.0);
    assert_eq!(message, "the model called \"transfer_funds\", which is not an offered tool");
}

#[tokio::test(flavor = "multi_thread")]
async fn enormous_answers_are_refused() {
    let server = ModelServer::start().await.unwrap();
    let huge = "x".repeat(5 * 1024 * 1024);
    // Whole, with a Content-Length.
    server.push(Script::answer(&huge));
    // Streamed: one endless line.
    server.push(Script::sse(huge.as_bytes().chunks(64 * 1024).map(|chunk| chunk.to_vec()).collect::<Vec<_>>()));
    // Streamed: many small events adding up.
    let event = sse_event(&delta(json!({"content": "y".repeat(64 * 1024)})));
    server.push(Script::sse(vec![event; 80]));
    let brain_whole = brain(config(&server, false));
    let brain_streamed = brain(config(&server, true));

    let message = malformed(decide(&brain_whole, &conversation(), &[]).await.0);
    assert_eq!(message, "the answer is larger than 4 MiB");
    let message = malformed(decide(&brain_streamed, &conversation(), &[]).await.0);
    assert_eq!(message, "the answer is larger than 4 MiB");
    let (reply, pieces) = decide(&brain_streamed, &conversation(), &[]).await;
    assert_eq!(malformed(reply), "the answer is larger than 4 MiB");
    assert!(pieces.len() < 80);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_that_breaks_mid_way_is_refused() {
    let server = ModelServer::start().await.unwrap();
    server.push(
        Script::sse([sse_event(&delta(json!({"content": "Tues"}))), "data: {\"choices\": [{\"del".into()]).broken(),
    );
    let brain = brain(config(&server, true));

    let (reply, pieces) = decide(&brain, &conversation(), &[]).await;
    let message = malformed(reply);
    assert!(message.starts_with("the stream broke off after 1 chunks"), "{message}");
    assert_eq!(pieces, ["Tues"]);
    assert_eq!(server.requests().len(), 1, "a broken stream is not retried");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_ending_inside_an_event_is_refused() {
    let server = ModelServer::start().await.unwrap();
    server.push(Script::sse(["data: {\"choices\": [{\"delta\": {\"content\": \"Tu"]));
    server.push(Script::sse([": only a comment\n\n"]));
    let brain = brain(config(&server, true));

    let message = malformed(decide(&brain, &conversation(), &[]).await.0);
    assert!(message.starts_with("stream chunk 1 is not a completion chunk"), "{message}");
    let message = malformed(decide(&brain, &conversation(), &[]).await.0);
    assert_eq!(message, "the stream ended without a completion chunk");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_text_answer_is_an_empty_say() {
    let server = ModelServer::start().await.unwrap();
    server.push(Script::message(json!({"role": "assistant", "content": null}), "stop"));
    server.push(Script::stream_events(&[delta(json!({"role": "assistant"})), finish("stop")]));
    let brain_whole = brain(config(&server, false));
    let brain_streamed = brain(config(&server, true));

    let (reply, pieces) = decide(&brain_whole, &conversation(), &tools()).await;
    assert_eq!((reply.unwrap(), pieces.len()), (BrainReply::Say(String::new()), 0));
    let (reply, pieces) = decide(&brain_streamed, &conversation(), &tools()).await;
    assert_eq!((reply.unwrap(), pieces.len()), (BrainReply::Say(String::new()), 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_key_is_a_bearer_token_and_never_shown() {
    let server = ModelServer::start().await.unwrap();
    server.push(Script::answer("ok"));
    // Servers echo keys: in an error body, and in garbage that is reported as malformed.
    server.push(Script::status_with(401, &format!("Incorrect API key provided: {KEY}")));
    server.push(Script::raw(format!("<html>key {KEY} rejected</html>")));
    server.push(Script::tool_call(KEY, json!({})));
    let config = LlmConfig { api_key: Some(KEY.into()), ..config(&server, false) };
    assert!(!format!("{config:?}").contains(KEY));
    let brain = brain(config);
    assert!(!format!("{brain:?}").contains(KEY));
    assert!(!brain.describe().contains(KEY));

    let (reply, _) = decide(&brain, &conversation(), &[]).await;
    assert_eq!(reply.unwrap(), BrainReply::Say("ok".into()));
    for _ in 0..3 {
        let (reply, _) = decide(&brain, &conversation(), &tools()).await;
        let err = reply.unwrap_err();
        let shown = format!("{err} / {err:?}");
        assert!(!shown.contains(KEY), "{shown}");
        assert!(shown.contains("[api key]"), "{shown}");
    }
    for request in server.received() {
        assert_eq!(request.header("authorization"), Some(format!("Bearer {KEY}").as_str()));
        assert!(!request.body.to_string().contains(KEY), "the key is only in the header");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_answers_never_panic() {
    let server = ModelServer::start().await.unwrap();
    let hostile: Vec<Script> = vec![
        Script::raw(&b""[..]),
        Script::raw(&b"null"[..]),
        Script::raw(&b"[]"[..]),
        Script::raw(vec![0xff, 0xfe, 0x00]),
        Script::raw(format!("{{\"choices\": {}", "[".repeat(50_000))),
        Script::Json(json!({"choices": [{"message": {"tool_calls": [{"function": {"name": 5}}]}}]})),
        Script::Json(
            json!({"choices": [{"message": {"tool_calls": [{"function": {"name": "recall", "arguments": "\"\\\"[\\\"\""}}]}}]}),
        ),
        Script::Json(json!({"choices": [{"index": 99, "message": {"content": "from choice 99"}}]})),
        Script::sse(["data: [DONE]\n\n"]),
        Script::sse([format!("data: {}\n\n", json!({"choices": [{"delta": {"tool_calls": [{"index": u64::MAX}]}}]}))]),
        Script::sse(["event: error\ndata: overloaded\n\n"]),
        Script::raw_with(200, "text/event-stream", vec![b'\n'; 100_000]),
        Script::raw_with(200, "text/event-stream", "data: ".repeat(100_000)),
    ];
    let n_scripts = hostile.len();
    server.push_all(hostile);
    let brain = brain(config(&server, false));
    let tools = tools();

    let mut results = Vec::new();
    for _ in 0..n_scripts {
        results.push(decide(&brain, &conversation(), &tools).await.0);
    }
    assert_eq!(server.n_unused(), 0);
    // The one usable answer: a lone choice, whatever its index.
    assert_eq!(results[7], Ok(BrainReply::Say("from choice 99".into())));
    for (idx, result) in results.iter().enumerate() {
        if idx != 7 {
            assert!(matches!(result, Err(BrainError::Malformed(_))), "answer {idx}: {result:?}");
        }
    }
}
