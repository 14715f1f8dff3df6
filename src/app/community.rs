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
    /// A server's settings (the defaults when its admins set none); None outside a
    /// server. Settings that cannot be read are an error: their blocks, caps and model
    /// rules are never skipped.
    pub async fn guild_settings(
        &self,
        guild_id: Option<&str>,
    ) -> Result<Option<GuildSettings>, AppError> {
        let Some(guild) = guild_id else {
            return Ok(None);
        };
        let settings = self.conversations().await?.guild_settings(guild).await?;
        Ok(Some(settings.unwrap_or_default()))
    }

    /// Changes a server's settings with `change` (which may refuse with a sentence, as
    /// `AppError::Refused`); the settings as saved.
    pub async fn update_guild_settings(
        &self,
        guild_id: &str,
        change: impl FnOnce(&mut GuildSettings) -> Result<(), AppError>,
    ) -> Result<GuildSettings, AppError> {
        // Two admins at once must not undo each other's change (a block lost).
        let _one_at_a_time = self.guild_updates.lock().await;
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
    pub async fn allowed_models(&self, guild_id: Option<&str>) -> Result<Vec<String>, AppError> {
        let guild = self.guild_settings(guild_id).await?;
        Ok(super::models::allowed_models(
            &self.settings.chat,
            guild.as_ref(),
        ))
    }

    /// The model that answers this member here.
    pub async fn model_for(
        &self,
        user_id: &str,
        guild_id: Option<&str>,
    ) -> Result<String, AppError> {
        let guild = self.guild_settings(guild_id).await?;
        let member = self.user_settings(user_id).await?;
        Ok(super::models::model_for(
            &self.settings.chat,
            guild.as_ref(),
            &member,
        ))
    }

    /// Keeps a member's choice of model; refused (with a sentence) when it is not allowed
    /// here.
    pub async fn choose_model(
        &self,
        user_id: &str,
        guild_id: Option<&str>,
        model: &str,
    ) -> Result<(), AppError> {
        let allowed = self.allowed_models(guild_id).await?;
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

    /// What this member may do here; nothing while the server's rules cannot be read.
    pub async fn access_for(
        &self,
        user_id: &str,
        roles: &[String],
        guild_id: Option<&str>,
    ) -> Access {
        match self.guild_settings(guild_id).await {
            Ok(guild) => {
                super::access::access(&self.settings.discord, guild.as_ref(), user_id, roles)
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot read the server's rules; refusing");
                Access::Blocked(format!(
                    "⚠️ This server's rules for the bot cannot be read right now ({}); please try again shortly.",
                    err.reason()
                ))
            }
        }
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
