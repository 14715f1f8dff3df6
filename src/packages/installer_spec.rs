//! Pure: the installer container. It has the run container's hardening
//! (`container::hardening::hardened_config`): same image, no network, read-only root, no
//! capabilities, the sandbox uid, a fixed environment, its own memory and pids limits, and
//! no user file or code in reach. pip reaches the index through a proxy on the container's
//! loopback whose only way out is codebox's `egress` proxy, over a Unix socket in the
//! staging directory, which connects only to the index's hosts.
//!
//! Its disk is bounded before anything reaches the host: pip downloads and unpacks into
//! `WORK_MOUNT`, a tmpfs of PACKAGE_INSTALL_MAX_MB, and the script copies a finished
//! installation into `RESULT_MOUNT`, the host's fresh staging directory, only after
//! measuring it against `copy_budget_bytes`. A tmpfs alone would vanish with the container
//! and a size check alone would come after the bytes landed; together, at most the budget
//! ever reaches host disk. An older script, which knows neither, writes to the image's
//! /opt/codebox-staging, on the read-only root: it fails, never unbounded.

use std::collections::HashMap;
use std::path::PathBuf;

use bollard::models::{ContainerCreateBody, Mount, MountType};

use super::egress_rules::Upstreams;
use crate::container::hardening::{
    Hardened, Privileges, Resources, hardened_config, read_only_bind,
};

pub const INSTALLER_SCRIPT: &str = "/opt/codebox/install_packages.py";
pub const ROLE_LABEL: &str = "codebox.role";
/// The distributions an installer container is installing, comma-separated.
pub const PACKAGES_LABEL: &str = "codebox.packages";
const CA_MOUNT: &str = "/etc/codebox/extra-ca.pem";
/// Scratch space for what else writes to /tmp; pip's own temporary files go to the work
/// tmpfs, counted in the installation's limit.
const SCRATCH_MB: u64 = 256;
/// Where pip installs, inside the container: a tmpfs of the install limit. A path the image
/// does not have, so the tmpfs gets its own mode (1777) rather than an image directory's.
pub const WORK_MOUNT: &str = "/opt/codebox-work";
/// Where the installer sees the host's staging directory: finished, measured installations
/// only.
pub const RESULT_MOUNT: &str = "/opt/codebox-installed";
/// The script's settings: where pip works, where results go, and how many bytes they may
/// take in all.
pub const WORK_ENV: &str = "CODEBOX_INSTALL_WORK";
pub const RESULT_ENV: &str = "CODEBOX_INSTALL_OUT";
pub const BUDGET_ENV: &str = "CODEBOX_INSTALL_MAX_BYTES";
/// The Unix socket of codebox's proxy, in the staging directory, and where the script's
/// forwarder listens for pip on the container's loopback.
pub const EGRESS_SOCKET_NAME: &str = ".egress.sock";
pub const EGRESS_SOCKET_ENV: &str = "CODEBOX_EGRESS_SOCKET";
pub const EGRESS_PORT_ENV: &str = "CODEBOX_EGRESS_PORT";
const EGRESS_PORT: u16 = 3128;

#[derive(Debug, Clone)]
pub struct InstallerSpec {
    pub image: String,
    pub distributions: Vec<String>,
    /// The host directory the results are copied into.
    pub staging_dir: PathBuf,
    /// pip's memory; the work tmpfs is charged to the container on top of it.
    pub memory_mb: u64,
    /// Size of the work tmpfs: everything one installer container downloads and unpacks.
    pub staging_mb: u64,
    /// The most the results may take on the host, all distributions together.
    pub copy_budget_bytes: u64,
    pub index_url: Option<String>,
    /// Where codebox's proxy lets the installer connect.
    pub upstreams: Upstreams,
    pub extra_ca_file: Option<PathBuf>,
    pub run_id: String,
    pub owner: String,
}

impl InstallerSpec {
    /// Where codebox listens for the installer's connections, on the host.
    pub fn egress_socket(&self) -> PathBuf {
        self.staging_dir.join(EGRESS_SOCKET_NAME)
    }
}

pub fn installer_config(spec: &InstallerSpec) -> ContainerCreateBody {
    let mut cmd = vec![
        "python3".to_string(),
        "-u".to_string(),
        INSTALLER_SCRIPT.to_string(),
    ];
    // Names were validated by `names::normalize_distribution`: no option can hide here, and
    // the script passes each after pip's own options.
    cmd.extend(spec.distributions.iter().cloned());

    let mut env = vec![
        "PIP_DISABLE_PIP_VERSION_CHECK=1".to_string(),
        "PIP_NO_INPUT=1".to_string(),
        // Debian marks its Python externally managed; a --prefix install into the staging
        // directory does not touch the image's packages.
        "PIP_BREAK_SYSTEM_PACKAGES=1".to_string(),
        format!("{WORK_ENV}={WORK_MOUNT}"),
        format!("{RESULT_ENV}={RESULT_MOUNT}"),
        format!("{BUDGET_ENV}={}", spec.copy_budget_bytes),
        format!("{EGRESS_SOCKET_ENV}={RESULT_MOUNT}/{EGRESS_SOCKET_NAME}"),
        format!("{EGRESS_PORT_ENV}={EGRESS_PORT}"),
        format!("PIP_PROXY=http://127.0.0.1:{EGRESS_PORT}"),
    ];
    if let Some(url) = &spec.index_url {
        env.push(format!("PIP_INDEX_URL={url}"));
        // An operator who configured a plain-http index (a mirror on the LAN, a test index)
        // has chosen to trust it.
        if let Some(host) = plain_http_host(url) {
            env.push(format!("PIP_TRUSTED_HOST={host}"));
        }
    }
    let mut mounts = vec![Mount {
        target: Some(RESULT_MOUNT.to_string()),
        source: Some(spec.staging_dir.to_string_lossy().into_owned()),
        typ: Some(MountType::BIND),
        read_only: Some(false),
        ..Default::default()
    }];
    if let Some(ca) = &spec.extra_ca_file {
        mounts.push(read_only_bind(ca, CA_MOUNT));
        env.push(format!("PIP_CERT={CA_MOUNT}"));
        env.push(format!("SSL_CERT_FILE={CA_MOUNT}"));
        env.push(format!("REQUESTS_CA_BUNDLE={CA_MOUNT}"));
    }

    hardened_config(Hardened {
        image: spec.image.clone(),
        cmd,
        extra_env: env,
        working_dir: "/tmp".to_string(),
        hostname: "installer".to_string(),
        run_id: spec.run_id.clone(),
        owner: spec.owner.clone(),
        extra_labels: HashMap::from([
            (ROLE_LABEL.to_string(), "installer".to_string()),
            (PACKAGES_LABEL.to_string(), spec.distributions.join(",")),
        ]),
        // pip runs as the sandbox uid with no capability at all.
        privileges: Privileges::Sandbox,
        scratch: vec![
            ("/tmp".to_string(), SCRATCH_MB),
            (WORK_MOUNT.to_string(), spec.staging_mb),
        ],
        mounts,
        resources: Resources {
            // tmpfs pages are charged to the container's memory: without the work tmpfs's
            // size on top, a full work area would leave pip nothing and end in the OOM killer
            // instead of a clear "too large".
            memory_mb: spec.memory_mb.saturating_add(spec.staging_mb),
            cpus: 1.0,
            // Installs run outside any run's limits (SANDBOX_CPUSET covers runs only).
            cpuset: None,
            pids: 128,
            // Wheels of the large scientific distributions exceed any small per-file bound;
            // the work tmpfs bounds them all together.
            max_file_bytes: None,
        },
        // runc always: gVisor does not connect to a host's Unix socket on a bind mount
        // unless told to, and this container runs no user code, only pip on validated
        // names, wheels only.
        runtime: "runc".to_string(),
    })
}

fn plain_http_host(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("http://")?;
    let authority = rest.split('/').next()?;
    let host = authority.rsplit('@').next()?;
    Some(host.split(':').next().unwrap_or(host)).filter(|h| !h.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::hardening::{MIB, base_env};
    use crate::container::{MANAGED_LABEL, OWNER_LABEL, RUN_ID_LABEL, SANDBOX_USER};
    use crate::sandbox::spec::{ContainerSpec, container_config};

    fn spec() -> InstallerSpec {
        InstallerSpec {
            image: "codebox-sandbox:latest".into(),
            distributions: vec!["tabulate".into(), "python-docx".into()],
            staging_dir: PathBuf::from("/data/packages-staging/abc"),
            memory_mb: 512,
            staging_mb: 100,
            copy_budget_bytes: 50 * 1024 * 1024,
            index_url: None,
            upstreams: Upstreams::for_index(None, &[]),
            extra_ca_file: None,
            run_id: "i1".into(),
            owner: "host:1:2".into(),
        }
    }

    #[test]
    fn pip_writes_to_a_bounded_tmpfs_and_the_host_gets_only_the_result_directory() {
        let body = installer_config(&spec());
        let host = body.host_config.unwrap();
        assert_eq!(host.readonly_rootfs, Some(true));
        let mounts = host.mounts.unwrap();
        assert_eq!(mounts.len(), 1, "no user data, one host directory");
        assert_eq!(mounts[0].target.as_deref(), Some(RESULT_MOUNT));
        assert_eq!(
            mounts[0].source.as_deref(),
            Some("/data/packages-staging/abc")
        );
        let tmpfs = host.tmpfs.unwrap();
        assert!(
            tmpfs[WORK_MOUNT].contains("size=100m") && tmpfs[WORK_MOUNT].contains("mode=1777"),
            "{}",
            tmpfs[WORK_MOUNT]
        );
        let env = body.env.unwrap();
        assert!(env.contains(&format!("{WORK_ENV}={WORK_MOUNT}")));
        assert!(env.contains(&format!("{RESULT_ENV}={RESULT_MOUNT}")));
        assert!(env.contains(&format!("{BUDGET_ENV}={}", 50 * 1024 * 1024)));
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_string()]));
        assert_eq!(
            host.memory,
            Some((512 + 100) * MIB),
            "pip's memory plus the tmpfs charged to it"
        );
        assert_eq!(host.network_mode.as_deref(), Some("none"));
        assert!(env.contains(&format!(
            "{EGRESS_SOCKET_ENV}={RESULT_MOUNT}/{EGRESS_SOCKET_NAME}"
        )));
        assert!(env.contains(&"PIP_PROXY=http://127.0.0.1:3128".to_string()));
        assert_eq!(
            spec().egress_socket(),
            PathBuf::from("/data/packages-staging/abc/.egress.sock"),
            "in the directory the installer sees at RESULT_MOUNT"
        );
        assert_eq!(body.user.as_deref(), Some(SANDBOX_USER));
        assert_eq!(
            body.labels.unwrap()[ROLE_LABEL],
            "installer",
            "doctor and the reaper can tell it apart"
        );
    }

    fn run_container() -> ContainerCreateBody {
        container_config(&ContainerSpec::sample(10001))
    }

    fn without_size(tmpfs_options: &str) -> Vec<&str> {
        tmpfs_options
            .split(',')
            .filter(|option| !option.starts_with("size="))
            .collect()
    }

    /// Every field may differ only where it is listed here, with a reason; anything added to
    /// one kind's hardening and not the other's fails this test.
    #[test]
    fn the_hardening_equals_the_run_containers_except_mounts_and_limits() {
        let run = run_container();
        let run_host = run.host_config.clone().unwrap();
        let mut installer = installer_config(&spec());
        let mut host = installer.host_config.take().unwrap();

        // Its own mounts: the result directory, never user data.
        host.mounts = run_host.mounts.clone();

        // Its own limits, enforced the same way: no swap, a pids and a CPU bound.
        assert_eq!(host.memory_swap, host.memory);
        assert!(host.pids_limit.is_some_and(|pids| pids > 0));
        assert!(host.nano_cpus.is_some_and(|cpus| cpus > 0));
        host.memory = run_host.memory;
        host.memory_swap = run_host.memory_swap;
        host.pids_limit = run_host.pids_limit;
        host.nano_cpus = run_host.nano_cpus;

        // The same ulimits, except no single-file bound: wheels can be large.
        let run_ulimits: Vec<_> = run_host
            .ulimits
            .clone()
            .unwrap()
            .into_iter()
            .filter(|u| u.name.as_deref() != Some("fsize"))
            .collect();
        assert_eq!(host.ulimits.take().unwrap(), run_ulimits);
        host.ulimits = run_host.ulimits.clone();

        // Scratch and work space mounted with the same options; only their sizes are their own.
        let run_tmpfs = run_host.tmpfs.clone().unwrap();
        let tmpfs = host.tmpfs.take().unwrap();
        assert_eq!(tmpfs.len(), 2);
        for options in tmpfs.values() {
            assert_eq!(without_size(options), without_size(&run_tmpfs["/tmp"]));
        }
        host.tmpfs = Some(run_tmpfs);

        // pip runs as the sandbox uid without a single capability; the run container's
        // first process is the runner (root with three capabilities, the code dropped to
        // the sandbox uid).
        assert_eq!(installer.user.as_deref(), Some(SANDBOX_USER));
        assert_eq!(host.cap_add, None);
        installer.user = run.user.clone();
        host.cap_add = run_host.cap_add.clone();

        // runc whatever the run runtime: the proxy's socket is on a bind mount.
        assert_eq!(host.runtime.as_deref(), Some("runc"));
        host.runtime = run_host.runtime.clone();

        // What it runs and where; a fixed environment starting from the same base; the
        // managed labels plus its role.
        let env = installer.env.take().unwrap();
        assert_eq!(env[..base_env().len()], base_env());
        let labels = installer.labels.take().unwrap();
        assert_eq!(labels[MANAGED_LABEL], "true");
        assert_eq!(labels[RUN_ID_LABEL], "i1");
        assert_eq!(labels[OWNER_LABEL], "host:1:2");
        installer.env = run.env.clone();
        installer.labels = run.labels.clone();
        installer.cmd = run.cmd.clone();
        installer.working_dir = run.working_dir.clone();
        installer.hostname = run.hostname.clone();

        installer.host_config = Some(host);
        assert_eq!(installer, run);
    }

    #[test]
    fn distributions_follow_the_script() {
        let cmd = installer_config(&spec()).cmd.unwrap();
        assert_eq!(&cmd[2], INSTALLER_SCRIPT);
        assert_eq!(&cmd[3..], ["tabulate", "python-docx"]);
    }

    #[test]
    fn index_and_ca_become_pip_settings() {
        let mut s = spec();
        s.index_url = Some("http://172.17.0.1:8080/simple/".into());
        s.extra_ca_file = Some(PathBuf::from("/etc/ssl/certs/ca-certificates.crt"));
        let body = installer_config(&s);
        let env = body.env.unwrap();
        assert!(env.contains(&"PIP_INDEX_URL=http://172.17.0.1:8080/simple/".to_string()));
        assert!(env.contains(&"PIP_TRUSTED_HOST=172.17.0.1".to_string()));
        assert!(env.contains(&format!("PIP_CERT={CA_MOUNT}")));
        let mounts = body.host_config.unwrap().mounts.unwrap();
        assert_eq!(mounts[1].read_only, Some(true));
    }

    #[test]
    fn https_indexes_are_not_marked_trusted() {
        assert_eq!(plain_http_host("https://pypi.org/simple"), None);
        assert_eq!(
            plain_http_host("http://user:pw@mirror.lan:3141/root/pypi"),
            Some("mirror.lan")
        );
    }
}
