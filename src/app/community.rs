//! What a community's admins and members set: the server's settings (limits, budgets,
//! models, its prompt, access), a member's own settings, their usage per model, and the
//! code of a turn for its Code button.

use std::collections::BTreeMap;

use super::access::Access;
use super::metered::month_of;
use super::{App, AppError};
use crate::conversations::{ConversationStore, GuildSettings, TurnCode, UsageTotals, UserSettings};
use crate::sandbox::Limits;

impl App {
    /// A server's settings (the defaults when its admins set none, or, logged, when they
    /// cannot be read: the operator's settings then apply); None outside a server.
    pub async fn guild_settings(&self, guild_id: Option<&str>) -> Option<GuildSettings> {
        let guild = guild_id?;
        let conversations = match self.conversations().await {
            Ok(conversations) => conversations,
            Err(err) => {
                tracing::warn!(error = %err, "cannot open conversations; the operator's settings apply");
                return Some(GuildSettings::default());
            }
        };
        match conversations.guild_settings(guild).await {
            Ok(settings) => Some(settings.unwrap_or_default()),
            Err(err) => {
                tracing::warn!(error = %err, "cannot read the server's settings; the operator's apply");
                Some(GuildSettings::default())
            }
        }
    }

    /// Changes a server's settings with `change` (which may refuse with a sentence, as
    /// `AppError::Refused`); the settings as saved.
    pub async fn update_guild_settings(
        &self,
        guild_id: &str,
        change: impl FnOnce(&mut GuildSettings) -> Result<(), AppError>,
    ) -> Result<GuildSettings, AppError> {
        let conversations = self.conversations().await?;
        let mut settings = conversations
            .guild_settings(guild_id)
            .await?
            .unwrap_or_default();
        change(&mut settings)?;
        conversations
            .set_guild_settings(guild_id, &settings)
            .await?;
        Ok(settings)
    }

    /// The limits under a server's settings: the operator's, lowered where its admins chose.
    pub fn limits_in(&self, guild: Option<&GuildSettings>) -> Limits {
        let operator = self.operator_limits();
        match guild {
            Some(g) => operator.narrowed(g.timeout_s, g.memory_mb),
            None => operator,
        }
    }

    pub async fn user_settings(&self, user_id: &str) -> Result<UserSettings, AppError> {
        Ok(self.conversations().await?.user_settings(user_id).await?)
    }

    pub async fn set_user_settings(
        &self,
        user_id: &str,
        settings: &UserSettings,
    ) -> Result<(), AppError> {
        Ok(self
            .conversations()
            .await?
            .set_user_settings(user_id, settings)
            .await?)
    }

    /// The models a member may choose in this server (OPENAI_MODEL first).
    pub async fn allowed_models(&self, guild_id: Option<&str>) -> Vec<String> {
        let guild = self.guild_settings(guild_id).await;
        super::models::allowed_models(&self.settings.chat, guild.as_ref())
    }

    /// The model that answers this member here.
    pub async fn model_for(&self, user_id: &str, guild_id: Option<&str>) -> String {
        let guild = self.guild_settings(guild_id).await;
        let member = self.user_settings(user_id).await.unwrap_or_default();
        super::models::model_for(&self.settings.chat, guild.as_ref(), &member)
    }

    /// Keeps a member's choice of model; refused (with a sentence) when it is not allowed
    /// here.
    pub async fn choose_model(
        &self,
        user_id: &str,
        guild_id: Option<&str>,
        model: &str,
    ) -> Result<(), AppError> {
        let allowed = self.allowed_models(guild_id).await;
        if !allowed.iter().any(|m| m == model) {
            return Err(AppError::Refused(format!(
                "`{model}` is not one of the models you may choose here ({}).",
                allowed.join(", ")
            )));
        }
        let mut settings = self.user_settings(user_id).await?;
        settings.model = Some(model.to_string());
        self.set_user_settings(user_id, &settings).await
    }

    /// What this member may do here.
    pub async fn access_for(
        &self,
        user_id: &str,
        roles: &[String],
        guild_id: Option<&str>,
    ) -> Access {
        let guild = self.guild_settings(guild_id).await;
        super::access::access(&self.settings.discord, guild.as_ref(), user_id, roles)
    }

    /// This month's usage of a member per model: (month, totals by model).
    pub async fn usage_by_model(
        &self,
        user_id: &str,
    ) -> Result<(String, BTreeMap<String, UsageTotals>), AppError> {
        let month = month_of(chrono::Utc::now());
        let by_model = self
            .conversations()
            .await?
            .usage_by_model(user_id, &month)
            .await?;
        Ok((month, by_model))
    }

    /// The code a turn ran, for its Code button; None when it is not kept (any more).
    pub async fn turn_code(&self, turn_id: &str) -> Result<Option<TurnCode>, AppError> {
        Ok(self.conversations().await?.turn_code(turn_id).await?)
    }
}
