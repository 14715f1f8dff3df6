//! Warm containers held for one conversation each, their runner already told to restore
//! that conversation's state: the restore happens while the model is still deciding what
//! to run, and the conversation's next run starts with its variables in place. Pure
//! bookkeeping of which container holds which state; the pool owns the containers' lives.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

/// Which snapshot a held container restored: the same file (device and inode, size and
/// modification time) is the same state. The store writes every new state as a new file,
/// and the run's staging hard-links it, so a changed state never matches an old one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateIdentity {
    device: u64,
    inode: u64,
    len: u64,
    modified: Option<SystemTime>,
}

impl StateIdentity {
    /// The file at `path` itself (a symlink is never followed: none is ever staged).
    pub fn of(path: &Path) -> std::io::Result<StateIdentity> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::symlink_metadata(path)?;
        Ok(StateIdentity {
            device: meta.dev(),
            inode: meta.ino(),
            len: meta.len(),
            modified: meta.modified().ok(),
        })
    }
}

struct Held<T> {
    item: T,
    state: StateIdentity,
    since: Instant,
}

/// At most `most` items, one per conversation, each with the state it restored; and the
/// conversations for which one is being made ready (a run of the conversation that starts
/// meanwhile cancels that: the state it is given is about to be replaced).
pub struct Holds<T> {
    held: HashMap<String, Held<T>>,
    expected: HashSet<String>,
    most: usize,
}

impl<T> Holds<T> {
    pub fn new(most: usize) -> Holds<T> {
        Holds {
            held: HashMap::new(),
            expected: HashSet::new(),
            most: most.max(1),
        }
    }

    /// An item for `conversation` is being made ready.
    pub fn expect(&mut self, conversation: &str) {
        self.expected.insert(conversation.to_string());
    }

    /// No item for `conversation` will come after all.
    pub fn forget(&mut self, conversation: &str) {
        self.expected.remove(conversation);
    }

    /// Holds `item` for the `conversation` that expected it; returns what that displaced
    /// (see `hold`). `Err(item)` when a claim came in between: the item is not held.
    pub fn fulfil(
        &mut self,
        conversation: String,
        item: T,
        state: StateIdentity,
        now: Instant,
    ) -> Result<Vec<T>, T> {
        if !self.expected.remove(&conversation) {
            return Err(item);
        }
        Ok(self.hold(conversation, item, state, now))
    }

    /// Holds `item` for `conversation`; returns what that displaced: the conversation's
    /// previous item, and the longest held when more would be held than allowed.
    fn hold(
        &mut self,
        conversation: String,
        item: T,
        state: StateIdentity,
        now: Instant,
    ) -> Vec<T> {
        let mut displaced = Vec::new();
        if let Some(previous) = self.held.remove(&conversation) {
            displaced.push(previous.item);
        }
        while self.held.len() >= self.most {
            let Some(oldest) = self
                .held
                .iter()
                .min_by_key(|(_, held)| held.since)
                .map(|(key, _)| key.clone())
            else {
                break;
            };
            if let Some(held) = self.held.remove(&oldest) {
                displaced.push(held.item);
            }
        }
        self.held.insert(
            conversation,
            Held {
                item,
                state,
                since: now,
            },
        );
        displaced
    }

    /// Whether `conversation` has an item holding exactly `state`.
    pub fn holds(&self, conversation: &str, state: &StateIdentity) -> bool {
        self.held
            .get(conversation)
            .is_some_and(|held| &held.state == state)
    }

    /// Whether `conversation` has an item, whatever state it holds.
    pub fn contains(&self, conversation: &str) -> bool {
        self.held.contains_key(conversation)
    }

    /// The conversation's item and the state it holds, no longer held; an item still being
    /// made ready for it is no longer expected.
    pub fn claim(&mut self, conversation: &str) -> Option<(T, StateIdentity)> {
        self.expected.remove(conversation);
        self.held
            .remove(conversation)
            .map(|held| (held.item, held.state))
    }

    /// Items held longer than `ttl`, or that `keep` refuses, no longer held.
    pub fn release_if(
        &mut self,
        now: Instant,
        ttl: Duration,
        mut keep: impl FnMut(&mut T) -> bool,
    ) -> Vec<T> {
        let due: Vec<String> = self
            .held
            .iter_mut()
            .filter_map(|(key, held)| {
                let due = now.duration_since(held.since) >= ttl || !keep(&mut held.item);
                due.then(|| key.clone())
            })
            .collect();
        due.iter()
            .filter_map(|key| self.held.remove(key))
            .map(|held| held.item)
            .collect()
    }

    /// Everything held, no longer held.
    pub fn drain(&mut self) -> Vec<T> {
        self.held.drain().map(|(_, held)| held.item).collect()
    }

    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(inode: u64) -> StateIdentity {
        StateIdentity {
            device: 1,
            inode,
            len: 10,
            modified: None,
        }
    }

    #[test]
    fn an_item_claimed_or_forgotten_while_it_was_made_ready_is_not_held() {
        let t0 = Instant::now();
        let mut holds = Holds::new(2);
        holds.expect("a");
        assert_eq!(holds.claim("a"), None);
        assert_eq!(holds.fulfil("a".into(), 1, state(1), t0), Err(1));
        holds.expect("b");
        holds.forget("b");
        assert_eq!(holds.fulfil("b".into(), 2, state(2), t0), Err(2));
        assert_eq!(holds.fulfil("never".into(), 3, state(3), t0), Err(3));
        holds.expect("c");
        assert_eq!(holds.fulfil("c".into(), 4, state(4), t0), Ok(vec![]));
        assert!(holds.holds("c", &state(4)));
    }

    #[test]
    fn a_conversation_holds_one_item_and_the_longest_held_goes_first_when_full() {
        let t0 = Instant::now();
        let mut holds = Holds::new(2);
        assert!(holds.hold("a".into(), 1, state(1), t0).is_empty());
        assert_eq!(holds.hold("a".into(), 2, state(2), t0), vec![1]);
        assert!(
            holds
                .hold("b".into(), 3, state(3), t0 + Duration::from_secs(1))
                .is_empty()
        );
        assert_eq!(
            holds.hold("c".into(), 4, state(4), t0 + Duration::from_secs(2)),
            vec![2]
        );
        assert_eq!(holds.len(), 2);
        assert!(holds.holds("b", &state(3)));
        assert!(!holds.holds("b", &state(4)));
        assert!(!holds.holds("a", &state(2)));
        assert!(holds.contains("b") && !holds.contains("a"));
        assert_eq!(holds.claim("b"), Some((3, state(3))));
        assert_eq!(holds.claim("b"), None);
        assert_eq!(holds.drain(), vec![4]);
        assert!(holds.is_empty());
    }

    #[test]
    fn items_held_too_long_or_refused_are_released() {
        let t0 = Instant::now();
        let mut holds = Holds::new(5);
        holds.hold("old".into(), 1, state(1), t0);
        holds.hold("dead".into(), 2, state(2), t0 + Duration::from_secs(50));
        holds.hold("fine".into(), 3, state(3), t0 + Duration::from_secs(50));
        let mut released = holds.release_if(
            t0 + Duration::from_secs(60),
            Duration::from_secs(30),
            |item| *item != 2,
        );
        released.sort();
        assert_eq!(released, vec![1, 2]);
        assert!(holds.holds("fine", &state(3)));
    }

    #[test]
    fn the_same_file_is_the_same_state_and_a_rewritten_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snapshot");
        std::fs::write(&path, b"one").unwrap();
        let first = StateIdentity::of(&path).unwrap();
        let link = dir.path().join("linked");
        std::fs::hard_link(&path, &link).unwrap();
        assert_eq!(StateIdentity::of(&link).unwrap(), first);
        let copy = dir.path().join("copy");
        std::fs::copy(&path, &copy).unwrap();
        assert_ne!(StateIdentity::of(&copy).unwrap(), first);
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, b"two!").unwrap();
        assert_ne!(StateIdentity::of(&path).unwrap(), first);
        assert!(StateIdentity::of(&dir.path().join("missing")).is_err());
    }
}
