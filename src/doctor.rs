//! `codebox doctor`: what works on this machine, and the fix for what does not.

use std::path::Path;

use crate::config::{Runtime, Settings};
use crate::sandbox::engine::{EngineError, Images, System};

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
pub async fn run_checks<E: Images + System>(
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
                let selected = settings.sandbox_runtime == runtime;
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
    match engine.image_labels(&settings.sandbox_image).await {
        Ok(Some(_)) => checks.push(Check::pass("sandbox image", settings.sandbox_image.clone())),
        Ok(None) => checks.push(Check::fail(
            "sandbox image",
            format!("{} is missing", settings.sandbox_image),
            format!(
                "codebox image build --tag {} (add --base codebox-base:bookworm on machines without a registry)",
                settings.sandbox_image
            ),
        )),
        Err(err) => checks.push(Check::fail(
            "sandbox image",
            err.to_string(),
            "bash scripts/setup.sh",
        )),
    }
    checks.push(data_dir_check(&settings.data_dir));
    checks
}

fn data_dir_check(dir: &Path) -> Check {
    let probe = std::fs::create_dir_all(dir).and_then(|_| tempfile::tempfile_in(dir));
    match probe {
        Ok(_) => Check::pass("data dir", format!("{} is writable", dir.display())),
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
            out.push_str(&format!("      {:width$}  fix: {fix}\n", "", width = width));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
