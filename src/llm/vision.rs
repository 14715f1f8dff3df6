//! Pure: which models see pictures, and what a picture costs in tokens.

use std::collections::BTreeMap;

use crate::config::models::longest_match;
use crate::config::{ModelEntry, VisionMode};

/// OpenAI's `detail` of an image part: `high` tiles the picture, `low` is one 512-px view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    High,
    Low,
}

impl Detail {
    pub fn as_str(self) -> &'static str {
        match self {
            Detail::High => "high",
            Detail::Low => "low",
        }
    }
}

/// Tokens of one picture, by OpenAI's published rule: detail low is 85; detail high fits
/// the picture within 2048x2048, then scales it so its shortest side is 768 (never up),
/// and counts 170 per 512-px tile plus 85.
pub fn image_tokens(width: u32, height: u32, detail: Detail) -> u64 {
    if detail == Detail::Low || width == 0 || height == 0 {
        return 85;
    }
    let (mut w, mut h) = (f64::from(width), f64::from(height));
    let longest = w.max(h);
    if longest > 2048.0 {
        let scale = 2048.0 / longest;
        w *= scale;
        h *= scale;
    }
    let shortest = w.min(h);
    if shortest > 768.0 {
        let scale = 768.0 / shortest;
        w *= scale;
        h *= scale;
    }
    let tiles = (w / 512.0).ceil() * (h / 512.0).ceil();
    170 * tiles as u64 + 85
}

/// Model names known to take pictures (the part after any `provider/`).
fn sees_by_name(model: &str) -> bool {
    let name = model
        .rsplit('/')
        .next()
        .unwrap_or(model)
        .to_ascii_lowercase();
    let prefixes = [
        "gpt-4o",
        "gpt-4.1",
        "gpt-5",
        "o1",
        "o3",
        "o4",
        "claude-",
        "gemini-",
        "llava",
        "pixtral",
        "chatgpt-4o",
    ];
    prefixes.iter().any(|p| name.starts_with(p)) || name.contains("-vl")
}

/// Whether `model` gets pictures under `mode`.
pub fn model_sees(mode: VisionMode, table: &BTreeMap<String, ModelEntry>, model: &str) -> bool {
    match mode {
        VisionMode::On => true,
        VisionMode::Off => false,
        VisionMode::Auto => longest_match(table, model, |e| e.vision.is_some())
            .and_then(|entry| entry.vision)
            .unwrap_or_else(|| sees_by_name(model)),
    }
}

/// A server's 400 that refuses picture parts, told by its own words ("image_url",
/// "image input is not supported", "does not support images").
pub fn refuses_images(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("image")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_follow_openais_published_examples() {
        // OpenAI's vision guide: 1024x1024 high is 765; 2048x4096 high is 1105; low is 85.
        assert_eq!(image_tokens(1024, 1024, Detail::High), 765);
        assert_eq!(image_tokens(2048, 4096, Detail::High), 1105);
        assert_eq!(image_tokens(4096, 8192, Detail::Low), 85);
        // Small pictures are not scaled up: 512x512 is one tile.
        assert_eq!(image_tokens(512, 512, Detail::High), 255);
        assert_eq!(image_tokens(800, 600, Detail::High), 765);
        assert_eq!(image_tokens(0, 10, Detail::High), 85);
    }

    #[test]
    fn the_table_overrides_the_name_patterns() {
        let mut table = BTreeMap::new();
        assert!(model_sees(VisionMode::Auto, &table, "gpt-4o-mini"));
        assert!(model_sees(VisionMode::Auto, &table, "Qwen2.5-VL-7B"));
        assert!(model_sees(
            VisionMode::Auto,
            &table,
            "openrouter/claude-3-5-sonnet"
        ));
        assert!(!model_sees(VisionMode::Auto, &table, "gpt-3.5-turbo"));
        assert!(!model_sees(VisionMode::Auto, &table, "qwen2.5-coder-1.5b"));
        table.insert(
            "gpt-4o".to_string(),
            ModelEntry {
                vision: Some(false),
                ..ModelEntry::default()
            },
        );
        table.insert(
            "qwen".to_string(),
            ModelEntry {
                vision: Some(true),
                ..ModelEntry::default()
            },
        );
        assert!(!model_sees(VisionMode::Auto, &table, "gpt-4o-mini"));
        assert!(model_sees(VisionMode::Auto, &table, "qwen2.5-coder-1.5b"));
        assert!(model_sees(VisionMode::On, &table, "gpt-4o-mini"));
        assert!(!model_sees(VisionMode::Off, &table, "gpt-5"));
    }

    #[test]
    fn refusals_of_images_are_told_apart() {
        assert!(refuses_images(
            "image input is not supported - hint: you may need to provide the mmproj"
        ));
        assert!(refuses_images(
            "Invalid content type. image_url is only supported by certain models."
        ));
        assert!(!refuses_images("maximum context length exceeded"));
    }
}
