//! Conversation history: our own message type (stored per user and channel), and trimming
//! to a token budget that only ever drops whole turns, so a tool call is never separated
//! from its result. Pictures are kept by file id, never by their bytes: each request
//! attaches them again while their files live.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::tokens::{Encoding, count_chat};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCallRecord {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// A picture in the conversation: a stored file, by id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ImageRef {
    pub file_id: String,
    pub filename: String,
    /// What the picture is: a user's attachment, or a figure a run drew.
    pub kind: ImageKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageKind {
    Attached,
    Figure,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum ChatMessage {
    System {
        content: String,
    },
    User {
        content: String,
        /// Pictures attached to the message.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        images: Vec<ImageRef>,
    },
    /// The pictures a round of runs drew, shown to the model right after the tool results
    /// (a `tool` message may carry only text); sent with the user role, but not the start
    /// of a turn.
    Figures {
        content: String,
        images: Vec<ImageRef>,
    },
    Assistant {
        #[serde(default)]
        content: Option<String>,
        #[serde(default)]
        tool_calls: Vec<ToolCallRecord>,
    },
    Tool {
        tool_call_id: String,
        content: String,
    },
}

impl ChatMessage {
    fn role(&self) -> &'static str {
        match self {
            ChatMessage::System { .. } => "system",
            ChatMessage::User { .. } | ChatMessage::Figures { .. } => "user",
            ChatMessage::Assistant { .. } => "assistant",
            ChatMessage::Tool { .. } => "tool",
        }
    }

    /// The text that counts against the budget (tool calls count by their arguments).
    fn counted_text(&self) -> String {
        match self {
            ChatMessage::System { content }
            | ChatMessage::User { content, .. }
            | ChatMessage::Figures { content, .. }
            | ChatMessage::Tool { content, .. } => content.clone(),
            ChatMessage::Assistant {
                content,
                tool_calls,
            } => {
                let mut text = content.clone().unwrap_or_default();
                for call in tool_calls {
                    text.push_str(&call.name);
                    text.push_str(&call.arguments);
                }
                text
            }
        }
    }
}

impl ChatMessage {
    /// A user's message without pictures.
    pub fn user(content: impl Into<String>) -> ChatMessage {
        ChatMessage::User {
            content: content.into(),
            images: Vec::new(),
        }
    }

    pub fn images(&self) -> &[ImageRef] {
        match self {
            ChatMessage::User { images, .. } | ChatMessage::Figures { images, .. } => images,
            _ => &[],
        }
    }
}

/// Tokens each picture costs in a request (those not sent cost none).
pub type ImageTokens = HashMap<ImageRef, u64>;

pub fn count_messages(encoding: Encoding, messages: &[ChatMessage]) -> usize {
    count_with_images(encoding, messages, &ImageTokens::new())
}

/// Text and pictures: what a request of these messages costs.
pub fn count_with_images(
    encoding: Encoding,
    messages: &[ChatMessage],
    images: &ImageTokens,
) -> usize {
    let texts: Vec<(&str, String)> = messages
        .iter()
        .map(|m| (m.role(), m.counted_text()))
        .collect();
    let pictures: u64 = messages
        .iter()
        .flat_map(|m| m.images())
        .filter_map(|image| images.get(image))
        .sum();
    count_chat(encoding, texts.iter().map(|(r, t)| (*r, t.as_str()))) + pictures as usize
}

/// Drops the oldest whole turns (a turn starts at a user message) until the history fits
/// in `budget` tokens; the newest turn is always kept.
pub fn trim_to_budget(encoding: Encoding, history: &mut Vec<ChatMessage>, budget: usize) {
    trim_with_images(encoding, history, budget, &ImageTokens::new())
}

/// `trim_to_budget`, pictures counted.
pub fn trim_with_images(
    encoding: Encoding,
    history: &mut Vec<ChatMessage>,
    budget: usize,
    images: &ImageTokens,
) {
    loop {
        if count_with_images(encoding, history, images) <= budget {
            return;
        }
        let turn_starts: Vec<usize> = history
            .iter()
            .enumerate()
            .filter(|(_, m)| matches!(m, ChatMessage::User { .. }))
            .map(|(i, _)| i)
            .collect();
        if turn_starts.len() < 2 {
            return;
        }
        history.drain(..turn_starts[1]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(n: usize) -> Vec<ChatMessage> {
        vec![
            ChatMessage::user(format!("question {n} {}", "word ".repeat(50))),
            ChatMessage::Assistant {
                content: None,
                tool_calls: vec![ToolCallRecord {
                    id: format!("call_{n}"),
                    name: "execute_python_code".into(),
                    arguments: "{\"code\":\"print(1)\"}".into(),
                }],
            },
            ChatMessage::Tool {
                tool_call_id: format!("call_{n}"),
                content: "{\"status\":\"ok\"}".into(),
            },
            ChatMessage::Assistant {
                content: Some(format!("answer {n}")),
                tool_calls: vec![],
            },
        ]
    }

    #[test]
    fn trimming_drops_whole_turns_only() {
        let mut history: Vec<ChatMessage> = (0..10).flat_map(turn).collect();
        let one_turn = count_messages(Encoding::O200kBase, &turn(0));
        trim_to_budget(Encoding::O200kBase, &mut history, one_turn * 3);
        assert!(count_messages(Encoding::O200kBase, &history) <= one_turn * 3);
        assert!(matches!(history[0], ChatMessage::User { .. }));
        assert_eq!(history.len() % 4, 0, "no turn was cut in half");
        // Every tool message still follows the assistant call it answers.
        for (i, message) in history.iter().enumerate() {
            if let ChatMessage::Tool { tool_call_id, .. } = message {
                assert!(
                    matches!(&history[i - 1], ChatMessage::Assistant { tool_calls, .. }
                    if tool_calls.iter().any(|c| &c.id == tool_call_id))
                );
            }
        }
        assert_eq!(history.last(), turn(9).last(), "the newest turn is kept");
    }

    #[test]
    fn the_newest_turn_survives_any_budget() {
        let mut history = turn(1);
        trim_to_budget(Encoding::O200kBase, &mut history, 1);
        assert_eq!(history, turn(1));
    }

    #[test]
    fn messages_round_trip_as_json() {
        for message in turn(3) {
            let text = serde_json::to_string(&message).unwrap();
            assert_eq!(serde_json::from_str::<ChatMessage>(&text).unwrap(), message);
        }
    }
}
