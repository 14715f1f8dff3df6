//! Pure: a reply shaped to Discord's limits. Text is split at 2000 characters on line
//! boundaries (or sent as a .txt file when it would take too many messages); at most 10
//! attachments per message; files over the upload limit are mentioned by id instead.

pub const MAX_MESSAGE_CHARS: usize = 2000;
pub const MAX_ATTACHMENTS: usize = 10;
/// Beyond this many messages, long text goes as an attachment instead.
pub const MAX_TEXT_MESSAGES: usize = 4;

/// Mentions are disabled on everything the bot sends: text from code, exceptions and file
/// names is untrusted and must never ping `@everyone`, a role or a user.
/// What a member is told when a request failed on the bot's side: storage trouble in its
/// own words (it heals by itself), anything else as one plain sentence.
pub fn failure_text(err: &crate::app::AppError) -> String {
    match err.storage_trouble() {
        Some(_) => format!("⚠️ Sorry: {}.", failure_reason(err)),
        None => "❌ Something went wrong on the bot's side; please try again shortly.".to_string(),
    }
}

/// Why, as a clause: storage trouble in its own words, anything else without the
/// internals (those go to the log).
pub fn failure_reason(err: &crate::app::AppError) -> String {
    err.reason()
}

pub fn no_mentions() -> serenity::all::CreateAllowedMentions {
    serenity::all::CreateAllowedMentions::new()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingFile {
    pub file_id: String,
    pub filename: String,
    pub size: u64,
    pub path: std::path::PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attachment {
    File(OutgoingFile),
    /// Long text sent as a file.
    Text {
        filename: String,
        content: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OutgoingMessage {
    pub content: String,
    pub attachments: Vec<Attachment>,
}

/// Splits on line boundaries; a single line longer than `max` is cut on characters.
pub fn split_text(text: &str, max: usize) -> Vec<String> {
    let mut chunks = Vec::new();
    let mut current = String::new();
    for line in text.split_inclusive('\n') {
        if current.chars().count() + line.chars().count() > max && !current.is_empty() {
            chunks.push(std::mem::take(&mut current));
        }
        if line.chars().count() > max {
            let chars: Vec<char> = line.chars().collect();
            for piece in chars.chunks(max) {
                let piece: String = piece.iter().collect();
                if current.chars().count() + piece.chars().count() > max && !current.is_empty() {
                    chunks.push(std::mem::take(&mut current));
                }
                current.push_str(&piece);
            }
        } else {
            current.push_str(line);
        }
    }
    if !current.trim().is_empty() {
        chunks.push(current);
    }
    chunks
        .into_iter()
        .map(|c| c.trim_end_matches('\n').to_string())
        .filter(|c| !c.is_empty())
        .collect()
}

/// Room kept in each message for closing and reopening a code fence.
const FENCE_RESERVE: usize = 24;

/// Splits like `split_text`, and keeps code fences balanced: a chunk that ends inside a
/// fence closes it and the next one reopens it (same language), so text from the code never
/// renders as live markdown, links or mentions outside its block.
pub fn split_keeping_fences(text: &str, max: usize) -> Vec<String> {
    if !text.contains("```") {
        return split_text(text, max);
    }
    let mut open: Option<String> = None;
    let mut out = Vec::new();
    for chunk in split_text(text, max.saturating_sub(FENCE_RESERVE).max(1)) {
        let mut message = String::new();
        if let Some(opener) = &open {
            message.push_str(opener);
            message.push('\n');
        }
        for line in chunk.lines() {
            if line.trim_start().starts_with("```") {
                open = match open {
                    Some(_) => None,
                    None => {
                        let opener = line.trim();
                        // A long or odd info string is not worth repeating.
                        let simple = opener.len() <= 16
                            && opener[3..].chars().all(|c| c.is_ascii_alphanumeric());
                        Some(if simple {
                            opener.to_string()
                        } else {
                            "```".to_string()
                        })
                    }
                };
            }
        }
        message.push_str(&chunk);
        if open.is_some() {
            message.push_str("\n```");
        }
        out.push(message);
    }
    out
}

/// The messages that carry `text` and `files`, within Discord's limits.
pub fn plan(text: &str, files: &[OutgoingFile], max_upload_bytes: u64) -> Vec<OutgoingMessage> {
    let mut messages: Vec<OutgoingMessage> = Vec::new();
    let mut chunks = split_keeping_fences(text, MAX_MESSAGE_CHARS);
    let mut leading: Vec<Attachment> = Vec::new();
    if chunks.len() > MAX_TEXT_MESSAGES {
        let preview = split_keeping_fences(text, MAX_MESSAGE_CHARS - 100)
            .into_iter()
            .next()
            .unwrap_or_default();
        chunks = vec![format!(
            "{preview}\n\n(The full answer is attached as answer.txt.)"
        )];
        leading.push(Attachment::Text {
            filename: "answer.txt".into(),
            content: text.to_string(),
        });
    }
    let (uploadable, too_big): (Vec<&OutgoingFile>, Vec<&OutgoingFile>) =
        files.iter().partition(|f| f.size <= max_upload_bytes);
    if !too_big.is_empty() {
        let mut note = String::from("Too large to upload here, kept in your files:");
        for f in &too_big {
            note.push_str(&format!(
                "\n- {} (id `{}`, {} bytes)",
                f.filename, f.file_id, f.size
            ));
        }
        chunks.extend(split_text(&note, MAX_MESSAGE_CHARS));
    }
    for chunk in chunks {
        messages.push(OutgoingMessage {
            content: chunk,
            attachments: Vec::new(),
        });
    }
    let mut attachments: Vec<Attachment> = leading;
    attachments.extend(uploadable.into_iter().cloned().map(Attachment::File));
    let mut groups = attachments
        .chunks(MAX_ATTACHMENTS)
        .map(<[Attachment]>::to_vec);
    // Files ride on the last text message, further groups on messages of their own.
    if let Some(first) = groups.next() {
        match messages.last_mut() {
            Some(last) => last.attachments = first,
            None => messages.push(OutgoingMessage {
                content: String::new(),
                attachments: first,
            }),
        }
    }
    for group in groups {
        messages.push(OutgoingMessage {
            content: String::new(),
            attachments: group,
        });
    }
    if messages.is_empty() {
        messages.push(OutgoingMessage {
            content: "(no answer)".into(),
            attachments: Vec::new(),
        });
    }
    messages
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(n: usize, size: u64) -> OutgoingFile {
        OutgoingFile {
            file_id: format!("ID{n:014}"),
            filename: format!("f{n}.png"),
            size,
            path: format!("/x/f{n}.png").into(),
        }
    }

    #[test]
    fn five_thousand_characters_split_on_lines() {
        let text: String = (0..100)
            .map(|i| format!("line {i:03} {}\n", "x".repeat(45)))
            .collect();
        assert!(text.chars().count() > 5000);
        let chunks = split_text(&text, MAX_MESSAGE_CHARS);
        assert_eq!(chunks.len(), 3);
        for chunk in &chunks {
            assert!(chunk.chars().count() <= MAX_MESSAGE_CHARS);
            assert!(chunk.starts_with("line "), "chunks start at a line");
        }
        assert_eq!(chunks.join("\n") + "\n", text, "nothing lost");
    }

    #[test]
    fn a_giant_line_is_cut_on_characters() {
        let text = "é".repeat(4500);
        let chunks = split_text(&text, MAX_MESSAGE_CHARS);
        assert_eq!(
            chunks.iter().map(|c| c.chars().count()).collect::<Vec<_>>(),
            [2000, 2000, 500]
        );
    }

    #[test]
    fn very_long_text_becomes_an_attachment() {
        let text = "word\n".repeat(3000);
        let plan = plan(&text, &[], 1 << 20);
        assert_eq!(plan.len(), 1);
        assert!(plan[0].content.contains("answer.txt"));
        assert!(
            matches!(&plan[0].attachments[0], Attachment::Text { content, .. } if content == &text)
        );
    }

    #[test]
    fn attachments_go_ten_per_message_and_big_ones_by_id() {
        let mut files: Vec<OutgoingFile> = (0..12).map(|n| file(n, 10)).collect();
        files.push(file(99, 50 << 20));
        let plan = plan("done", &files, 25 << 20);
        assert_eq!(plan.len(), 3, "{plan:?}");
        assert!(plan[0].content.starts_with("done"));
        assert_eq!(plan[1].attachments.len(), 10);
        assert_eq!(plan[2].attachments.len(), 2);
        assert!(plan[1].content.contains("ID00000000000099"));
        assert!(plan.iter().all(|m| m.attachments.len() <= MAX_ATTACHMENTS));
    }

    #[test]
    fn fences_stay_balanced_across_messages() {
        let body: String = (0..300)
            .map(|i| format!("print({i}) # @everyone\n"))
            .collect();
        let text = format!("Here:\n```python\n{body}```\nDone.");
        let chunks = split_keeping_fences(&text, MAX_MESSAGE_CHARS);
        assert!(chunks.len() > 2, "{}", chunks.len());
        for chunk in &chunks {
            assert!(chunk.chars().count() <= MAX_MESSAGE_CHARS);
            let fences = chunk
                .lines()
                .filter(|l| l.trim_start().starts_with("```"))
                .count();
            assert_eq!(fences % 2, 0, "balanced: {chunk}");
        }
        assert!(
            chunks[1].starts_with("```python\n"),
            "reopened with its language"
        );
        assert!(chunks.last().unwrap().ends_with("Done."));
    }
}
