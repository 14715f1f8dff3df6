//! `codebox doctor`: what works on this machine, and the fix for what does not.

use std::collections::HashMap;
use std::path::Path;

use crate::config::{Runtime, Settings};
use crate::container::engine::{Containers, EngineError, Images, ManagedContainer, System};
use crate::container::rebuild_command;
use crate::container::{OWNER_LABEL, POOL_LABEL, reaper};
use crate::sandbox::image::{PROTOCOL_LABEL, speaks_this_protocol};
use crate::sandbox::mount_view::{path_seen_by_runc, shows_only_its_name};
use crate::sandbox::protocol::PROTOCOL_VERSION;

#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
    pub fix: Option<String>,
}

impl Check {
    fn pass(name: &str, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            ok: true,
            detail: detail.into(),
            fix: None,
        }
    }

    /// Works, with a way to do better.
    fn hint(name: &str, detail: impl Into<String>, hint: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            ok: true,
            detail: detail.into(),
            fix: Some(hint.into()),
        }
    }

    fn fail(name: &str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            ok: false,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Checks that need the daemon; `engine` is None when it could not be reached.
pub async fn run_checks<E: Images + System + Containers>(
    settings: &Settings,
    engine: Result<&E, &EngineError>,
) -> Vec<Check> {
    let mut checks = Vec::new();
    let engine = match engine {
        Ok(engine) => engine,
        Err(err) => {
            checks.push(Check::fail(
                "docker daemon",
                err.to_string(),
                "bash scripts/setup.sh (installs docker.io and starts dockerd)",
            ));
            checks.push(data_dir_check(&settings.data_dir));
            return checks;
        }
    };
    match engine.daemon_info().await {
        Ok(info) => {
            checks.push(Check::pass(
                "docker daemon",
                format!(
                    "server {} (API {}), cgroup v{}",
                    info.server_version, info.api_version, info.cgroup_version
                ),
            ));
            for runtime in [Runtime::Runc, Runtime::Runsc] {
                let name = format!("runtime {}", runtime.as_str());
                let selected = settings.sandbox.sandbox_runtime == runtime;
                let suffix = if selected { " (selected)" } else { "" };
                if info.runtimes.iter().any(|r| r == runtime.as_str()) {
                    checks.push(Check::pass(&name, format!("registered{suffix}")));
                } else if selected || runtime == Runtime::Runc {
                    checks.push(Check::fail(
                        &name,
                        format!("not registered{suffix}"),
                        "bash scripts/setup.sh (installs runsc and registers it in /etc/docker/daemon.json)",
                    ));
                } else {
                    checks.push(Check::pass(
                        &name,
                        "not registered (optional; SANDBOX_RUNTIME=runsc needs it)",
                    ));
                }
            }
        }
        Err(err) => checks.push(Check::fail(
            "docker daemon",
            err.to_string(),
            "bash scripts/setup.sh",
        )),
    }
    match engine.image_labels(&settings.sandbox.sandbox_image).await {
        Ok(labels) => checks.push(image_check(
            &settings.sandbox.sandbox_image,
            labels.as_ref(),
        )),
        Err(err) => checks.push(Check::fail(
            "sandbox image",
            err.to_string(),
            "bash scripts/setup.sh",
        )),
    }
    checks.push(data_dir_check(&settings.data_dir));
    checks.push(host_paths_check(settings));
    checks.push(pool_check(settings, engine).await);
    checks.push(packages_check(settings));
    checks
}

/// Pure: the sandbox image is there and its runner speaks this codebox's protocol (its
/// build label says so), or the command that rebuilds it.
fn image_check(image: &str, labels: Option<&HashMap<String, String>>) -> Check {
    let Some(labels) = labels else {
        return Check::fail(
            "sandbox image",
            format!("{image} is missing"),
            rebuild_command(image),
        );
    };
    if speaks_this_protocol(labels) {
        return Check::pass(
            "sandbox image",
            format!("{image} (runner protocol {PROTOCOL_VERSION})"),
        );
    }
    let found = match labels.get(PROTOCOL_LABEL) {
        Some(version) => format!("runner protocol {version}"),
        None => "no runner protocol label (built before versions)".to_string(),
    };
    Check::fail(
        "sandbox image",
        format!("{image} is out of date: {found}, this codebox speaks protocol {PROTOCOL_VERSION}"),
        rebuild_command(image),
    )
}

/// The warm pool as the daemon sees it: its containers carry the pool label and their
/// owner, so this works from another process than the bot's.
async fn pool_check<E: Containers>(settings: &Settings, engine: &E) -> Check {
    let configured = format!(
        "WARM_POOL_SIZE={} (up to {} after bursts, max age {} s)",
        settings.pool.warm_pool_size,
        settings.pool.most_waiting(),
        settings.pool.warm_pool_max_age_s
    );
    let containers = match engine.list_managed().await {
        Ok(containers) => containers,
        Err(err) => return Check::fail("warm pool", err.to_string(), "bash scripts/setup.sh"),
    };
    let pooled: Vec<_> = containers
        .iter()
        .filter(|c| c.labels.contains_key(POOL_LABEL))
        .collect();
    let (orphaned, live): (Vec<&&ManagedContainer>, Vec<&&ManagedContainer>) = pooled
        .iter()
        .partition(|c| reaper::owner_is_gone(c.labels.get(OWNER_LABEL).map(String::as_str)));
    let orphans = orphaned.len();
    let pools: std::collections::BTreeSet<_> = live
        .iter()
        .filter_map(|c| c.labels.get(POOL_LABEL))
        .collect();
    let detail = format!(
        "{configured}; {} warm containers (waiting or running their one job) in {} live pools",
        live.len(),
        pools.len()
    );
    if orphans > 0 {
        Check::fail(
            "warm pool",
            format!("{detail}; {orphans} left by a process that is gone"),
            "start codebox once (it reaps them) or docker rm -f them",
        )
    } else {
        Check::pass("warm pool", detail)
    }
}

fn packages_check(settings: &Settings) -> Check {
    let policy = settings.packages.package_policy.as_str();
    let index = settings
        .packages
        .pip_index_url
        .as_deref()
        .map(index_host)
        .unwrap_or("PyPI");
    match crate::packages::PackageCache::open(&settings.data_dir).and_then(|c| c.entries()) {
        Ok(entries) => Check::pass(
            "packages",
            format!(
                "PACKAGE_POLICY={policy}, index {index}, cache {} distributions, {:.1} of {} MB; the installer has no network and reaches only {}",
                entries.len(),
                entries.iter().map(|e| e.bytes).sum::<u64>() as f64 / 1e6,
                settings.packages.package_cache_max_mb,
                crate::packages::egress_rules::Upstreams::from_settings(&settings.packages)
            ),
        ),
        Err(err) => Check::fail(
            "packages",
            err.to_string(),
            "set DATA_DIR to a writable directory",
        ),
    }
}

/// The host of an index URL; credentials in it are never printed.
fn index_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    authority.rsplit('@').next().unwrap_or(authority)
}

/// What a run learns of the host's paths from its own `/proc/self/mountinfo`.
fn host_paths_check(settings: &Settings) -> Check {
    const NAME: &str = "host paths";
    const HIDE_HOST_PATHS: &str =
        "put DATA_DIR on a file system of its own, or set SANDBOX_RUNTIME=runsc, to hide it";
    if settings.sandbox.sandbox_runtime == Runtime::Runsc {
        return Check::pass(
            NAME,
            "runs under runsc see no host path in /proc/self/mountinfo",
        );
    }
    // Runs get bind mounts of directories under these; each may be a file system of its own.
    let seen = std::fs::read_to_string("/proc/self/mountinfo").and_then(|table| {
        let data_dir = std::fs::canonicalize(&settings.data_dir)?;
        let mut shown = Vec::new();
        for sub in ["staging", "pool", "packages"] {
            let path = data_dir.join(sub);
            let path = if path.exists() {
                std::fs::canonicalize(&path)?
            } else {
                path
            };
            shown.push(path_seen_by_runc(&path, &table));
        }
        Ok(shown)
    });
    match seen {
        Ok(shown) if shown.iter().all(Option::is_some) => {
            // `/staging` says nothing of the host; `/var/lib/codebox/staging` does.
            match shown
                .iter()
                .flatten()
                .find(|seen| !shows_only_its_name(seen))
            {
                None => Check::pass(
                    NAME,
                    "DATA_DIR is the root of its own file system: runs under runc see no host path of it in /proc/self/mountinfo (only Docker's own)",
                ),
                Some(seen) => Check::hint(
                    NAME,
                    format!(
                        "runs under runc see host paths such as {} in /proc/self/mountinfo (and Docker's own)",
                        seen.display()
                    ),
                    HIDE_HOST_PATHS,
                ),
            }
        }
        Ok(_) => Check::hint(
            NAME,
            "no mount in /proc/self/mountinfo covers DATA_DIR; runs under runc may see its host path",
            HIDE_HOST_PATHS,
        ),
        Err(err) => Check::hint(
            NAME,
            format!("cannot tell what runs under runc see of DATA_DIR: {err}"),
            HIDE_HOST_PATHS,
        ),
    }
}

fn data_dir_check(dir: &Path) -> Check {
    // Created (or tightened) exactly as a start would: the doctor never leaves a wider one.
    let probe =
        crate::data_dir::ensure(dir).and_then(|modes| tempfile::tempfile_in(dir).map(|_| modes));
    match probe {
        Ok(crate::data_dir::DataDirModes::Private) => Check::pass(
            "data dir",
            format!(
                "{} is writable and 0700: no other local account reads users' files, snapshots or the database",
                dir.display()
            ),
        ),
        Ok(crate::data_dir::DataDirModes::Tightened { was }) => Check::pass(
            "data dir",
            format!(
                "{} was {was:o}, readable by other local accounts; tightened to 0700",
                dir.display()
            ),
        ),
        Err(err) => Check::fail(
            "data dir",
            format!("{}: {err}", dir.display()),
            "set DATA_DIR to a writable directory",
        ),
    }
}

/// Pure: the table `codebox doctor` prints.
pub fn render(checks: &[Check]) -> String {
    let width = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for check in checks {
        let mark = if check.ok { "ok  " } else { "FAIL" };
        out.push_str(&format!(
            "{mark}  {:width$}  {}\n",
            check.name,
            check.detail,
            width = width
        ));
        if let Some(fix) = &check.fix {
            let word = if check.ok { "hint" } else { "fix" };
            out.push_str(&format!(
                "      {:width$}  {word}: {fix}\n",
                "",
                width = width
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_credentials_are_never_shown() {
        assert_eq!(
            index_host("https://user:secret@mirror.lan/simple/"),
            "mirror.lan"
        );
        assert_eq!(
            index_host("http://172.17.0.1:8080/simple/"),
            "172.17.0.1:8080"
        );
    }

    #[test]
    fn an_image_of_this_protocol_passes() {
        let labels = HashMap::from([(PROTOCOL_LABEL.to_string(), PROTOCOL_VERSION.to_string())]);
        let check = image_check("codebox-sandbox:latest", Some(&labels));
        assert!(check.ok, "{check:?}");
        assert!(
            check
                .detail
                .contains(&format!("runner protocol {PROTOCOL_VERSION}"))
        );
    }

    #[test]
    fn an_image_of_another_or_no_protocol_is_out_of_date_with_its_rebuild_command() {
        let old = HashMap::from([(PROTOCOL_LABEL.to_string(), "1".to_string())]);
        for (labels, found) in [
            (old, "runner protocol 1"),
            (HashMap::new(), "no runner protocol label"),
        ] {
            let text = render(&[image_check("codebox-sandbox:latest", Some(&labels))]);
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines.len(), 2, "{text}");
            assert!(
                lines[0].starts_with("FAIL  sandbox image  codebox-sandbox:latest is out of date")
            );
            assert!(lines[0].contains(found), "{text}");
            assert!(
                lines[1].contains("fix: codebox image build --tag codebox-sandbox:latest (add --base codebox-base:bookworm on machines without a registry), or bash scripts/setup.sh"),
                "{text}"
            );
        }
    }

    #[test]
    fn a_missing_image_names_the_build_command() {
        let check = image_check("codebox-sandbox:latest", None);
        assert!(!check.ok);
        assert_eq!(check.detail, "codebox-sandbox:latest is missing");
        assert!(
            check
                .fix
                .unwrap()
                .contains("codebox image build --tag codebox-sandbox:latest")
        );
    }

    #[test]
    fn table_lists_failures_with_their_fix() {
        let text = render(&[
            Check::pass("docker daemon", "20.10"),
            Check::fail("sandbox image", "missing", "codebox image build"),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("ok    docker daemon  20.10"));
        assert!(lines[1].starts_with("FAIL  sandbox image  missing"));
        assert!(lines[2].ends_with("fix: codebox image build"));
    }
}
