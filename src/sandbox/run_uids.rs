//! A uid of its own for each run's code, so the kernel's per-user quotas (inotify
//! instances and watches, POSIX message queue bytes, keys, processes per uid) are per run,
//! not shared by every sandbox on the host. The gid stays the sandbox group, which is what
//! lets the code read its own inputs.

use std::sync::atomic::{AtomicU32, Ordering};

pub use crate::container::SANDBOX_GID;
/// Run uids are taken from `FIRST_RUN_UID..FIRST_RUN_UID + RUN_UIDS`: far above the ranges
/// distributions give accounts (1000-59999) and subordinate ids (100000 on), below 2^31.
pub const FIRST_RUN_UID: u32 = 1_900_000_000;
pub const RUN_UIDS: u32 = 1_000_000;

/// Next uid to hand out; starts at a random place so that two processes on one host (a
/// bot and a CLI run) rarely hand out the same one at the same time.
static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);

/// A uid for one container: never the same twice in a row of `RUN_UIDS` allocations of
/// this process.
pub fn next_run_uid() -> u32 {
    if NEXT.load(Ordering::Relaxed) == u32::MAX {
        // Whoever seeds first wins; the others' seeds are dropped.
        let start = rand::random_range(0..RUN_UIDS);
        let _ = NEXT.compare_exchange(u32::MAX, start, Ordering::Relaxed, Ordering::Relaxed);
    }
    FIRST_RUN_UID + NEXT.fetch_add(1, Ordering::Relaxed) % RUN_UIDS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_in_range_and_distinct() {
        let uids: Vec<u32> = (0..1000).map(|_| next_run_uid()).collect();
        assert!(
            uids.iter()
                .all(|u| (FIRST_RUN_UID..FIRST_RUN_UID + RUN_UIDS).contains(u))
        );
        let distinct: std::collections::HashSet<_> = uids.iter().collect();
        assert_eq!(distinct.len(), uids.len());
    }
}
