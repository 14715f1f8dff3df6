//! Pure: the installer container. The only container with a network, so everything else
//! about it is as tight as a run container: same image, read-only root, no capabilities,
//! the sandbox uid, its own memory and pids limits, and no user file or code in reach;
//! its one writable mount is a fresh staging directory.

use std::collections::HashMap;
use std::path::PathBuf;

use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType};

use super::cache::STAGING_MOUNT;
use crate::sandbox::spec::{read_only_bind, ulimit};
use crate::sandbox::{MANAGED_LABEL, OWNER_LABEL, RUN_ID_LABEL, SANDBOX_USER};

pub const INSTALLER_SCRIPT: &str = "/opt/codebox/install_packages.py";
pub const ROLE_LABEL: &str = "codebox.role";
/// The distributions an installer container is installing, comma-separated.
pub const PACKAGES_LABEL: &str = "codebox.packages";
const CA_MOUNT: &str = "/etc/codebox/extra-ca.pem";
const MIB: i64 = 1024 * 1024;

#[derive(Debug, Clone)]
pub struct InstallerSpec {
    pub image: String,
    pub distributions: Vec<String>,
    pub staging_dir: PathBuf,
    pub memory_mb: u64,
    pub index_url: Option<String>,
    pub extra_ca_file: Option<PathBuf>,
    pub run_id: String,
    pub owner: String,
}

pub fn installer_config(spec: &InstallerSpec) -> ContainerCreateBody {
    let memory = spec.memory_mb as i64 * MIB;
    let mut cmd = vec![
        "python3".to_string(),
        "-u".to_string(),
        INSTALLER_SCRIPT.to_string(),
    ];
    // Names were validated by `names::normalize_distribution`: no option can hide here, and
    // the script passes each after pip's own options.
    cmd.extend(spec.distributions.iter().cloned());

    let mut env = vec![
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
        "HOME=/tmp".to_string(),
        "LANG=C.UTF-8".to_string(),
        "PIP_DISABLE_PIP_VERSION_CHECK=1".to_string(),
        "PIP_NO_INPUT=1".to_string(),
        // Debian marks its Python externally managed; a --prefix install into the staging
        // directory does not touch the image's packages.
        "PIP_BREAK_SYSTEM_PACKAGES=1".to_string(),
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
        target: Some(STAGING_MOUNT.to_string()),
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

    let host_config = HostConfig {
        // The default bridge: the index is reachable, the host's own loopback is not.
        network_mode: Some("bridge".to_string()),
        readonly_rootfs: Some(true),
        tmpfs: Some(HashMap::from([(
            "/tmp".to_string(),
            "rw,nosuid,nodev,noexec,size=256m,mode=1777".to_string(),
        )])),
        mounts: Some(mounts),
        cap_drop: Some(vec!["ALL".to_string()]),
        security_opt: Some(vec!["no-new-privileges".to_string()]),
        privileged: Some(false),
        memory: Some(memory),
        memory_swap: Some(memory),
        nano_cpus: Some(1_000_000_000),
        pids_limit: Some(128),
        ulimits: Some(vec![ulimit("nofile", 1024), ulimit("core", 0)]),
        ipc_mode: Some("private".to_string()),
        auto_remove: Some(false),
        // runc always: the registered gVisor runtime is started with --network=none, and
        // this container runs no user code, only pip on validated names, wheels only.
        runtime: Some("runc".to_string()),
        ..Default::default()
    };
    let labels = HashMap::from([
        (MANAGED_LABEL.to_string(), "true".to_string()),
        (RUN_ID_LABEL.to_string(), spec.run_id.clone()),
        (OWNER_LABEL.to_string(), spec.owner.clone()),
        (ROLE_LABEL.to_string(), "installer".to_string()),
        (PACKAGES_LABEL.to_string(), spec.distributions.join(",")),
    ]);
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: Some(cmd),
        entrypoint: Some(vec![]),
        env: Some(env),
        user: Some(SANDBOX_USER.to_string()),
        working_dir: Some("/tmp".to_string()),
        hostname: Some("installer".to_string()),
        labels: Some(labels),
        // Attached like a run container (one code path); the host closes stdin at once.
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

fn plain_http_host(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("http://")?;
    let authority = rest.split('/').next()?;
    let host = authority.rsplit('@').next()?;
    Some(host.split(':').next().unwrap_or(host)).filter(|h| !h.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> InstallerSpec {
        InstallerSpec {
            image: "codebox-sandbox:latest".into(),
            distributions: vec!["tabulate".into(), "python-docx".into()],
            staging_dir: PathBuf::from("/data/packages-staging/abc"),
            memory_mb: 512,
            index_url: None,
            extra_ca_file: None,
            run_id: "i1".into(),
            owner: "host:1:2".into(),
        }
    }

    #[test]
    fn only_the_staging_directory_is_writable_and_no_user_data_is_mounted() {
        let body = installer_config(&spec());
        let host = body.host_config.unwrap();
        assert_eq!(host.readonly_rootfs, Some(true));
        let mounts = host.mounts.unwrap();
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0].target.as_deref(), Some(STAGING_MOUNT));
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_string()]));
        assert_eq!(host.memory, Some(512 * MIB));
        assert_eq!(host.network_mode.as_deref(), Some("bridge"));
        assert_eq!(body.user.as_deref(), Some(SANDBOX_USER));
        assert_eq!(
            body.labels.unwrap()[ROLE_LABEL],
            "installer",
            "doctor and the reaper can tell it apart"
        );
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
