//! Presses of the bot's buttons: Stop on a status message, Confirm / Cancel of /delete,
//! Code on an answer. A button with an owner answers only them; anyone else is told so,
//! privately. Code shows a turn's code to whoever pressed it, privately.

use std::sync::Arc;

use serenity::all::{
    ComponentInteraction, ComponentInteractionDataKind, CreateAttachment,
    CreateInteractionResponse, CreateInteractionResponseMessage, Http,
};

use super::buttons::Button;
use super::state::BotState;

fn private(text: impl Into<String>) -> CreateInteractionResponse {
    CreateInteractionResponse::Message(
        CreateInteractionResponseMessage::new()
            .content(text)
            .ephemeral(true),
    )
}

/// The pressed message itself changes: its buttons go.
fn replace(text: impl Into<String>) -> CreateInteractionResponse {
    CreateInteractionResponse::UpdateMessage(
        CreateInteractionResponseMessage::new()
            .content(text)
            .components(Vec::new()),
    )
}

pub async fn handle_press(state: Arc<BotState>, http: Arc<Http>, press: ComponentInteraction) {
    if let Some(response) = super::model_menu::answer_choice(&state, &press).await {
        if let Err(err) = press.create_response(&http, response).await {
            tracing::warn!(error = %err, "cannot answer a model choice");
        }
        return;
    }
    let Some(button) = Button::parse(&press.data.custom_id) else {
        return;
    };
    if !matches!(press.data.kind, ComponentInteractionDataKind::Button) {
        return;
    }
    let response = if button.owner().is_some_and(|owner| press.user.id != owner) {
        private("This button belongs to someone else; only they can use it.")
    } else {
        answer(&state, &press, button).await
    };
    if let Err(err) = press.create_response(&http, response).await {
        tracing::warn!(error = %err, "cannot answer a button press");
    }
}

async fn answer(
    state: &BotState,
    press: &ComponentInteraction,
    button: Button,
) -> CreateInteractionResponse {
    let app = &state.app;
    let user = button.owner().unwrap_or(press.user.id).to_string();
    match button {
        Button::Code { turn_id } => code_of_turn(state, &turn_id).await,
        Button::Stop { .. } => {
            // Only the work this status message belongs to: an old message's button must
            // not stop a newer run.
            let current = state
                .status_of(&user)
                .is_some_and(|status| status.message_id() == Some(press.message.id));
            if current && state.cancel_user(&user) {
                private(super::commands::CANCELLED)
            } else {
                private("This run has already ended.")
            }
        }
        Button::ConfirmDelete { file_id, .. } => match app.delete_file(&user, &file_id).await {
            Ok(record) => replace(format!(
                "🗑️ Deleted `{}` (`{}`).",
                record.filename, record.file_id
            )),
            Err(err) => replace(format!("Could not delete `{file_id}`: {err}")),
        },
        Button::CancelDelete { file_id, .. } => replace(format!("Kept `{file_id}`.")),
    }
}

/// The code a turn ran, privately; as a `.py` file when it does not fit in a message.
async fn code_of_turn(state: &BotState, turn_id: &str) -> CreateInteractionResponse {
    let code = match state.app.turn_code(turn_id).await {
        Ok(Some(code)) => code,
        Ok(None) => return private("The code of this answer is no longer kept."),
        Err(err) => {
            tracing::warn!(error = %err, "cannot read a turn's code");
            return private(format!(
                "Could not read the code: {}.",
                super::reply::failure_reason(&err)
            ));
        }
    };
    let text = state.app.redact(&crate::render::code_section(&code.runs));
    if text.chars().count() <= super::reply::MAX_MESSAGE_CHARS {
        return private(text);
    }
    let file = state.app.redact(&crate::render::code_file(&code.runs));
    CreateInteractionResponse::Message(
        CreateInteractionResponseMessage::new()
            .content(format!(
                "The code of {} runs, as a file (too long for a message).",
                code.runs.len()
            ))
            .add_file(CreateAttachment::bytes(file.into_bytes(), "code.py"))
            .ephemeral(true),
    )
}
