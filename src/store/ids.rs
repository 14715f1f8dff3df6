//! File ids: short, URL-safe and unguessable: 16 characters drawn from 62 by the OS's
//! random source (about 95 bits), independent of the user and of the time.

use rand::RngExt;

pub const FILE_ID_LEN: usize = 16;
const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

pub fn new_file_id() -> String {
    let mut rng = rand::rng();
    (0..FILE_ID_LEN)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Whether text can be a file id (checked before any lookup or path use).
pub fn is_valid_file_id(text: &str) -> bool {
    text.len() == FILE_ID_LEN && text.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// User ids become directory names: Discord snowflakes and simple names only.
pub fn is_valid_user_id(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_valid_and_distinct() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| new_file_id()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|id| is_valid_file_id(id)));
    }

    #[test]
    fn invalid_ids_are_refused() {
        for bad in [
            "",
            "short",
            "../../etc/passwd",
            "aaaaaaaaaaaaaaa/",
            "aaaaaaaaaaaaaaaaa",
        ] {
            assert!(!is_valid_file_id(bad), "{bad}");
        }
        assert!(is_valid_user_id("123456789012345678"));
        assert!(is_valid_user_id("alice_01"));
        for bad in ["", "..", "a/b", "a b", &"x".repeat(65)] {
            assert!(!is_valid_user_id(bad), "{bad}");
        }
    }
}
