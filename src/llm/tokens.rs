//! Counting prompt tokens before a request, with the encoding the model uses.

use std::sync::LazyLock;

use tiktoken_rs::CoreBPE;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    O200kBase,
    Cl100kBase,
}

/// o200k_base for the GPT-4o generation and later, cl100k_base for older models.
pub fn encoding_for(model: &str) -> Encoding {
    let m = model.to_ascii_lowercase();
    let newer = [
        "gpt-4o",
        "gpt-4.1",
        "gpt-4.5",
        "gpt-5",
        "o1",
        "o3",
        "o4",
        "chatgpt-4o",
        "gpt-oss",
    ];
    if newer.iter().any(|p| m.starts_with(p)) {
        Encoding::O200kBase
    } else {
        Encoding::Cl100kBase
    }
}

static O200K: LazyLock<Option<CoreBPE>> = LazyLock::new(|| tiktoken_rs::o200k_base().ok());
static CL100K: LazyLock<Option<CoreBPE>> = LazyLock::new(|| tiktoken_rs::cl100k_base().ok());

fn bpe(encoding: Encoding) -> Option<&'static CoreBPE> {
    match encoding {
        Encoding::O200kBase => O200K.as_ref(),
        Encoding::Cl100kBase => CL100K.as_ref(),
    }
}

/// Tokens of a text; a rough 4 characters per token if the encoder is unavailable.
pub fn count_text(encoding: Encoding, text: &str) -> usize {
    match bpe(encoding) {
        Some(bpe) => bpe.encode_with_special_tokens(text).len(),
        None => text.chars().count().div_ceil(4),
    }
}

/// Tokens of a chat prompt, following OpenAI's published accounting: 3 per message for
/// the role framing, the content, and 3 to prime the reply.
pub fn count_chat<'a>(
    encoding: Encoding,
    messages: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> usize {
    let mut total = 3;
    for (role, content) in messages {
        total += 3 + count_text(encoding, role) + count_text(encoding, content);
    }
    total
}

/// Keeps the last part of `text` that fits in `max_tokens`, cut on a character boundary.
pub fn tail_within(encoding: Encoding, text: &str, max_tokens: usize) -> (String, bool) {
    if count_text(encoding, text) <= max_tokens {
        return (text.to_string(), false);
    }
    // Binary search on the starting character for the longest tail that fits.
    let starts: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
    let (mut lo, mut hi) = (0, starts.len());
    while lo < hi {
        let mid = (lo + hi) / 2;
        if count_text(encoding, &text[starts[mid]..]) <= max_tokens {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    let start = starts.get(lo).copied().unwrap_or(text.len());
    (text[start..].to_string(), true)
}

/// Keeps the first part of `text` that fits in `max_tokens`, cut on a character boundary.
pub fn head_within(encoding: Encoding, text: &str, max_tokens: usize) -> (String, bool) {
    if count_text(encoding, text) <= max_tokens {
        return (text.to_string(), false);
    }
    // Binary search on the end character for the longest head that fits.
    let ends: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(text.len()))
        .collect();
    let (mut lo, mut hi) = (0, ends.len() - 1);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if count_text(encoding, &text[..ends[mid]]) <= max_tokens {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    (text[..ends[lo]].to_string(), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_counts() {
        // Reference counts from OpenAI's tokenizer for these encodings.
        assert_eq!(count_text(Encoding::Cl100kBase, "hello world"), 2);
        assert_eq!(count_text(Encoding::O200kBase, "hello world"), 2);
        assert_eq!(count_text(Encoding::Cl100kBase, "tiktoken is great!"), 6);
        // Token ids from OpenAI's cookbook ("How to count tokens with tiktoken").
        let cl100k = bpe(Encoding::Cl100kBase).unwrap();
        assert_eq!(
            cl100k.encode_with_special_tokens("tiktoken is great!"),
            vec![83, 1609, 5963, 374, 2294, 0]
        );
        let o200k = bpe(Encoding::O200kBase).unwrap();
        assert_eq!(
            o200k.encode_with_special_tokens("hello world"),
            vec![24912, 2375]
        );
        assert_eq!(count_text(Encoding::Cl100kBase, ""), 0);
    }

    #[test]
    fn chat_framing_is_counted() {
        let n = count_chat(Encoding::Cl100kBase, [("user", "hello world")]);
        // 3 priming + 3 framing + 1 ("user") + 2 ("hello world")
        assert_eq!(n, 9);
    }

    #[test]
    fn models_pick_their_encoding() {
        assert_eq!(encoding_for("gpt-4o-mini"), Encoding::O200kBase);
        assert_eq!(encoding_for("gpt-4.1"), Encoding::O200kBase);
        assert_eq!(encoding_for("o3-mini"), Encoding::O200kBase);
        assert_eq!(encoding_for("gpt-4-turbo"), Encoding::Cl100kBase);
        assert_eq!(encoding_for("gpt-3.5-turbo"), Encoding::Cl100kBase);
    }

    #[test]
    fn tails_fit_their_budget() {
        let text = "line of output\n".repeat(500);
        let (tail, cut) = tail_within(Encoding::O200kBase, &text, 50);
        assert!(cut);
        assert!(count_text(Encoding::O200kBase, &tail) <= 50);
        assert!(tail.len() > 100);
        assert!(text.ends_with(&tail));
        let (same, cut) = tail_within(Encoding::O200kBase, "short", 50);
        assert_eq!((same.as_str(), cut), ("short", false));
        let (head, cut) = head_within(Encoding::O200kBase, &text, 50);
        assert!(cut);
        assert!(count_text(Encoding::O200kBase, &head) <= 50);
        assert!(
            count_text(Encoding::O200kBase, &head) >= 45,
            "as long as fits"
        );
        assert!(text.starts_with(&head));
        assert_eq!(
            head_within(Encoding::O200kBase, "short", 50),
            ("short".into(), false)
        );
    }
}
