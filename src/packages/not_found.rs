//! Names the index did not have, remembered for a short while: code that imports a module
//! no index offers tends to be run again and again (by a model retrying, by many users
//! pasting the same snippet), and each attempt would otherwise cost an installer container
//! and a round trip to the index for the same answer.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Long enough to absorb a burst of retries, short enough that a project published since
/// (or a mirror catching up) is found without a restart.
pub const REMEMBER_FOR: Duration = Duration::from_secs(10 * 60);
/// Names come from user code; the memory must stay small whatever the code imports.
const MAX_NAMES: usize = 4096;

#[derive(Debug)]
pub struct NotOnIndex {
    ttl: Duration,
    /// distribution -> (when it stops being remembered, pip's words)
    names: HashMap<String, (Instant, String)>,
}

impl NotOnIndex {
    pub fn new(ttl: Duration) -> NotOnIndex {
        NotOnIndex {
            ttl,
            names: HashMap::new(),
        }
    }

    pub fn remember(&mut self, distribution: &str, log: &str, now: Instant) {
        self.names.retain(|_, (until, _)| *until > now);
        if self.names.len() >= MAX_NAMES {
            // Forgetting the oldest only costs one more installer run for that name.
            if let Some(oldest) = self
                .names
                .iter()
                .min_by_key(|(_, (until, _))| *until)
                .map(|(name, _)| name.clone())
            {
                self.names.remove(&oldest);
            }
        }
        self.names
            .insert(distribution.to_string(), (now + self.ttl, log.to_string()));
    }

    /// pip's words from when the index last lacked `distribution`, if that is recent.
    pub fn recall(&self, distribution: &str, now: Instant) -> Option<&str> {
        self.names
            .get(distribution)
            .filter(|(until, _)| *until > now)
            .map(|(_, log)| log.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_name_is_remembered_until_its_time_is_up() {
        let start = Instant::now();
        let mut memory = NotOnIndex::new(Duration::from_secs(600));
        memory.remember(
            "foo-bar",
            "No matching distribution found for foo-bar",
            start,
        );
        assert_eq!(
            memory.recall("foo-bar", start + Duration::from_secs(599)),
            Some("No matching distribution found for foo-bar")
        );
        assert_eq!(
            memory.recall("foo-bar", start + Duration::from_secs(600)),
            None
        );
        assert_eq!(memory.recall("other", start), None);
    }

    #[test]
    fn the_memory_stays_bounded_forgetting_the_oldest() {
        let start = Instant::now();
        let mut memory = NotOnIndex::new(Duration::from_secs(600));
        for i in 0..MAX_NAMES + 10 {
            memory.remember(
                &format!("n{i}"),
                "",
                start + Duration::from_millis(i as u64),
            );
        }
        assert!(memory.names.len() <= MAX_NAMES);
        let last = start + Duration::from_millis((MAX_NAMES + 10) as u64);
        assert!(memory.recall("n0", last).is_none());
        assert!(
            memory
                .recall(&format!("n{}", MAX_NAMES + 9), last)
                .is_some()
        );
    }

    #[test]
    fn expired_names_are_dropped_when_another_is_remembered() {
        let start = Instant::now();
        let mut memory = NotOnIndex::new(Duration::from_secs(1));
        memory.remember("a", "", start);
        memory.remember("b", "", start + Duration::from_secs(2));
        assert_eq!(memory.names.len(), 1);
    }
}
