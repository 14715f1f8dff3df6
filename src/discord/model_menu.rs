//! /model's select menu: the models a member may choose here, with their prices; a choice
//! is kept for the member who opened the menu.

use serenity::all::{
    ComponentInteraction, ComponentInteractionDataKind, CreateActionRow, CreateInteractionResponse,
    CreateInteractionResponseMessage, CreateSelectMenu, CreateSelectMenuKind,
    CreateSelectMenuOption, UserId,
};

use super::state::BotState;
use crate::app::AppError;
use crate::config::ChatSettings;

const MENU: &str = "codebox-model";

/// Pure: what a model costs and can do, in the menu's small text.
pub fn model_line(chat: &ChatSettings, model: &str) -> String {
    let price = match chat.price_of(model) {
        Some(p) => format!("${} in / ${} out per 1M tokens", p.input, p.output),
        None => "no price set".to_string(),
    };
    let mut traits = Vec::new();
    if crate::llm::vision::model_sees(chat.model_vision, &chat.models, model) {
        traits.push("sees pictures");
    }
    if !chat.model_has_tools(model) {
        traits.push("cannot run code");
    }
    if traits.is_empty() {
        price
    } else {
        format!("{price} · {}", traits.join(", "))
    }
}

/// The menu of `models` for `owner`, `current` selected. Discord shows at most 25.
pub fn menu(
    chat: &ChatSettings,
    owner: UserId,
    models: &[String],
    current: &str,
) -> CreateActionRow {
    let options = models
        .iter()
        .take(25)
        .map(|m| {
            CreateSelectMenuOption::new(m.chars().take(100).collect::<String>(), m.clone())
                .description(model_line(chat, m).chars().take(100).collect::<String>())
                .default_selection(m == current)
        })
        .collect();
    CreateActionRow::SelectMenu(
        CreateSelectMenu::new(
            format!("{MENU}:{owner}"),
            CreateSelectMenuKind::String { options },
        )
        .placeholder("Choose a model"),
    )
}

fn private(text: impl Into<String>) -> CreateInteractionResponse {
    CreateInteractionResponse::Message(
        CreateInteractionResponseMessage::new()
            .content(text)
            .ephemeral(true),
    )
}

/// The answer to a choice in a model menu; None when the press is not one.
pub async fn answer_choice(
    state: &BotState,
    press: &ComponentInteraction,
) -> Option<CreateInteractionResponse> {
    let owner = press.data.custom_id.strip_prefix(&format!("{MENU}:"))?;
    let ComponentInteractionDataKind::StringSelect { values } = &press.data.kind else {
        return None;
    };
    if owner != press.user.id.to_string() {
        return Some(private(
            "This menu belongs to someone else; use /model for your own.",
        ));
    }
    let model = values.first()?;
    let guild = press.guild_id.map(|g| g.to_string());
    let text = match state.app.choose_model(owner, guild.as_deref(), model).await {
        Ok(()) => format!(
            "Your model is now `{model}` ({}).",
            model_line(&state.app.settings().chat, model)
        ),
        Err(AppError::Refused(sentence)) => sentence,
        Err(err) => format!(
            "Could not keep your choice: {}.",
            super::reply::failure_reason(&err)
        ),
    };
    Some(CreateInteractionResponse::UpdateMessage(
        CreateInteractionResponseMessage::new()
            .content(text)
            .components(Vec::new()),
    ))
}
