//! The warm pool: containers created and started ahead of time, their runner already past
//! its imports (numpy, pandas, matplotlib) and waiting on stdin for its one job. A request
//! takes one, and a replacement starts in the background. Every container still runs
//! exactly one job and is removed after it; the pool only moves container start and
//! imports out of the request's path. Its size follows recent bursts (`pool_demand`)
//! between the configured size and maximum.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::held::{Holds, StateIdentity};
use super::limits::Limits;
use super::live::{LiveContainer, LiveError, launch};
use super::pool_demand::Demand;
use super::spec::ContainerSpec;
use crate::container::engine::Containers;
use crate::container::guard::ContainerGuard;
use crate::container::retirer::Retirer;

/// How often waiting containers are checked for death and age.
const HEALTH_INTERVAL: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Containers warmed at the same time when the pool runs low.
const PARALLEL_WARMUPS: usize = 2;
/// Calls this close together are one burst: while the pool still holds a container for the
/// next, refilling (a second of imports per container) waits for the burst to pause
/// rather than slow its calls down...
const BURST_GAP: Duration = Duration::from_millis(300);
/// ...but never longer than this, so steady traffic still gets its pool back.
const MOST_REFILL_DEFERRAL: Duration = Duration::from_secs(2);
/// A container held for a conversation waits this long for its next run (a model's next
/// tool call, the member's next message) before it is removed.
const HELD_FOR: Duration = Duration::from_secs(180);

pub struct WarmContainer<E: Containers + 'static> {
    pub live: LiveContainer<E>,
    /// Host directory bind-mounted read-only at the input mount since creation; the job's
    /// files are linked into it at hand-off.
    pub inputs_dir: PathBuf,
    born: Instant,
}

/// What `codebox doctor` and the logs show.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PoolStatus {
    pub id: String,
    pub target: usize,
    pub idle: usize,
    pub warming: usize,
    pub warmed: u64,
    pub taken: u64,
    /// Requests that found no waiting container (or needed other limits).
    pub missed: u64,
    pub replaced: u64,
    pub failures: u64,
}

struct Inner<E: Containers + 'static> {
    id: String,
    engine: Arc<E>,
    template: ContainerSpec,
    root: PathBuf,
    size: usize,
    /// The most containers recent bursts may keep waiting.
    max: usize,
    demand: Mutex<Demand>,
    max_age: Duration,
    startup_timeout: Duration,
    idle: Mutex<Vec<WarmContainer<E>>>,
    /// Used containers whose removal waits for the burst they served to pause: removing one
    /// is daemon and kernel work on the cores the burst's next calls need.
    used: Mutex<Vec<(Instant, ContainerGuard<E>, PathBuf)>>,
    /// Taken containers held for a conversation, their state restored ahead (`held`).
    holds: Mutex<Holds<WarmContainer<E>>>,
    wake: Notify,
    /// Signalled whenever a warmed container joins the pool.
    filled: Notify,
    closed: AtomicBool,
    warming: AtomicUsize,
    /// Requests running in fresh containers because the pool was empty. Warming a
    /// container costs a second of CPU (the imports); while these run, refilling waits, so
    /// a burst is not slowed down by the pool that could not serve it.
    cold_in_flight: AtomicUsize,
    retirer: Arc<Retirer>,
    warmed: AtomicU64,
    taken: AtomicU64,
    missed: AtomicU64,
    replaced: AtomicU64,
    failures: AtomicU64,
}

pub struct WarmPool<E: Containers + 'static> {
    inner: Arc<Inner<E>>,
    maintainer: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("cannot prepare the warm pool directory {path}: {source}")]
    Directory {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl<E: Containers + 'static> WarmPool<E> {
    /// Starts filling the pool in the background. `template` gives the image, limits,
    /// runtime, owner and package mount every pool container gets; `sizes` the configured
    /// size and the most recent bursts may grow it to.
    pub fn start(
        engine: Arc<E>,
        retirer: Arc<Retirer>,
        template: ContainerSpec,
        root: &Path,
        sizes: PoolSizes,
        max_age: Duration,
        startup_timeout: Duration,
    ) -> Result<WarmPool<E>, PoolError> {
        let PoolSizes { size, max } = sizes;
        let shared = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
        remove_dead_pools(&shared, (3 * max_age).max(Duration::from_secs(3600)));
        // Several processes may share a DATA_DIR (executors of two nodes on one disk, a bot
        // beside an executor): each pool keeps its containers' directories in its own.
        let root = shared.join(crate::container::reaper::owner_tag());
        std::fs::create_dir_all(&root).map_err(|source| PoolError::Directory {
            path: root.clone(),
            source,
        })?;
        let inner = Arc::new(Inner {
            id: uuid::Uuid::new_v4().simple().to_string(),
            engine,
            template,
            root,
            size,
            max,
            demand: Mutex::new(Demand::default()),
            max_age,
            startup_timeout,
            idle: Mutex::new(Vec::new()),
            used: Mutex::new(Vec::new()),
            holds: Mutex::new(Holds::new(max)),
            wake: Notify::new(),
            filled: Notify::new(),
            closed: AtomicBool::new(false),
            warming: AtomicUsize::new(0),
            cold_in_flight: AtomicUsize::new(0),
            retirer,
            warmed: AtomicU64::new(0),
            taken: AtomicU64::new(0),
            missed: AtomicU64::new(0),
            replaced: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        });
        let maintainer = tokio::spawn(maintain(inner.clone()));
        tracing::info!(
            size,
            max,
            max_age_s = max_age.as_secs_f64(),
            "warm pool started"
        );
        Ok(WarmPool {
            inner,
            maintainer: Mutex::new(Some(maintainer)),
        })
    }

    /// A waiting container for these limits, if one is ready; never waits for one.
    pub fn take(&self, limits: &Limits) -> Option<WarmContainer<E>> {
        let inner = &self.inner;
        if inner.closed.load(Ordering::Relaxed)
            || !same_container_limits(limits, &inner.template.limits)
        {
            inner.missed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        // Only requests the pool could serve: others never grow it.
        if let Ok(mut demand) = inner.demand.lock() {
            demand.request(Instant::now());
        }
        let mut stale = Vec::new();
        let found = {
            let Ok(mut idle) = inner.idle.lock() else {
                return None;
            };
            let mut found = None;
            while let Some(mut candidate) = idle.pop() {
                if candidate.is_usable(inner.max_age) {
                    found = Some(candidate);
                    break;
                }
                stale.push(candidate);
            }
            found
        };
        for container in stale {
            inner.replaced.fetch_add(1, Ordering::Relaxed);
            retire(inner, container.live.guard, container.inputs_dir);
        }
        inner.wake.notify_one();
        match &found {
            Some(_) => inner.taken.fetch_add(1, Ordering::Relaxed),
            None => inner.missed.fetch_add(1, Ordering::Relaxed),
        };
        found
    }

    /// Holds a taken container for `conversation` (`expect`ed), its runner told to
    /// restore `state`; what that displaces (the conversation's previous one, the longest
    /// held beyond the pool's maximum) is removed, and so is the container itself when the
    /// conversation's run claimed in between.
    pub fn hold(&self, conversation: String, container: WarmContainer<E>, state: StateIdentity) {
        let inner = &self.inner;
        let holds = inner.holds.lock();
        let (Ok(mut holds), false) = (holds, inner.closed.load(Ordering::Relaxed)) else {
            retire(inner, container.live.guard, container.inputs_dir);
            return;
        };
        let displaced = match holds.fulfil(conversation, container, state, Instant::now()) {
            Ok(displaced) => displaced,
            // The conversation's run started meanwhile: the state is about to change.
            Err(container) => vec![container],
        };
        drop(holds);
        for container in displaced {
            retire(inner, container.live.guard, container.inputs_dir);
        }
    }

    /// A container for `conversation` is being made ready: a claim before it is held
    /// cancels it.
    pub fn expect(&self, conversation: &str) {
        if let Ok(mut holds) = self.inner.holds.lock() {
            holds.expect(conversation);
        }
    }

    /// The container expected for `conversation` will not come.
    pub fn forget(&self, conversation: &str) {
        if let Ok(mut holds) = self.inner.holds.lock() {
            holds.forget(conversation);
        }
    }

    /// Whether a container holds exactly this state for `conversation`.
    pub fn holds(&self, conversation: &str, state: &StateIdentity) -> bool {
        self.inner
            .holds
            .lock()
            .is_ok_and(|holds| holds.holds(conversation, state))
    }

    /// Whether a container is held for `conversation`, whatever its state.
    pub fn holds_any(&self, conversation: &str) -> bool {
        self.inner
            .holds
            .lock()
            .is_ok_and(|holds| holds.contains(conversation))
    }

    /// The container held for `conversation` and the state it restored, when it can run
    /// a job of these limits (one that cannot is removed).
    pub fn claim(
        &self,
        conversation: &str,
        limits: &Limits,
    ) -> Option<(WarmContainer<E>, StateIdentity)> {
        let inner = &self.inner;
        let (container, state) = inner.holds.lock().ok()?.claim(conversation)?;
        if !same_container_limits(limits, &inner.template.limits) {
            retire(inner, container.live.guard, container.inputs_dir);
            return None;
        }
        Some((container, state))
    }

    /// A waiting container for work that may never come (a state restored ahead), only
    /// when another stays waiting for runs that certainly will: never the pool's last.
    /// Waits up to `patience` for one (the pool refilling after a run).
    pub async fn take_spare(
        &self,
        limits: &Limits,
        patience: Duration,
    ) -> Option<WarmContainer<E>> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let filled = self.inner.filled.notified();
            tokio::pin!(filled);
            // Registered before the check, so a container added in between still wakes us.
            filled.as_mut().enable();
            if self.inner.closed.load(Ordering::Relaxed) {
                return None;
            }
            if self.inner.idle_count() >= 2 {
                return self.take(limits);
            }
            if tokio::time::timeout_at(deadline, filled).await.is_err() {
                return None;
            }
        }
    }

    /// Marks a request that runs in a fresh container; refilling waits until it ends.
    pub fn cold_run(&self) -> ColdRun<E> {
        self.inner.cold_in_flight.fetch_add(1, Ordering::Relaxed);
        ColdRun {
            inner: self.inner.clone(),
        }
    }

    /// A taken container that turned out dead before its job; it is replaced like any
    /// other dead one.
    pub fn retire_dead(&self, guard: ContainerGuard<E>, inputs_dir: PathBuf) {
        self.inner.replaced.fetch_add(1, Ordering::Relaxed);
        retire(&self.inner, guard, inputs_dir);
    }

    /// This pool's id, the value of the pool label on its containers.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// Removes a used container in the background, so the result is not held up by the
    /// daemon's removal; `shutdown` waits for these.
    /// Mid-burst, the removal waits (at most MOST_REFILL_DEFERRAL) for the burst to pause.
    pub fn retire(&self, guard: ContainerGuard<E>, inputs_dir: PathBuf) {
        let inner = &self.inner;
        if !inner.closed.load(Ordering::Relaxed)
            && inner.mid_burst()
            && let Ok(mut used) = inner.used.lock()
        {
            used.push((Instant::now(), guard, inputs_dir));
            return;
        }
        retire(inner, guard, inputs_dir);
    }

    pub fn status(&self) -> PoolStatus {
        let inner = &self.inner;
        PoolStatus {
            id: inner.id.clone(),
            target: inner.target(),
            idle: inner.idle_count(),
            warming: inner.warming.load(Ordering::Relaxed),
            warmed: inner.warmed.load(Ordering::Relaxed),
            taken: inner.taken.load(Ordering::Relaxed),
            missed: inner.missed.load(Ordering::Relaxed),
            replaced: inner.replaced.load(Ordering::Relaxed),
            failures: inner.failures.load(Ordering::Relaxed),
        }
    }

    /// Waits until the pool holds its target number of waiting containers (benchmarks and
    /// tests use it to measure the warm path), or the timeout passes.
    pub async fn wait_full(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let filled = self.inner.filled.notified();
            tokio::pin!(filled);
            // Registered before the check, so a container added in between still wakes us.
            filled.as_mut().enable();
            if self.status().idle >= self.inner.target() {
                return true;
            }
            if tokio::time::timeout_at(deadline, filled).await.is_err() {
                return false;
            }
        }
    }

    /// Stops refilling and hands every waiting container to the retirer; the executor's
    /// `shutdown` then waits for all removals at once.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        inner.closed.store(true, Ordering::Relaxed);
        inner.wake.notify_one();
        // Not aborted: a warm-up in flight finishes and retires its container, so nothing
        // is left half-created when this returns.
        let maintainer = self.maintainer.lock().ok().and_then(|mut m| m.take());
        if let Some(task) = maintainer {
            let _ = task.await;
        }
        inner.retire_used(true);
        let idle: Vec<WarmContainer<E>> = inner
            .idle
            .lock()
            .map(|mut idle| idle.drain(..).collect())
            .unwrap_or_default();
        let held: Vec<WarmContainer<E>> = inner
            .holds
            .lock()
            .map(|mut holds| holds.drain())
            .unwrap_or_default();
        let removed = idle.len() + held.len();
        for container in idle.into_iter().chain(held) {
            retire(inner, container.live.guard, container.inputs_dir);
        }
        tracing::info!(removed, "warm pool shut down");
    }
}

impl<E: Containers + 'static> Drop for WarmPool<E> {
    fn drop(&mut self) {
        // Without a shutdown the guards of the waiting containers still remove them.
        self.inner.closed.store(true, Ordering::Relaxed);
        if let Some(task) = self.maintainer.lock().ok().and_then(|mut m| m.take()) {
            task.abort();
        }
    }
}

pub struct ColdRun<E: Containers + 'static> {
    inner: Arc<Inner<E>>,
}

impl<E: Containers + 'static> Drop for ColdRun<E> {
    fn drop(&mut self) {
        self.inner.cold_in_flight.fetch_sub(1, Ordering::Relaxed);
        self.inner.wake.notify_one();
    }
}

/// The configured pool size and the most containers recent bursts may keep waiting (a
/// maximum below the size means the size: `Demand::target`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoolSizes {
    pub size: usize,
    pub max: usize,
}

impl<E: Containers + 'static> Inner<E> {
    /// Whether calls are coming back to back (one started within BURST_GAP).
    fn mid_burst(&self) -> bool {
        self.demand
            .lock()
            .is_ok_and(|d| d.busy_within(Instant::now(), BURST_GAP))
    }

    /// Hands the used containers to the retirer: all of them once the burst paused (or
    /// `all`), else those that waited MOST_REFILL_DEFERRAL. Returns whether some still wait.
    fn retire_used(&self, all: bool) -> bool {
        let all = all || !self.mid_burst();
        let due: Vec<(Instant, ContainerGuard<E>, PathBuf)> = {
            let Ok(mut used) = self.used.lock() else {
                return false;
            };
            let (due, waiting): (Vec<_>, Vec<_>) = used
                .drain(..)
                .partition(|(since, _, _)| all || since.elapsed() >= MOST_REFILL_DEFERRAL);
            *used = waiting;
            due
        };
        for (_, guard, inputs_dir) in due {
            retire(self, guard, inputs_dir);
        }
        self.used.lock().is_ok_and(|used| !used.is_empty())
    }

    fn idle_count(&self) -> usize {
        self.idle.lock().map(|idle| idle.len()).unwrap_or(0)
    }

    /// How many containers should be waiting now.
    fn target(&self) -> usize {
        self.demand
            .lock()
            .map(|mut d| d.target(Instant::now(), self.size, self.max))
            .unwrap_or(self.size)
    }
}

/// Limits a container was created with; the time limit and output caps travel with the job.
fn same_container_limits(a: &Limits, b: &Limits) -> bool {
    a.memory_mb == b.memory_mb
        && a.cpus == b.cpus
        && a.cpuset == b.cpuset
        && a.pids == b.pids
        && a.disk_mb == b.disk_mb
        && a.runtime == b.runtime
}

fn retire<E: Containers + 'static>(
    inner: &Inner<E>,
    guard: ContainerGuard<E>,
    inputs_dir: PathBuf,
) {
    inner.retirer.retire(guard, Some(inputs_dir));
}

async fn warm_up<E: Containers + 'static>(inner: &Inner<E>) -> Result<WarmContainer<E>, LiveError> {
    let started = Instant::now();
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let inputs_dir = inner.root.join(&run_id);
    std::fs::create_dir(&inputs_dir).map_err(|e| LiveError::Ended {
        detail: format!("cannot create {}: {e}", inputs_dir.display()),
    })?;
    let spec = ContainerSpec {
        run_id: run_id.clone(),
        input_dir: Some(inputs_dir.clone()),
        preload: true,
        pool_id: Some(inner.id.clone()),
        code_uid: crate::sandbox::run_uids::next_run_uid(),
        ..inner.template.clone()
    };
    let mut live = match launch(&inner.engine, &inner.retirer, &spec).await {
        Ok(live) => live,
        Err(err) => {
            let _ = std::fs::remove_dir_all(&inputs_dir);
            return Err(err.into());
        }
    };
    if let Err(err) = live.wait_ready(inner.startup_timeout).await {
        retire(inner, live.guard, inputs_dir);
        return Err(err);
    }
    let took = started.elapsed();
    if let Ok(mut demand) = inner.demand.lock() {
        demand.warmed_in(took);
    }
    tracing::info!(
        run_id = %run_id,
        warm_ms = took.as_secs_f64() * 1000.0,
        "warm container ready"
    );
    Ok(WarmContainer {
        live,
        inputs_dir,
        born: Instant::now(),
    })
}

/// Removes the pool directories of dead processes (their containers are reaped with
/// them), those of versions before per-process directories, and any untouched for longer
/// than `stale` (an owner on another host, whose pid cannot be judged from here: a live
/// pool replaces its containers, and so touches its directory, at least every max age).
fn remove_dead_pools(shared: &Path, stale: Duration) {
    let Ok(entries) = std::fs::read_dir(shared) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let untouched = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .unwrap_or_default();
        if crate::container::reaper::tag_owner_alive(&name) != Some(true) || untouched > stale {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Keeps the pool at its size: drops dead and old containers, warms replacements, backs off
/// while the daemon is unreachable and refills once it answers again.
async fn maintain<E: Containers + 'static>(inner: Arc<Inner<E>>) {
    let mut backoff = Duration::from_millis(500);
    let mut short_since: Option<Instant> = None;
    loop {
        if inner.closed.load(Ordering::Relaxed) {
            return;
        }
        let used_waiting = inner.retire_used(false);
        // Checked before asking the daemon about the waiting ones: mid-burst, this loop
        // wakes often and must not add to the daemon's load.
        let idle = inner.idle_count();
        if inner.target() <= idle {
            short_since = None;
        } else {
            let short_for = short_since.get_or_insert_with(Instant::now).elapsed();
            if idle > 0 && short_for < MOST_REFILL_DEFERRAL && inner.mid_burst() {
                tokio::select! {
                    _ = inner.wake.notified() => {}
                    _ = tokio::time::sleep(BURST_GAP / 3) => {}
                }
                continue;
            }
        }
        drop_stale(&inner).await;
        let deficit = inner.target().saturating_sub(inner.idle_count());
        if deficit > 0 && inner.cold_in_flight.load(Ordering::Relaxed) > 0 {
            tokio::select! {
                _ = inner.wake.notified() => {}
                _ = tokio::time::sleep(HEALTH_INTERVAL) => {}
            }
            continue;
        }
        let mut failed = false;
        if deficit > 0 {
            let batch = deficit.min(PARALLEL_WARMUPS);
            inner.warming.fetch_add(batch, Ordering::Relaxed);
            let results = futures_util::future::join_all((0..batch).map(|_| warm_up(&inner))).await;
            inner.warming.fetch_sub(batch, Ordering::Relaxed);
            for result in results {
                match result {
                    Ok(container) => {
                        inner.warmed.fetch_add(1, Ordering::Relaxed);
                        if inner.closed.load(Ordering::Relaxed) {
                            retire(&inner, container.live.guard, container.inputs_dir);
                        } else if let Ok(mut idle) = inner.idle.lock() {
                            idle.push(container);
                            inner.filled.notify_waiters();
                        }
                    }
                    Err(err) => {
                        failed = true;
                        inner.failures.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %err, retry_in_ms = backoff.as_millis() as u64, "cannot warm a sandbox container");
                    }
                }
            }
        }
        if failed {
            tokio::select! {
                _ = inner.wake.notified() => {}
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
            continue;
        }
        backoff = Duration::from_millis(500);
        if deficit > PARALLEL_WARMUPS {
            continue;
        }
        let full = inner.idle_count() >= inner.target();
        if full {
            // Used containers waiting for the burst to pause are looked at again soon.
            let next_look = if used_waiting {
                BURST_GAP / 3
            } else {
                HEALTH_INTERVAL
            };
            tokio::select! {
                _ = inner.wake.notified() => {}
                _ = tokio::time::sleep(next_look) => {}
            }
        }
    }
}

/// Drops waiting containers that died (asked of the daemon: a killed container's stream
/// is not always closed at once), that aged out, or whose stream ended.
async fn drop_stale<E: Containers + 'static>(inner: &Inner<E>) {
    let max_age = inner.max_age;
    let released = inner
        .holds
        .lock()
        .map(|mut holds| {
            holds.release_if(Instant::now(), HELD_FOR.min(max_age), |c| {
                c.is_usable(max_age)
            })
        })
        .unwrap_or_default();
    for container in released {
        tracing::info!(run_id = %container.live.run_id, "a container held for a conversation is removed unused");
        retire(inner, container.live.guard, container.inputs_dir);
    }
    let ids: Vec<(String, String)> = match inner.idle.lock() {
        Ok(idle) => idle
            .iter()
            .map(|c| (c.live.run_id.clone(), c.live.id.clone()))
            .collect(),
        Err(_) => return,
    };
    let mut dead = std::collections::HashSet::new();
    for (run_id, id) in ids {
        match inner.engine.exit_state(&id).await {
            Ok(state) if state.running => {}
            _ => {
                dead.insert(run_id);
            }
        }
    }
    let target = inner.target();
    let (stale, surplus): (Vec<WarmContainer<E>>, Vec<WarmContainer<E>>) = {
        let Ok(mut idle) = inner.idle.lock() else {
            return;
        };
        let all: Vec<WarmContainer<E>> = idle.drain(..).collect();
        let mut stale = Vec::new();
        for mut container in all {
            if !dead.contains(&container.live.run_id) && container.is_usable(inner.max_age) {
                idle.push(container);
            } else {
                stale.push(container);
            }
        }
        // A burst forgotten: the oldest of what it left waiting go first.
        idle.sort_by_key(|c| std::cmp::Reverse(c.born));
        let keep = target.min(idle.len());
        let surplus = idle.split_off(keep);
        (stale, surplus)
    };
    if !surplus.is_empty() {
        // A waiter for the pool to be full may be satisfied by the smaller target.
        inner.filled.notify_waiters();
    }
    for container in surplus {
        tracing::info!(run_id = %container.live.run_id, target, "a warm container beyond the pool's size now is removed");
        retire(inner, container.live.guard, container.inputs_dir);
    }
    for container in stale {
        inner.replaced.fetch_add(1, Ordering::Relaxed);
        tracing::info!(run_id = %container.live.run_id, "replacing a dead or old warm container");
        retire(inner, container.live.guard, container.inputs_dir);
    }
}

impl<E: Containers + 'static> WarmContainer<E> {
    fn is_usable(&mut self, max_age: Duration) -> bool {
        self.born.elapsed() < max_age && self.live.is_alive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_removes_dead_and_legacy_pool_directories_and_keeps_live_ones() {
        let shared = tempfile::tempdir().unwrap();
        let live = crate::container::reaper::owner_tag();
        let (_, rest) = live.split_once('-').unwrap();
        // Beyond the kernel's largest pid: never alive.
        let dead = format!("4194305-{rest}");
        let legacy = "1b80f9dd68a2449aadb1d17209d40cd7";
        // Another host's pool, left for two hours: its owner is out of sight, so age decides.
        let elsewhere = "1-2-0badcafe";
        for name in [live.as_str(), dead.as_str(), legacy, elsewhere] {
            std::fs::create_dir_all(shared.path().join(name).join("inputs")).unwrap();
        }
        let two_hours_ago = std::time::SystemTime::now() - Duration::from_secs(7200);
        std::fs::File::open(shared.path().join(elsewhere))
            .unwrap()
            .set_modified(two_hours_ago)
            .unwrap();
        remove_dead_pools(shared.path(), Duration::from_secs(3600));
        let mut left: Vec<String> = std::fs::read_dir(shared.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, vec![live]);
    }
}
