//! Pure: the limits of a run -> the run container's configuration, on top of the hardened
//! configuration every container starts from (`container::hardening`). Every line here is
//! a sandbox rule; the reason sits next to it.

use std::collections::HashMap;
use std::path::PathBuf;

use bollard::models::{ContainerCreateBody, Mount};

use super::limits::Limits;
use super::session::STATE_DIR;
use super::{INPUT_DIR, OUTPUT_DIR};
use crate::container::hardening::{
    Hardened, MIB, Privileges, Resources, base_env, hardened_config, read_only_bind,
};
use crate::container::{PACKAGES_MOUNT, POOL_LABEL};

/// Everything that decides how one sandbox container is created.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    pub image: String,
    pub limits: Limits,
    /// Host directory shown read-only at `INPUT_DIR`.
    pub input_dir: Option<PathBuf>,
    pub run_id: String,
    /// Identifies the creating process, so a later start can reap what a dead one left.
    pub owner: String,
    /// Import the data stack before the job arrives (warm containers).
    pub preload: bool,
    /// The warm pool that started this container ahead of its job.
    pub pool_id: Option<String>,
    /// The host's package cache, shown read-only at `PACKAGES_MOUNT`; the runner adds the
    /// directories the host names for this run to the code's path.
    pub packages_dir: Option<PathBuf>,
    /// Size of the tmpfs the session's snapshot is written to; None when sessions are off.
    pub state_mb: Option<u64>,
    /// The uid the code runs as, this container's own (`run_uids`).
    pub code_uid: u32,
}

pub const RUNNER_PATH: &str = "/opt/codebox/runner.py";

#[cfg(test)]
impl ContainerSpec {
    /// A run of the default limits with inputs at /data/in, for unit tests.
    pub(crate) fn sample(code_uid: u32) -> ContainerSpec {
        ContainerSpec {
            image: "codebox-sandbox:latest".into(),
            limits: Limits::from_settings(&crate::config::SandboxSettings::default()),
            input_dir: Some(PathBuf::from("/data/in")),
            run_id: "r1".into(),
            owner: "host:1:2".into(),
            preload: false,
            pool_id: None,
            packages_dir: None,
            state_mb: None,
            code_uid,
        }
    }
}

pub fn container_name(run_id: &str) -> String {
    format!("codebox-run-{run_id}")
}

pub fn container_config(spec: &ContainerSpec) -> ContainerCreateBody {
    let limits = &spec.limits;

    let mut cmd = vec![
        "python3".to_string(),
        "-u".to_string(),
        RUNNER_PATH.to_string(),
    ];
    if spec.preload {
        cmd.push("--preload".to_string());
    }

    // The user's files are data the code may read, never modify; the package cache is
    // shared by every run and must not be altered by one.
    let mounts: Vec<Mount> = [
        spec.input_dir
            .as_ref()
            .map(|dir| read_only_bind(dir, INPUT_DIR)),
        spec.packages_dir
            .as_ref()
            .map(|dir| read_only_bind(dir, PACKAGES_MOUNT)),
    ]
    .into_iter()
    .flatten()
    .collect();

    let mut labels = HashMap::new();
    if let Some(pool) = &spec.pool_id {
        // Started ahead of its job by a warm pool; doctor counts these.
        labels.insert(POOL_LABEL.to_string(), pool.clone());
    }

    hardened_config(Hardened {
        image: spec.image.clone(),
        cmd,
        extra_env: run_env()
            .into_iter()
            // Read and removed by the runner before the code's process is forked.
            .chain([format!("CODEBOX_CODE_UID={}", spec.code_uid)])
            .collect(),
        working_dir: OUTPUT_DIR.to_string(),
        hostname: "sandbox".to_string(),
        run_id: spec.run_id.clone(),
        owner: spec.owner.clone(),
        extra_labels: labels,
        privileges: Privileges::Runner,
        scratch: [
            ("/tmp".to_string(), limits.disk_mb),
            (OUTPUT_DIR.to_string(), limits.disk_mb),
        ]
        .into_iter()
        // The snapshot has a tmpfs of its own, sized to its cap: it never competes with
        // the code's scratch space, and the filesystem itself enforces the cap.
        .chain(spec.state_mb.map(|mb| (STATE_DIR.to_string(), mb)))
        .collect(),
        mounts,
        resources: Resources {
            memory_mb: limits.memory_mb,
            cpus: limits.cpus,
            cpuset: limits.cpuset.clone(),
            pids: limits.pids,
            // A single file can never be larger than the largest scratch space.
            max_file_bytes: Some(limits.disk_mb.max(spec.state_mb.unwrap_or(0)) as i64 * MIB),
        },
        runtime: limits.runtime.as_str().to_string(),
    })
}

/// What the runner and the user's code add to `base_env()`.
fn run_env() -> Vec<String> {
    [
        "PYTHONUNBUFFERED=1",
        "PYTHONDONTWRITEBYTECODE=1",
        // plt.show() writes figures as PNG outputs (images/sandbox/codebox_backend.py).
        "MPLBACKEND=module://codebox_backend",
        "MPLCONFIGDIR=/tmp/.matplotlib",
        "OPENBLAS_NUM_THREADS=1",
        "PYTHONPATH=/opt/codebox",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        format!("CODEBOX_INPUT_DIR={INPUT_DIR}"),
        format!("CODEBOX_OUTPUT_DIR={OUTPUT_DIR}"),
    ])
    .collect()
}

/// The complete environment of the code.
pub fn sandbox_env() -> Vec<String> {
    let mut env = base_env();
    env.extend(run_env());
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Runtime;
    use crate::container::{MANAGED_LABEL, OWNER_LABEL, RUN_ID_LABEL};

    fn spec() -> ContainerSpec {
        ContainerSpec::sample(1_900_000_042)
    }

    #[test]
    fn the_code_uid_is_the_containers_own() {
        let env = container_config(&spec()).env.unwrap();
        assert!(
            env.contains(&"CODEBOX_CODE_UID=1900000042".to_string()),
            "{env:?}"
        );
    }

    #[test]
    fn locks_the_container_down() {
        let body = container_config(&spec());
        let host = body.host_config.clone().unwrap();
        assert_eq!(host.network_mode.as_deref(), Some("none"));
        assert_eq!(body.network_disabled, Some(true));
        assert_eq!(host.readonly_rootfs, Some(true));
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_string()]));
        assert_eq!(
            host.security_opt,
            Some(vec!["no-new-privileges".to_string()])
        );
        assert_eq!(host.privileged, Some(false));
        // The runner is root with three capabilities; it runs the code as SANDBOX_USER.
        assert_eq!(body.user.as_deref(), Some("0:0"));
        assert_eq!(
            host.cap_add,
            Some(vec!["SETUID".into(), "SETGID".into(), "KILL".into()])
        );
        assert_eq!(host.runtime.as_deref(), Some("runc"));
    }

    #[test]
    fn limits_become_cgroup_settings() {
        let mut s = spec();
        s.limits.memory_mb = 256;
        s.limits.cpus = 0.5;
        s.limits.pids = 64;
        s.limits.disk_mb = 100;
        s.limits.runtime = Runtime::Runsc;
        s.limits.cpuset = Some("1".to_string());
        let host = container_config(&s).host_config.unwrap();
        assert_eq!(host.cpuset_cpus.as_deref(), Some("1"));
        assert_eq!(host.memory, Some(256 * MIB));
        assert_eq!(host.memory_swap, host.memory, "no swap beyond memory");
        assert_eq!(host.nano_cpus, Some(500_000_000));
        assert_eq!(host.pids_limit, Some(64));
        assert_eq!(host.runtime.as_deref(), Some("runsc"));
        let tmpfs = host.tmpfs.unwrap();
        assert!(tmpfs["/tmp"].contains("size=100m"));
        assert!(tmpfs[OUTPUT_DIR].contains("size=100m"));
        assert!(tmpfs[OUTPUT_DIR].contains("noexec"));
        let fsize = host
            .ulimits
            .unwrap()
            .into_iter()
            .find(|u| u.name.as_deref() == Some("fsize"))
            .unwrap();
        assert_eq!(fsize.hard, Some(100 * MIB));
    }

    #[test]
    fn inputs_are_mounted_read_only() {
        let host = container_config(&spec()).host_config.unwrap();
        let mounts = host.mounts.unwrap();
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0].target.as_deref(), Some(INPUT_DIR));
        assert_eq!(mounts[0].source.as_deref(), Some("/data/in"));
        assert_eq!(mounts[0].read_only, Some(true));
        let mut s = spec();
        s.input_dir = None;
        assert!(container_config(&s).host_config.unwrap().mounts.is_none());
    }

    #[test]
    fn the_package_cache_is_mounted_read_only() {
        let mut s = spec();
        s.packages_dir = Some(PathBuf::from("/data/packages"));
        let mounts = container_config(&s).host_config.unwrap().mounts.unwrap();
        assert_eq!(mounts.len(), 2);
        assert_eq!(mounts[1].target.as_deref(), Some(PACKAGES_MOUNT));
        assert_eq!(mounts[1].read_only, Some(true));
    }

    #[test]
    fn environment_is_fixed_and_free_of_secrets() {
        let env = container_config(&spec()).env.unwrap();
        for var in &env {
            for secret in ["DISCORD_TOKEN", "OPENAI_API_KEY", "MONGODB_URI"] {
                assert!(!var.starts_with(secret), "{var}");
            }
        }
        assert!(env.iter().any(|v| v == "HOME=/tmp"));
    }

    #[test]
    fn labels_identify_the_run_and_its_owner() {
        let labels = container_config(&spec()).labels.unwrap();
        assert_eq!(labels[MANAGED_LABEL], "true");
        assert_eq!(labels[RUN_ID_LABEL], "r1");
        assert_eq!(labels[OWNER_LABEL], "host:1:2");
    }

    #[test]
    fn preload_is_a_runner_flag() {
        let mut s = spec();
        assert!(
            !container_config(&s)
                .cmd
                .unwrap()
                .contains(&"--preload".to_string())
        );
        s.preload = true;
        s.pool_id = Some("p1".into());
        assert!(
            container_config(&s)
                .cmd
                .unwrap()
                .contains(&"--preload".to_string())
        );
        assert_eq!(container_config(&s).labels.unwrap()[POOL_LABEL], "p1");
    }
}
