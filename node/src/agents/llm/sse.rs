//! Server-sent events as model servers stream completions: `data:` lines, events separated by a
//! blank line, `:` comments as keep-alives.
//!
//! Lines end in `\n` or `\r\n` (a lone `\r`, allowed by the standard, is not used by any model
//! server and is not recognized). The decoder holds at most one unfinished line plus the data of
//! one unfinished event; the caller bounds the bytes it feeds.

/// One event: its `event:` name (empty when not given) and its `data:` lines joined by `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SseEvent {
    /// The `event:` field, or empty.
    pub(super) name: String,
    /// The data.
    pub(super) data: String,
}

/// An incremental decoder: feed it the body's chunks as they come.
#[derive(Debug, Default)]
pub(super) struct SseDecoder {
    /// Bytes of the line not yet terminated.
    pending: Vec<u8>,
    /// The event being assembled.
    name: String,
    data: String,
    has_data: bool,
}

impl SseDecoder {
    /// Feeds `bytes` (a chunk may end anywhere, even inside a character) and returns the events
    /// they complete, in order, with `secret` replaced by `[api key]`.
    pub(super) fn push(&mut self, bytes: &[u8], secret: Option<&str>) -> Vec<SseEvent> {
        let mut events = Vec::new();
        let mut rest = bytes;
        while let Some(end) = rest.iter().position(|&byte| byte == b'\n') {
            let (line, after) = rest.split_at(end);
            rest = &after[1..];
            if self.pending.is_empty() {
                self.line(line, secret, &mut events);
            } else {
                let mut whole = std::mem::take(&mut self.pending);
                whole.extend_from_slice(line);
                self.line(&whole, secret, &mut events);
            }
        }
        self.pending.extend_from_slice(rest);
        events
    }

    /// The end of the body: an event the server did not close with a blank line still counts.
    pub(super) fn finish(&mut self, secret: Option<&str>) -> Option<SseEvent> {
        let mut events = Vec::new();
        let last = std::mem::take(&mut self.pending);
        if !last.is_empty() {
            self.line(&last, secret, &mut events);
        }
        self.line(b"", secret, &mut events);
        events.pop()
    }

    fn line(&mut self, line: &[u8], secret: Option<&str>, events: &mut Vec<SseEvent>) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            if self.has_data {
                let mut data = std::mem::take(&mut self.data);
                if data.ends_with('\n') {
                    data.pop();
                }
                events.push(SseEvent { name: std::mem::take(&mut self.name), data });
            }
            self.name.clear();
            self.has_data = false;
            return;
        }
        if line.starts_with(b":") {
            return; // a comment: keep-alive
        }
        let (field, value) = match line.iter().position(|&byte| byte == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        let value = String::from_utf8_lossy(value);
        let value = match secret.filter(|secret| !secret.is_empty() && value.contains(secret)) {
            Some(secret) => value.replace(secret, "[api key]").into(),
            None => value,
        };
        match field {
            b"data" => {
                self.data.push_str(&value);
                self.data.push('\n');
                self.has_data = true;
            }
            b"event" => self.name = value.into_owned(),
            _ => {} // id, retry and unknown fields mean nothing here
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(events: &[SseEvent]) -> Vec<&str> {
        events.iter().map(|event| event.data.as_str()).collect()
    }

    #[test]
    fn events_are_split_on_blank_lines() {
        let mut decoder = SseDecoder::default();
        let events = decoder.push(b"data: {\"a\":1}\n\ndata: {\"b\":2}\n\ndata: [DONE]\n\n", None);
        assert_eq!(data(&events), ["{\"a\":1}", "{\"b\":2}", "[DONE]"]);
        assert_eq!(decoder.finish(None), None);
    }

    #[test]
    fn chunks_may_end_anywhere() {
        let stream = "data: {\"text\":\"héllo\"}\r\n\r\n: keep-alive\n\ndata:second\n\n".as_bytes();
        let whole = SseDecoder::default().push(stream, None);
        for size in 1..stream.len() {
            let mut decoder = SseDecoder::default();
            let mut events = Vec::new();
            for chunk in stream.chunks(size) {
                events.extend(decoder.push(chunk, None));
            }
            assert_eq!(events, whole, "chunks of {size} bytes");
        }
        assert_eq!(data(&whole), ["{\"text\":\"héllo\"}", "second"]);
    }

    #[test]
    fn comments_and_other_fields_are_ignored() {
        let mut decoder = SseDecoder::default();
        let events = decoder.push(b": ping\n\nid: 7\nretry: 100\ndata: x\n\n:\n\n", None);
        assert_eq!(data(&events), ["x"]);
    }

    #[test]
    fn multi_line_data_is_joined() {
        let mut decoder = SseDecoder::default();
        let events = decoder.push(b"data: one\ndata:two\ndata\n\n", None);
        assert_eq!(data(&events), ["one\ntwo\n"]);
    }

    #[test]
    fn event_names_are_kept_per_event() {
        let mut decoder = SseDecoder::default();
        let events = decoder.push(b"event: error\ndata: {\"message\":\"boom\"}\n\ndata: after\n\n", None);
        assert_eq!(events[0].name, "error");
        assert_eq!(events[1].name, "");
    }

    #[test]
    fn an_unterminated_last_event_counts_at_the_end() {
        let mut decoder = SseDecoder::default();
        assert!(decoder.push(b"data: {\"a\":1}\n\ndata: {\"b\"", None).len() == 1);
        assert_eq!(decoder.push(b":2}", None), []);
        assert_eq!(decoder.finish(None).map(|event| event.data), Some("{\"b\":2}".to_owned()));
        assert_eq!(decoder.finish(None), None);
    }

    #[test]
    fn a_secret_is_removed_from_every_line() {
        let mut decoder = SseDecoder::default();
        let events = decoder.push(b"event: sk-1\ndata: {\"content\": \"sk-1 and sk-1\"}\n\n", Some("sk-1"));
        assert_eq!(events[0].name, "[api key]");
        assert_eq!(events[0].data, "{\"content\": \"[api key] and [api key]\"}");
    }

    #[test]
    fn invalid_utf8_does_not_panic() {
        let mut decoder = SseDecoder::default();
        let events = decoder.push(b"data: \xff\xfe\n\n", None);
        assert_eq!(events.len(), 1);
    }
}
