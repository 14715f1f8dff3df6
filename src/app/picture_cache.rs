//! Pictures already made ready for the model, by file id and size: a stored file never
//! changes, so an entry is never stale (whether the file still lives is asked of the store
//! each time). Bounded by the bytes of downscaled copies it holds; the oldest go first.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// What the sandbox made of a picture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preparation {
    /// Measured (and, when it was too large, downscaled): `data` is the downscaled copy in
    /// base64; None means the stored bytes are sent as they are.
    Ready {
        width: u32,
        height: u32,
        mime: String,
        data: Option<Arc<str>>,
    },
    /// Not shown as a picture, and why (not an image, too many pixels to decode).
    Refused { why: String },
}

/// What an entry costs besides its text: its key and record (a run's measured figures
/// carry no data, and would otherwise fill the cache for free).
const ENTRY_BYTES: usize = 256;

impl Preparation {
    fn bytes(&self) -> usize {
        ENTRY_BYTES
            + match self {
                Preparation::Ready { data, .. } => data.as_ref().map_or(0, |d| d.len()),
                Preparation::Refused { why } => why.len(),
            }
    }
}

/// (file id, longest side allowed).
pub type PictureKey = (String, u32);

pub struct PictureCache {
    inner: Mutex<Inner>,
    max_bytes: usize,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<PictureKey, Arc<Preparation>>,
    order: VecDeque<PictureKey>,
    bytes: usize,
}

impl PictureCache {
    pub fn new(max_bytes: usize) -> PictureCache {
        PictureCache {
            inner: Mutex::new(Inner::default()),
            max_bytes,
        }
    }

    pub fn get(&self, key: &PictureKey) -> Option<Arc<Preparation>> {
        self.inner.lock().ok()?.entries.get(key).cloned()
    }

    pub fn put(&self, key: PictureKey, preparation: Preparation) -> Arc<Preparation> {
        let preparation = Arc::new(preparation);
        let size = preparation.bytes();
        // A copy larger than the whole cache is used once, not kept.
        if size > self.max_bytes {
            return preparation;
        }
        let Ok(mut inner) = self.inner.lock() else {
            return preparation;
        };
        if let Some(old) = inner.entries.insert(key.clone(), preparation.clone()) {
            inner.bytes -= old.bytes();
            inner.order.retain(|k| k != &key);
        }
        inner.order.push_back(key);
        inner.bytes += size;
        while inner.bytes > self.max_bytes {
            let Some(oldest) = inner.order.pop_front() else {
                break;
            };
            if let Some(old) = inner.entries.remove(&oldest) {
                inner.bytes -= old.bytes();
            }
        }
        preparation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(data: &str) -> Preparation {
        Preparation::Ready {
            width: 10,
            height: 10,
            mime: "image/png".into(),
            data: Some(Arc::from(data)),
        }
    }

    #[test]
    fn the_oldest_copies_leave_first_and_the_bound_holds() {
        let cache = PictureCache::new(2 * ENTRY_BYTES + 10);
        cache.put(("A".into(), 1024), ready("aaaa"));
        cache.put(("B".into(), 1024), ready("bbbb"));
        cache.put(("C".into(), 1024), ready("cccc"));
        assert!(cache.get(&("A".into(), 1024)).is_none(), "A made room");
        assert!(cache.get(&("B".into(), 1024)).is_some());
        assert!(cache.get(&("C".into(), 1024)).is_some());
        assert!(cache.get(&("C".into(), 2048)).is_none(), "sizes are apart");
        let huge = cache.put(("D".into(), 1024), ready(&"d".repeat(2 * ENTRY_BYTES)));
        assert_eq!(*huge, ready(&"d".repeat(2 * ENTRY_BYTES)), "used once");
        assert!(cache.get(&("D".into(), 1024)).is_none(), "not kept");
        cache.put(("B".into(), 1024), ready("b"));
        assert_eq!(*cache.get(&("B".into(), 1024)).unwrap(), ready("b"));
    }

    #[test]
    fn entries_without_data_still_count() {
        let cache = PictureCache::new(3 * ENTRY_BYTES);
        let measured = || Preparation::Ready {
            width: 10,
            height: 10,
            mime: "image/png".into(),
            data: None,
        };
        for id in 0..10 {
            cache.put((id.to_string(), 1024), measured());
        }
        let kept = (0..10)
            .filter(|id| cache.get(&(id.to_string(), 1024)).is_some())
            .count();
        assert_eq!(kept, 3, "bounded by the entries themselves");
    }
}
