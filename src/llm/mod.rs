//! The model side: the one tool, token counting and cost, the tool result the model sees,
//! conversation history trimming, and the loop that lets the model run code.

pub mod client;
pub mod conversation;
pub mod history;
pub mod pictures;
pub mod pricing;
pub mod stream;
pub mod tokens;
pub mod tool;
pub mod tool_result;
pub mod vision;
