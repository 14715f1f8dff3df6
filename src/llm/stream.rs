//! Pure: a streamed answer put back together, chunk by chunk: the text as it grows, tool
//! calls from their fragments (by index), and the usage chunk that ends the stream.

use async_openai::types::chat::{CompletionUsage, CreateChatCompletionStreamResponse};

use super::client::ModelReply;
use super::history::ToolCallRecord;
use super::pricing::Usage;

#[derive(Debug, Default)]
pub struct StreamAssembly {
    text: String,
    /// Tool calls by their index in the stream.
    calls: Vec<(u32, ToolCallRecord)>,
    usage: Option<Usage>,
    model: String,
}

pub fn usage_of(usage: CompletionUsage) -> Usage {
    Usage {
        prompt_tokens: u64::from(usage.prompt_tokens),
        cached_tokens: u64::from(
            usage
                .prompt_tokens_details
                .and_then(|d| d.cached_tokens)
                .unwrap_or(0),
        ),
        completion_tokens: u64::from(usage.completion_tokens),
    }
}

impl StreamAssembly {
    /// Takes one chunk; true when the answer's text grew.
    pub fn push(&mut self, chunk: CreateChatCompletionStreamResponse) -> bool {
        if self.model.is_empty() {
            self.model = chunk.model;
        }
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage_of(usage));
        }
        let mut grew = false;
        // Only the first choice is ours (n is never set).
        for choice in chunk.choices.into_iter().filter(|c| c.index == 0) {
            if let Some(text) = choice.delta.content.filter(|t| !t.is_empty()) {
                self.text.push_str(&text);
                grew = true;
            }
            for fragment in choice.delta.tool_calls.into_iter().flatten() {
                let at = match self.calls.iter().position(|(i, _)| *i == fragment.index) {
                    Some(at) => at,
                    None => {
                        self.calls.push((
                            fragment.index,
                            ToolCallRecord {
                                id: String::new(),
                                name: String::new(),
                                arguments: String::new(),
                            },
                        ));
                        self.calls.len() - 1
                    }
                };
                let call = &mut self.calls[at].1;
                if let Some(id) = fragment.id {
                    call.id.push_str(&id);
                }
                if let Some(function) = fragment.function {
                    call.name.push_str(&function.name.unwrap_or_default());
                    call.arguments
                        .push_str(&function.arguments.unwrap_or_default());
                }
            }
        }
        grew
    }

    /// The answer's text so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Tool calls are being written: the text so far is not the answer's.
    pub fn has_tool_calls(&self) -> bool {
        !self.calls.is_empty()
    }

    /// The whole reply, as a non-streamed request would have given it. A stream that ended
    /// without its usage chunk (a server that ignores `include_usage`) bills nothing known.
    pub fn finish(mut self) -> ModelReply {
        self.calls.sort_by_key(|(index, _)| *index);
        ModelReply {
            content: (!self.text.is_empty()).then_some(self.text),
            tool_calls: self.calls.into_iter().map(|(_, call)| call).collect(),
            usage: self.usage.unwrap_or_default(),
            model: self.model,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(value: serde_json::Value) -> CreateChatCompletionStreamResponse {
        let mut base = serde_json::json!({
            "id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m-1",
            "choices": [],
        });
        for (k, v) in value.as_object().unwrap() {
            base[k] = v.clone();
        }
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn text_grows_and_the_usage_chunk_bills_it() {
        let mut stream = StreamAssembly::default();
        assert!(stream.push(chunk(serde_json::json!({"choices": [
            {"index": 0, "delta": {"role": "assistant", "content": "Hel"}, "finish_reason": null}]}))));
        assert!(stream.push(chunk(serde_json::json!({"choices": [
            {"index": 0, "delta": {"content": "lo"}, "finish_reason": "stop"}]}))));
        assert_eq!(stream.text(), "Hello");
        assert!(!stream.push(chunk(serde_json::json!({"usage":
            {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15,
             "prompt_tokens_details": {"cached_tokens": 4}}}))));
        let reply = stream.finish();
        assert_eq!(reply.content.as_deref(), Some("Hello"));
        assert_eq!(reply.model, "m-1");
        assert_eq!(
            reply.usage,
            Usage {
                prompt_tokens: 12,
                cached_tokens: 4,
                completion_tokens: 3
            }
        );
    }

    #[test]
    fn tool_calls_are_assembled_from_their_fragments_in_index_order() {
        let mut stream = StreamAssembly::default();
        for delta in [
            serde_json::json!({"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                "function": {"name": "execute_python_code", "arguments": ""}}]}),
            serde_json::json!({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                "function": {"name": "execute_", "arguments": "{\"co"}}]}),
            serde_json::json!({"tool_calls": [{"index": 0, "function": {"name": "python_code", "arguments": "de\": \"print(1)\"}"}}]}),
            serde_json::json!({"tool_calls": [{"index": 1, "function": {"arguments": "{\"code\": \"2\"}"}}]}),
        ] {
            stream.push(chunk(
                serde_json::json!({"choices": [{"index": 0, "delta": delta, "finish_reason": null}]}),
            ));
        }
        assert!(stream.has_tool_calls());
        let reply = stream.finish();
        assert_eq!(reply.content, None);
        assert_eq!(
            reply.usage,
            Usage::default(),
            "no usage chunk: nothing known"
        );
        let calls: Vec<(&str, &str, &str)> = reply
            .tool_calls
            .iter()
            .map(|c| (c.id.as_str(), c.name.as_str(), c.arguments.as_str()))
            .collect();
        assert_eq!(
            calls,
            vec![
                ("call_a", "execute_python_code", "{\"code\": \"print(1)\"}"),
                ("call_b", "execute_python_code", "{\"code\": \"2\"}"),
            ]
        );
    }
}
