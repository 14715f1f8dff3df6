//! Pure: an uploaded file's name made safe to display and store (never used as a path).

const MAX_NAME_BYTES: usize = 200;

/// Keeps the last path component, drops control and reserved characters, trims dots and
/// spaces at the ends, and shortens long names keeping their extension.
pub fn sanitize_filename(raw: &str) -> String {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = last
        .chars()
        // Controls, bidi overrides and isolates (a name that reads backwards), and line
        // separators never reach a display.
        .filter(|c| !c.is_control() && !is_display_trick(*c))
        .map(|c| match c {
            '<' | '>' | ':' | '"' | '|' | '?' | '*' | '`' => '_',
            c => c,
        })
        .collect();
    let trimmed = cleaned.trim_matches(|c: char| c == '.' || c.is_whitespace());
    let name = if trimmed.is_empty() { "file" } else { trimmed };
    shorten(name)
}

fn is_display_trick(c: char) -> bool {
    matches!(
        c,
        '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}'
    )
}

fn shorten(name: &str) -> String {
    if name.len() <= MAX_NAME_BYTES {
        return name.to_string();
    }
    let (stem, ext) = match name.rfind('.') {
        Some(dot) if name.len() - dot <= 16 => (&name[..dot], &name[dot..]),
        _ => (name, ""),
    };
    let mut cut = MAX_NAME_BYTES - ext.len();
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{}", &stem[..cut], ext)
}

/// Where models look for a user's files (ChatGPT's interpreter keeps them there).
pub const DATA_DIR_IN_RUN: &str = "/mnt/data";

/// Pure: each file's name under `/mnt/data` in a run, in the order given: its sanitized
/// name, or, where two files would share one, `stem-<file_id>.ext` for each of them, so a
/// name never depends on the order or on which of the twins came first.
pub fn data_names(files: &[(&str, &str)]) -> Vec<String> {
    let plain: Vec<String> = files
        .iter()
        .map(|(_, filename)| sanitize_filename(filename))
        .collect();
    plain
        .iter()
        .zip(files)
        .map(|(name, (file_id, _))| {
            if plain.iter().filter(|other| *other == name).count() == 1 {
                return name.clone();
            }
            match name.rfind('.') {
                Some(dot) if dot > 0 => format!("{}-{file_id}{}", &name[..dot], &name[dot..]),
                _ => format!("{name}-{file_id}"),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_names_are_plain_unless_two_files_share_one() {
        let names = data_names(&[
            ("id1", "sales.csv"),
            ("id2", "../sales.csv"),
            ("id3", "notes"),
            ("id4", "notes"),
            ("id5", "report.xlsx"),
        ]);
        assert_eq!(
            names,
            [
                "sales-id1.csv",
                "sales-id2.csv",
                "notes-id3",
                "notes-id4",
                "report.xlsx"
            ]
        );
        let reversed = data_names(&[("id2", "sales.csv"), ("id1", "sales.csv")]);
        assert_eq!(reversed, ["sales-id2.csv", "sales-id1.csv"]);
    }

    #[test]
    fn hostile_names_become_plain_names() {
        assert_eq!(sanitize_filename("data.csv"), "data.csv");
        assert_eq!(sanitize_filename("../../etc/passwd"), "passwd");
        assert_eq!(
            sanitize_filename("C:\\Users\\x\\report.xlsx"),
            "report.xlsx"
        );
        assert_eq!(sanitize_filename("/abs/path/a.txt"), "a.txt");
        assert_eq!(sanitize_filename("new\nline\u{0}.txt"), "newline.txt");
        assert_eq!(sanitize_filename(".."), "file");
        assert_eq!(sanitize_filename(""), "file");
        assert_eq!(sanitize_filename("..."), "file");
        assert_eq!(sanitize_filename(".hidden"), "hidden");
        assert_eq!(sanitize_filename("a<b>:c?.txt"), "a_b__c_.txt");
        assert_eq!(sanitize_filename("ünïcødé 数据.csv"), "ünïcødé 数据.csv");
    }

    #[test]
    fn long_names_keep_their_extension() {
        let long = format!("{}.parquet", "é".repeat(300));
        let short = sanitize_filename(&long);
        assert!(short.len() <= MAX_NAME_BYTES);
        assert!(short.ends_with(".parquet"));
    }

    #[test]
    fn bidi_controls_and_line_separators_are_dropped() {
        assert_eq!(
            sanitize_filename("invoice\u{202E}fdp.exe"),
            "invoicefdp.exe"
        );
        assert_eq!(
            sanitize_filename("a\u{2066}b\u{2069}c\u{2028}d\u{2029}e.txt"),
            "abcde.txt"
        );
    }
}
