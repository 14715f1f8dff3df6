//! Pure: which cache entries to remove to get under the size limit, least recently used
//! first, never one a running execution is using; and whether a new installation fits at
//! all.

use std::collections::HashSet;
use std::time::SystemTime;

#[derive(Debug, Clone, PartialEq)]
pub struct CacheEntry {
    pub distribution: String,
    pub bytes: u64,
    pub last_used: SystemTime,
}

pub fn evictions(entries: &[CacheEntry], max_bytes: u64, in_use: &HashSet<String>) -> Vec<String> {
    let mut total: u64 = entries.iter().map(|e| e.bytes).sum();
    let mut oldest_first: Vec<&CacheEntry> = entries.iter().collect();
    oldest_first.sort_by_key(|e| e.last_used);
    let mut evicted = Vec::new();
    for entry in oldest_first {
        if total <= max_bytes {
            break;
        }
        if in_use.contains(&entry.distribution) {
            continue;
        }
        total = total.saturating_sub(entry.bytes);
        evicted.push(entry.distribution.clone());
    }
    evicted
}

/// Bytes of the entries running executions are using: no eviction can free them.
pub fn pinned_bytes(entries: &[CacheEntry], in_use: &HashSet<String>) -> u64 {
    entries
        .iter()
        .filter(|e| in_use.contains(&e.distribution))
        .map(|e| e.bytes)
        .sum()
}

/// The evictions that make room for `new_bytes` within `max_bytes`, or None when even
/// evicting everything not in use would not.
pub fn admission(
    entries: &[CacheEntry],
    new_bytes: u64,
    max_bytes: u64,
    in_use: &HashSet<String>,
) -> Option<Vec<String>> {
    let room = max_bytes.checked_sub(new_bytes)?;
    if pinned_bytes(entries, in_use) > room {
        return None;
    }
    Some(evictions(entries, room, in_use))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn entry(name: &str, bytes: u64, age_s: u64) -> CacheEntry {
        CacheEntry {
            distribution: name.to_string(),
            bytes,
            last_used: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 - age_s),
        }
    }

    #[test]
    fn evicts_least_recently_used_until_under_the_limit() {
        let entries = [
            entry("new", 40, 1),
            entry("old", 40, 100),
            entry("mid", 40, 50),
        ];
        assert_eq!(evictions(&entries, 80, &HashSet::new()), vec!["old"]);
        assert_eq!(evictions(&entries, 40, &HashSet::new()), vec!["old", "mid"]);
        assert!(evictions(&entries, 120, &HashSet::new()).is_empty());
    }

    #[test]
    fn entries_in_use_are_kept_even_when_oldest() {
        let entries = [
            entry("new", 40, 1),
            entry("old", 40, 100),
            entry("mid", 40, 50),
        ];
        let in_use = HashSet::from(["old".to_string()]);
        assert_eq!(evictions(&entries, 80, &in_use), vec!["mid"]);
    }

    #[test]
    fn zero_limit_empties_everything_not_in_use() {
        let entries = [entry("a", 1, 1), entry("b", 1, 2)];
        assert_eq!(evictions(&entries, 0, &HashSet::new()), vec!["b", "a"]);
    }

    #[test]
    fn a_new_installation_is_admitted_by_evicting_the_oldest_first() {
        let entries = [entry("new", 40, 1), entry("old", 40, 100)];
        let none = HashSet::new();
        assert_eq!(
            admission(&entries, 20, 100, &none),
            Some(vec![]),
            "fits as it is"
        );
        assert_eq!(
            admission(&entries, 21, 100, &none),
            Some(vec!["old".into()])
        );
        assert_eq!(
            admission(&entries, 100, 100, &none),
            Some(vec!["old".into(), "new".into()])
        );
    }

    #[test]
    fn an_installation_that_cannot_fit_beside_the_entries_in_use_is_refused() {
        let entries = [entry("new", 40, 1), entry("old", 40, 100)];
        let in_use = HashSet::from(["old".to_string(), "new".to_string()]);
        assert_eq!(pinned_bytes(&entries, &in_use), 80);
        assert_eq!(admission(&entries, 21, 100, &in_use), None);
        assert_eq!(admission(&entries, 20, 100, &in_use), Some(vec![]));
        assert_eq!(
            admission(&entries, 101, 100, &HashSet::new()),
            None,
            "larger than the cache"
        );
    }
}
