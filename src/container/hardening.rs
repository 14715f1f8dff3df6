//! Pure: the one hardened configuration every container codebox creates (a run, an
//! installer) starts from. Every line here is a sandbox rule; the reason sits next to it.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, HostConfig, Mount, MountBindOptions, MountType, ResourcesUlimits,
};

use super::{MANAGED_LABEL, OWNER_LABEL, RUN_ID_LABEL, SANDBOX_USER};

pub const MIB: i64 = 1024 * 1024;

/// Who the container's first process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privileges {
    /// The sandbox uid, no capabilities at all (the installer).
    Sandbox,
    /// The runner: root with only CAP_SETUID, CAP_SETGID and CAP_KILL, so that the code's
    /// process (forked before the job, then switched to the sandbox uid for good) can
    /// neither signal the runner nor open its descriptors or memory, under runc and gVisor
    /// alike; and the runner can still kill everything the code left behind.
    Runner,
}

/// Capabilities the runner keeps; nothing else exists in a run container.
pub const RUNNER_CAPABILITIES: [&str; 3] = ["SETUID", "SETGID", "KILL"];

/// The cgroup and process limits of one sandbox container.
#[derive(Debug, Clone, PartialEq)]
pub struct Resources {
    pub memory_mb: u64,
    pub cpus: f64,
    /// cpuset.cpus of the container's cgroup; None: any CPU.
    pub cpuset: Option<String>,
    pub pids: i64,
    /// The largest file a process may write; None leaves it to the writable mounts.
    pub max_file_bytes: Option<i64>,
}

/// What one kind of sandbox container (a run, an installer) decides for itself. Everything
/// else comes from `hardened_config` and is the same for every kind, so no kind can quietly
/// lose a protection the others keep.
#[derive(Debug, Clone)]
pub struct Hardened {
    pub image: String,
    pub cmd: Vec<String>,
    /// Added after `base_env()`; fixed, public values only.
    pub extra_env: Vec<String>,
    pub working_dir: String,
    pub hostname: String,
    pub run_id: String,
    /// Identifies the creating process, so a later start can reap what a dead one left.
    pub owner: String,
    /// Added to the labels every managed container carries.
    pub extra_labels: HashMap<String, String>,
    pub privileges: Privileges,
    /// Writable, size-limited scratch directories: (path inside, size in MiB).
    pub scratch: Vec<(String, u64)>,
    pub mounts: Vec<Mount>,
    pub resources: Resources,
    pub runtime: String,
}

/// The one hardened container configuration every sandbox container is created from.
pub fn hardened_config(spec: Hardened) -> ContainerCreateBody {
    let resources = &spec.resources;
    let memory = resources.memory_mb as i64 * MIB;

    // noexec/nosuid/nodev: the scratch space holds data, never programs or devices.
    let tmpfs: HashMap<String, String> = spec
        .scratch
        .iter()
        .map(|(path, size_mb)| {
            (
                path.clone(),
                format!("rw,nosuid,nodev,noexec,size={size_mb}m,mode=1777"),
            )
        })
        .collect();

    let mut ulimits = vec![ulimit("nofile", 1024)];
    if let Some(max) = resources.max_file_bytes {
        ulimits.push(ulimit("fsize", max));
    }
    ulimits.push(ulimit("core", 0));

    let host_config = HostConfig {
        // No container codebox starts has a network: the code cannot exfiltrate or fetch
        // anything, and the installer's one way out is codebox's proxy socket.
        network_mode: Some("none".to_string()),
        // The image cannot be altered; only the size-limited tmpfs and the kind's own
        // mounts are writable.
        readonly_rootfs: Some(true),
        tmpfs: (!tmpfs.is_empty()).then_some(tmpfs),
        mounts: (!spec.mounts.is_empty()).then_some(spec.mounts),
        // No capabilities (but the runner's three) and no privilege gain through setuid
        // binaries.
        cap_drop: Some(vec!["ALL".to_string()]),
        cap_add: match spec.privileges {
            Privileges::Sandbox => None,
            Privileges::Runner => Some(RUNNER_CAPABILITIES.iter().map(|c| c.to_string()).collect()),
        },
        security_opt: Some(vec!["no-new-privileges".to_string()]),
        privileged: Some(false),
        // Memory equal to memory+swap: no swap, so a memory bomb hits the OOM killer quickly.
        memory: Some(memory),
        memory_swap: Some(memory),
        oom_kill_disable: Some(false),
        nano_cpus: Some((resources.cpus * 1e9) as i64),
        cpuset_cpus: resources.cpuset.clone(),
        // Contains fork bombs inside this container only.
        pids_limit: Some(resources.pids),
        ulimits: Some(ulimits),
        shm_size: Some(64 * MIB),
        ipc_mode: Some("private".to_string()),
        init: Some(false),
        // We remove the container ourselves after collecting outputs; auto-remove would race.
        auto_remove: Some(false),
        runtime: Some(spec.runtime),
        ..Default::default()
    };

    let mut labels = HashMap::from([
        (MANAGED_LABEL.to_string(), "true".to_string()),
        (RUN_ID_LABEL.to_string(), spec.run_id),
        (OWNER_LABEL.to_string(), spec.owner),
    ]);
    labels.extend(spec.extra_labels);

    // A fixed environment: nothing of the orchestrator's (tokens, keys, URIs) is passed.
    let mut env = base_env();
    env.extend(spec.extra_env);

    ContainerCreateBody {
        image: Some(spec.image),
        cmd: Some(spec.cmd),
        entrypoint: Some(vec![]),
        env: Some(env),
        user: Some(match spec.privileges {
            Privileges::Sandbox => SANDBOX_USER.to_string(),
            Privileges::Runner => "0:0".to_string(),
        }),
        working_dir: Some(spec.working_dir),
        hostname: Some(spec.hostname),
        network_disabled: Some(true),
        labels: Some(labels),
        // The process starts before its job is known and reads it from stdin; every kind is
        // attached the same way, so one code path starts them all.
        attach_stdin: Some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        open_stdin: Some(true),
        stdin_once: Some(true),
        tty: Some(false),
        host_config: Some(host_config),
        ..Default::default()
    }
}

pub fn read_only_bind(source: &std::path::Path, target: &str) -> Mount {
    Mount {
        target: Some(target.to_string()),
        source: Some(source.to_string_lossy().into_owned()),
        typ: Some(MountType::BIND),
        read_only: Some(true),
        bind_options: Some(MountBindOptions {
            non_recursive: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn ulimit(name: &str, value: i64) -> ResourcesUlimits {
    ResourcesUlimits {
        name: Some(name.to_string()),
        soft: Some(value),
        hard: Some(value),
    }
}

/// The environment every sandbox container starts from. Fixed, public values only.
pub fn base_env() -> Vec<String> {
    [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME=/tmp",
        // Run uids have no passwd entry; getpass.getuser() and friends read these first.
        "USER=sandbox",
        "LOGNAME=sandbox",
        "LANG=C.UTF-8",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}
