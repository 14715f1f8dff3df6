//! Which model answers a member, and the clients of the model servers: one per model,
//! made on first use (each model may live on its own OpenAI-compatible server).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::ChatSettings;
use crate::conversations::{GuildSettings, UserSettings};
use crate::llm::client::OpenAiChat;

/// Pure: the models a member may choose here: the operator's, narrowed by the server's
/// admins (OPENAI_MODEL stays when the admins' list leaves none).
pub fn allowed_models(chat: &ChatSettings, guild: Option<&GuildSettings>) -> Vec<String> {
    let operator = chat.chat_model_names();
    let Some(allowed) = guild.and_then(|g| g.allowed_models.as_ref()) else {
        return operator;
    };
    let narrowed: Vec<String> = operator
        .iter()
        .filter(|m| allowed.contains(m))
        .cloned()
        .collect();
    if narrowed.is_empty() {
        operator.into_iter().take(1).collect()
    } else {
        narrowed
    }
}

/// Pure: the model that answers: the member's choice when it is allowed here, else the
/// server's default when allowed, else the first allowed.
pub fn model_for(
    chat: &ChatSettings,
    guild: Option<&GuildSettings>,
    user: &UserSettings,
) -> String {
    let allowed = allowed_models(chat, guild);
    let default = guild.and_then(|g| g.default_model.as_ref());
    user.model
        .as_ref()
        .filter(|m| allowed.contains(m))
        .or(default.filter(|m| allowed.contains(m)))
        .or(allowed.first())
        .cloned()
        .unwrap_or_else(|| chat.openai_model.clone())
}

#[derive(Default)]
pub struct ModelClients {
    made: Mutex<HashMap<String, Arc<OpenAiChat>>>,
}

impl ModelClients {
    /// The client for `model`; None when its server has no key (OPENAI_API_KEY unset).
    pub fn get(&self, chat: &ChatSettings, model: &str) -> Option<Arc<OpenAiChat>> {
        let mut made = self.made.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = made.get(model) {
            return Some(client.clone());
        }
        let (base_url, key) = chat.model_server(model)?;
        let client = Arc::new(
            OpenAiChat::new(
                &base_url,
                key.expose(),
                model,
                Duration::from_secs_f64(chat.openai_timeout),
            )
            .streaming(chat.model_streams(model)),
        );
        made.insert(model.to_string(), client.clone());
        Some(client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat() -> ChatSettings {
        ChatSettings {
            openai_model: "gpt-4o-mini".into(),
            chat_models: "gpt-4.1, gpt-4o".into(),
            ..ChatSettings::default()
        }
    }

    #[test]
    fn a_models_server_and_its_key_come_from_one_row() {
        use crate::config::{ModelEntry, Secret};
        let mut chat = chat();
        chat.openai_api_key = Some(Secret::new("default-key"));
        chat.models.insert(
            "gpt".into(),
            ModelEntry {
                base_url: Some("http://a/v1".into()),
                api_key_env: Some("A_KEY".into()),
                api_key: Some(Secret::new("a-key")),
                ..ModelEntry::default()
            },
        );
        chat.models.insert(
            "gpt-oss".into(),
            ModelEntry {
                base_url: Some("http://b/v1".into()),
                ..ModelEntry::default()
            },
        );
        let server = |model: &str| {
            let (url, key) = chat.model_server(model).unwrap();
            (url, key.expose().to_string())
        };
        assert_eq!(server("gpt-x"), ("http://a/v1".into(), "a-key".into()));
        // Its own row's server, and no one else's key.
        assert_eq!(server("gpt-oss-20b"), ("http://b/v1".into(), String::new()));
        assert_eq!(
            server("claude-3"),
            (chat.openai_base_url.clone(), "default-key".into())
        );
        chat.openai_api_key = None;
        assert!(chat.model_server("claude-3").is_none());
    }

    #[test]
    fn a_member_gets_their_choice_only_where_it_is_allowed() {
        let chat = chat();
        let choice = UserSettings {
            model: Some("gpt-4.1".into()),
            ..UserSettings::default()
        };
        assert_eq!(model_for(&chat, None, &choice), "gpt-4.1");
        assert_eq!(
            model_for(&chat, None, &UserSettings::default()),
            "gpt-4o-mini"
        );
        let guild = GuildSettings {
            allowed_models: Some(vec!["gpt-4o".into(), "not-the-operators".into()]),
            default_model: Some("gpt-4o".into()),
            ..GuildSettings::default()
        };
        assert_eq!(allowed_models(&chat, Some(&guild)), vec!["gpt-4o"]);
        assert_eq!(model_for(&chat, Some(&guild), &choice), "gpt-4o");
        let none_left = GuildSettings {
            allowed_models: Some(vec!["gone".into()]),
            ..GuildSettings::default()
        };
        assert_eq!(allowed_models(&chat, Some(&none_left)), vec!["gpt-4o-mini"]);
    }
}
