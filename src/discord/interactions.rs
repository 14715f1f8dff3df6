//! Presses of the bot's buttons: Stop on a status message, Confirm / Cancel of /delete. A
//! button answers only the user it belongs to; anyone else is told so, privately.

use std::sync::Arc;

use serenity::all::{
    ComponentInteraction, CreateInteractionResponse, CreateInteractionResponseMessage, Http,
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
    let Some(button) = Button::parse(&press.data.custom_id) else {
        return;
    };
    let response = if press.user.id != button.owner() {
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
    let user = button.owner().to_string();
    match button {
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
