//! Conversation history: our own message type (stored per user and channel), and trimming
//! to a token budget that only ever drops whole turns, so a tool call is never separated
//! from its result.

use serde::{Deserialize, Serialize};

use super::tokens::{Encoding, count_chat};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCallRecord {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum ChatMessage {
    System {
        content: String,
    },
    User {
        content: String,
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
            ChatMessage::User { .. } => "user",
            ChatMessage::Assistant { .. } => "assistant",
            ChatMessage::Tool { .. } => "tool",
        }
    }

    /// The text that counts against the budget (tool calls count by their arguments).
    fn counted_text(&self) -> String {
        match self {
            ChatMessage::System { content }
            | ChatMessage::User { content }
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

pub fn count_messages(encoding: Encoding, messages: &[ChatMessage]) -> usize {
    let texts: Vec<(&str, String)> = messages
        .iter()
        .map(|m| (m.role(), m.counted_text()))
        .collect();
    count_chat(encoding, texts.iter().map(|(r, t)| (*r, t.as_str())))
}

/// Drops the oldest whole turns (a turn starts at a user message) until the history fits
/// in `budget` tokens; the newest turn is always kept.
pub fn trim_to_budget(encoding: Encoding, history: &mut Vec<ChatMessage>, budget: usize) {
    loop {
        if count_messages(encoding, history) <= budget {
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
            ChatMessage::User {
                content: format!("question {n} {}", "word ".repeat(50)),
            },
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
