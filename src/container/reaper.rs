//! Removes containers that a dead codebox process left behind.
//!
//! Each container carries `codebox.owner=<host>:<pid>:<start ticks>`. Several codebox
//! processes may share one daemon (a bot, CLI runs, tests), so a start-up reap removes only
//! containers whose owner on this host is no longer alive; the start time guards against
//! pid reuse.

use std::fs;

use super::OWNER_LABEL;
use super::engine::{Containers, EngineError};

/// The owner identity of this process.
pub fn current_owner() -> String {
    let pid = std::process::id();
    format!(
        "{}:{}:{}",
        hostname(),
        pid,
        process_start_ticks(pid).unwrap_or(0)
    )
}

/// This process as a tag for host directories it creates (`<pid>-<start ticks>-<host mark>`), so a later
/// sweep can tell a dead owner's leftovers from a live run's.
pub fn owner_tag() -> String {
    let pid = std::process::id();
    format!(
        "{pid}-{}-{}",
        process_start_ticks(pid).unwrap_or(0),
        host_mark(&hostname())
    )
}

/// Eight hex digits naming a host (a container, a node): processes of other PID namespaces
/// that share a DATA_DIR (executors of a Swarm on one machine, a bot beside its executor)
/// must never judge each other's pids.
fn host_mark(host: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(host.as_bytes()))[..8].to_string()
}

/// Whether the process a tag names (`<pid>-<start ticks>...`, anything may follow) is still
/// alive on this host; None when the text does not start with a tag.
pub fn tag_owner_alive(text: &str) -> Option<bool> {
    tag_owner_alive_on(text, &host_mark(&hostname()), process_alive)
}

/// Pure: `tag_owner_alive` seen from the host marked `mine`. A tag of another host counts as
/// alive (its directories go only by age); tags from before host marks are judged here.
pub fn tag_owner_alive_on(
    text: &str,
    mine: &str,
    alive: impl Fn(u32, u64) -> bool,
) -> Option<bool> {
    let mut parts = text.splitn(3, '-');
    let pid = parts.next()?.parse::<u32>().ok()?;
    let ticks = parts.next()?.parse::<u64>().ok()?;
    let mark = parts.next().and_then(|rest| rest.split('-').next());
    if let Some(mark) = mark
        && mark.len() == 8
        && mark
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        && mark != mine
    {
        return Some(true);
    }
    Some(alive(pid, ticks))
}

fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string())
}

/// Field 22 of /proc/PID/stat: start time in clock ticks since boot.
fn process_start_ticks(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses; fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Pure decision: is a container with this owner label an orphan, seen from `host`?
pub fn is_orphan(owner: Option<&str>, host: &str, alive: impl Fn(u32, u64) -> bool) -> bool {
    let Some(owner) = owner else {
        // Labelled by codebox but without an owner: nobody will ever clean it up.
        return true;
    };
    let mut parts = owner.rsplitn(3, ':');
    let (Some(ticks), Some(pid), Some(owner_host)) = (parts.next(), parts.next(), parts.next())
    else {
        return true;
    };
    if owner_host != host {
        return false;
    }
    match (pid.parse::<u32>(), ticks.parse::<u64>()) {
        (Ok(pid), Ok(ticks)) => !alive(pid, ticks),
        _ => true,
    }
}

fn process_alive(pid: u32, ticks: u64) -> bool {
    process_start_ticks(pid) == Some(ticks)
}

/// Whether a container's owner label names a process that is gone (on this host).
pub fn owner_is_gone(owner: Option<&str>) -> bool {
    is_orphan(owner, &hostname(), process_alive)
}

/// Removes orphaned codebox containers; returns how many were removed.
pub async fn reap_orphans<E: Containers>(engine: &E) -> Result<usize, EngineError> {
    let mut removed = 0;
    for container in engine.list_managed().await? {
        let owner = container.labels.get(OWNER_LABEL).map(String::as_str);
        if owner_is_gone(owner) {
            tracing::info!(container = %container.id, owner = ?owner, "removing orphaned sandbox container");
            engine.remove(&container.id).await?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orphan_decisions() {
        let alive = |pid: u32, ticks: u64| pid == 10 && ticks == 99;
        assert!(!is_orphan(Some("h:10:99"), "h", alive), "live owner");
        assert!(is_orphan(Some("h:10:98"), "h", alive), "pid reused");
        assert!(is_orphan(Some("h:11:99"), "h", alive), "dead owner");
        assert!(
            !is_orphan(Some("other:11:99"), "h", alive),
            "another host's"
        );
        assert!(is_orphan(None, "h", alive), "no owner");
        assert!(is_orphan(Some("garbage"), "h", alive));
        assert!(!is_orphan(Some("my:host:10:99"), "my:host", alive));
    }

    #[test]
    fn a_tag_of_another_host_is_never_judged_here() {
        let dead = |_: u32, _: u64| false;
        assert_eq!(
            tag_owner_alive_on("1-5-aaaaaaaa-Xy12Zq", "bbbbbbbb", dead),
            Some(true)
        );
        assert_eq!(
            tag_owner_alive_on("1-5-bbbbbbbb-Xy12Zq", "bbbbbbbb", dead),
            Some(false)
        );
        // Before host marks: the random suffix is six characters, judged here.
        assert_eq!(
            tag_owner_alive_on("1-5-Xy12Zq", "bbbbbbbb", dead),
            Some(false)
        );
        assert_eq!(tag_owner_alive_on("garbage", "bbbbbbbb", dead), None);
        let tag = owner_tag();
        assert_eq!(
            tag_owner_alive(&format!("{tag}-abcdef")),
            Some(true),
            "{tag}"
        );
    }

    #[test]
    fn this_process_is_alive() {
        let owner = current_owner();
        assert!(!is_orphan(Some(&owner), &hostname(), process_alive));
    }
}
