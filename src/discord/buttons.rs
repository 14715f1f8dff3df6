//! Pure: the bot's buttons and their custom ids. A press comes back only with the custom id
//! (and who pressed it), so the id carries what the press needs: whose button it is and,
//! for /delete, which file; for Code, which turn (anyone who sees the reply may press it).

use serenity::all::UserId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Button {
    /// Cancels the owner's running work (like /stop).
    Stop { owner: UserId },
    /// Deletes the owner's file for good.
    ConfirmDelete { owner: UserId, file_id: String },
    /// Keeps the file.
    CancelDelete { owner: UserId, file_id: String },
    /// Shows the code a turn ran, privately to whoever pressed.
    Code { turn_id: String },
}

const STOP: &str = "codebox-stop";
const CONFIRM_DELETE: &str = "codebox-delete";
const CANCEL_DELETE: &str = "codebox-keep";
const CODE: &str = "codebox-code";

impl Button {
    pub fn custom_id(&self) -> String {
        match self {
            Button::Stop { owner } => format!("{STOP}:{owner}"),
            Button::ConfirmDelete { owner, file_id } => {
                format!("{CONFIRM_DELETE}:{owner}:{file_id}")
            }
            Button::CancelDelete { owner, file_id } => format!("{CANCEL_DELETE}:{owner}:{file_id}"),
            Button::Code { turn_id } => format!("{CODE}:{turn_id}"),
        }
    }

    /// The button a custom id names; None for anything else (another bot's, a forgery).
    pub fn parse(custom_id: &str) -> Option<Button> {
        let mut parts = custom_id.split(':');
        let kind = parts.next()?;
        if kind == CODE {
            let turn_id = parts.next()?.to_string();
            return (parts.next().is_none() && crate::store::ids::is_valid_file_id(&turn_id))
                .then_some(Button::Code { turn_id });
        }
        let owner = UserId::new(parts.next()?.parse::<std::num::NonZeroU64>().ok()?.get());
        let file_id = parts.next().map(str::to_string);
        if parts.next().is_some() {
            return None;
        }
        let valid_file = |id: &String| crate::store::ids::is_valid_file_id(id);
        match (kind, file_id) {
            (STOP, None) => Some(Button::Stop { owner }),
            (CONFIRM_DELETE, Some(file_id)) if valid_file(&file_id) => {
                Some(Button::ConfirmDelete { owner, file_id })
            }
            (CANCEL_DELETE, Some(file_id)) if valid_file(&file_id) => {
                Some(Button::CancelDelete { owner, file_id })
            }
            _ => None,
        }
    }

    /// Whose button it is; None when anyone may press it.
    pub fn owner(&self) -> Option<UserId> {
        match self {
            Button::Stop { owner }
            | Button::ConfirmDelete { owner, .. }
            | Button::CancelDelete { owner, .. } => Some(*owner),
            Button::Code { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_button_survives_its_custom_id_within_discords_100_characters() {
        let owner = UserId::new(u64::MAX);
        for button in [
            Button::Stop { owner },
            Button::ConfirmDelete {
                owner,
                file_id: crate::store::ids::new_file_id(),
            },
            Button::CancelDelete {
                owner,
                file_id: crate::store::ids::new_file_id(),
            },
            Button::Code {
                turn_id: crate::store::ids::new_file_id(),
            },
        ] {
            let id = button.custom_id();
            assert!(id.len() <= 100, "{id}");
            assert_eq!(Button::parse(&id), Some(button));
        }
    }

    #[test]
    fn anything_else_is_no_button_of_ours() {
        for id in [
            "",
            "codebox-stop",
            "codebox-stop:0",
            "codebox-stop:abc",
            "codebox-stop:1:extra",
            "codebox-delete:1",
            "codebox-delete:1:../x",
            "codebox-delete:1:a:b",
            "other:1",
            "codebox-code",
            "codebox-code:short",
            "codebox-code:AAAAAAAAAAAAAAAA:1",
        ] {
            assert_eq!(Button::parse(id), None, "{id}");
        }
    }
}
