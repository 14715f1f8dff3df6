//! Pictures in a model request: what each referenced picture becomes (an image part of
//! bytes the store holds, or a sentence saying why not), chosen newest first within the
//! per-request cap. The bytes come from a `PictureSource`; everything here is pure.

use std::collections::{HashMap, HashSet};
use std::future::Future;

use super::history::{ChatMessage, ImageKind, ImageRef, ImageTokens};

/// What one picture becomes in a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shown {
    /// An image part: a base64 data URL (never a Discord CDN link: those expire, and a
    /// local model server cannot reach them) and its tokens.
    Part { data_url: String, tokens: u64 },
    /// Text in place of the picture.
    Note(String),
}

pub type Pictures = HashMap<ImageRef, Shown>;

/// Finds the pictures a request refers to. `sees` false: the model gets no picture, only
/// the sentence saying where it is.
pub trait PictureSource: Send + Sync {
    fn resolve(&self, images: &[ImageRef], sees: bool) -> impl Future<Output = Pictures> + Send;
}

/// Every distinct picture the messages refer to, newest first.
pub fn referenced(messages: &[ChatMessage]) -> Vec<ImageRef> {
    let mut seen = HashSet::new();
    messages
        .iter()
        .rev()
        .flat_map(|m| m.images().iter().rev())
        .filter(|image| seen.insert((*image).clone()))
        .cloned()
        .collect()
}

/// At most `max` image parts, newest first; older parts become a sentence naming them.
pub fn within_cap(messages: &[ChatMessage], mut pictures: Pictures, max: usize) -> Pictures {
    let mut parts = 0;
    for image in referenced(messages) {
        if let Some(shown @ Shown::Part { .. }) = pictures.get_mut(&image) {
            parts += 1;
            if parts > max {
                *shown = Shown::Note(format!(
                    "[image {} (file id {}) not shown: at most {max} pictures per request; load_file('{}') reads it in code]",
                    image.filename, image.file_id, image.file_id
                ));
            }
        }
    }
    pictures
}

/// Tokens of the parts a request carries.
pub fn tokens_of(pictures: &Pictures) -> ImageTokens {
    pictures
        .iter()
        .filter_map(|(image, shown)| match shown {
            Shown::Part { tokens, .. } => Some((image.clone(), *tokens)),
            Shown::Note(_) => None,
        })
        .collect()
}

/// Every picture as its sentence: for a request sent again without image parts.
pub fn as_notes(pictures: &Pictures, why: &str) -> Pictures {
    pictures
        .iter()
        .map(|(image, shown)| {
            let shown = match shown {
                Shown::Part { .. } => Shown::Note(format!(
                    "[image {} (file id {}) not shown: {why}; load_file('{}') reads it in code]",
                    image.filename, image.file_id, image.file_id
                )),
                note => note.clone(),
            };
            (image.clone(), shown)
        })
        .collect()
}

/// The message that shows the model what a run drew: at most `max` pictures, the rest
/// named. None when the run drew nothing.
pub fn figures_message(run_id: &str, figures: Vec<ImageRef>, max: usize) -> Option<ChatMessage> {
    if figures.is_empty() {
        return None;
    }
    let named: Vec<String> = figures
        .iter()
        .map(|f| format!("{} (file id {})", f.filename, f.file_id))
        .collect();
    let (shown, rest) = named.split_at(max.min(named.len()));
    let mut content = format!(
        "[Pictures produced by run {run_id}, for you to check before answering: {}]",
        shown.join(", ")
    );
    if !rest.is_empty() {
        content.push_str(&format!(
            " [not shown, at most {max} per round: {}]",
            rest.join(", ")
        ));
    }
    let images = figures
        .into_iter()
        .take(max)
        .map(|f| ImageRef {
            kind: ImageKind::Figure,
            ..f
        })
        .collect();
    Some(ChatMessage::Figures { content, images })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(id: &str) -> ImageRef {
        ImageRef {
            file_id: id.into(),
            filename: format!("{id}.png"),
            kind: ImageKind::Attached,
        }
    }

    fn part() -> Shown {
        Shown::Part {
            data_url: "data:image/png;base64,AAAA".into(),
            tokens: 255,
        }
    }

    #[test]
    fn the_newest_pictures_are_shown_and_the_rest_named() {
        let messages: Vec<ChatMessage> = ["A", "B", "C"]
            .iter()
            .map(|id| ChatMessage::User {
                content: "look".into(),
                images: vec![image(id)],
            })
            .collect();
        let all: Pictures = ["A", "B", "C"]
            .iter()
            .map(|id| (image(id), part()))
            .collect();
        let capped = within_cap(&messages, all, 2);
        assert_eq!(capped[&image("C")], part());
        assert_eq!(capped[&image("B")], part());
        let Shown::Note(note) = &capped[&image("A")] else {
            panic!("the oldest is named in text");
        };
        assert!(
            note.contains("A.png") && note.contains("at most 2"),
            "{note}"
        );
        assert_eq!(tokens_of(&capped).values().sum::<u64>(), 510);
    }

    #[test]
    fn figures_beyond_the_round_cap_are_named() {
        let figures: Vec<ImageRef> = (1..=6).map(|n| image(&format!("F{n}"))).collect();
        let Some(ChatMessage::Figures { content, images }) = figures_message("r1", figures, 4)
        else {
            panic!("a run that drew gets a figures message");
        };
        assert_eq!(images.len(), 4);
        assert!(images.iter().all(|i| i.kind == ImageKind::Figure));
        assert!(content.contains("run r1") && content.contains("F6.png (file id F6)"));
        assert!(figures_message("r2", Vec::new(), 4).is_none());
    }

    #[test]
    fn a_request_sent_again_names_its_pictures() {
        let all: Pictures = [(image("A"), part())].into_iter().collect();
        let notes = as_notes(&all, "this model server refused pictures");
        assert!(matches!(&notes[&image("A")], Shown::Note(n) if n.contains("refused")));
    }
}
