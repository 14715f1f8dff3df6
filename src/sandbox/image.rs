//! Builds the sandbox image through the Docker API from a build context embedded in the
//! binary, so `codebox image build` works from any directory.

use std::collections::HashMap;

use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use super::protocol::PROTOCOL_VERSION;
use crate::container::engine::{BuildProgress, EngineError, Images};

/// Label on the built image: the hash of its build context and base, so an unchanged
/// context is not rebuilt (`--if-changed`).
pub const CONTEXT_HASH_LABEL: &str = "codebox.context_hash";
/// Label on the built image: the runner protocol version it speaks, so `codebox doctor`
/// can tell an image that is out of date without starting it.
pub const PROTOCOL_LABEL: &str = "codebox.protocol";

/// The files of the build context: (path in the context, contents).
pub const CONTEXT_FILES: &[(&str, &[u8])] = &[
    ("Dockerfile", include_bytes!("../../Dockerfile.sandbox")),
    (
        "runner.py",
        include_bytes!("../../images/sandbox/runner.py"),
    ),
    (
        "requirements.txt",
        include_bytes!("../../images/sandbox/requirements.txt"),
    ),
    (
        "codebox_files.py",
        include_bytes!("../../images/sandbox/codebox_files.py"),
    ),
    (
        "codebox_display.py",
        include_bytes!("../../images/sandbox/codebox_display.py"),
    ),
    (
        "codebox_backend.py",
        include_bytes!("../../images/sandbox/codebox_backend.py"),
    ),
    (
        "codebox_imports.py",
        include_bytes!("../../images/sandbox/codebox_imports.py"),
    ),
    (
        "codebox_pretty.py",
        include_bytes!("../../images/sandbox/codebox_pretty.py"),
    ),
    (
        "codebox_rich.py",
        include_bytes!("../../images/sandbox/codebox_rich.py"),
    ),
    (
        "codebox_charts.py",
        include_bytes!("../../images/sandbox/codebox_charts.py"),
    ),
    (
        "codebox_ipython.py",
        include_bytes!("../../images/sandbox/codebox_ipython.py"),
    ),
    (
        "codebox_session.py",
        include_bytes!("../../images/sandbox/codebox_session.py"),
    ),
    (
        "codebox_sharing.py",
        include_bytes!("../../images/sandbox/codebox_sharing.py"),
    ),
    (
        "codebox_documents.py",
        include_bytes!("../../images/sandbox/codebox_documents.py"),
    ),
    (
        "codebox_vision.py",
        include_bytes!("../../images/sandbox/codebox_vision.py"),
    ),
    (
        "filetypes.json",
        include_bytes!("../../images/sandbox/filetypes.json"),
    ),
    (
        "install_packages.py",
        include_bytes!("../../images/sandbox/install_packages.py"),
    ),
    (
        "codebox_runner/__init__.py",
        include_bytes!("../../images/sandbox/codebox_runner/__init__.py"),
    ),
    (
        "codebox_runner/accounting.py",
        include_bytes!("../../images/sandbox/codebox_runner/accounting.py"),
    ),
    (
        "codebox_runner/child.py",
        include_bytes!("../../images/sandbox/codebox_runner/child.py"),
    ),
    (
        "codebox_runner/constants.py",
        include_bytes!("../../images/sandbox/codebox_runner/constants.py"),
    ),
    (
        "codebox_runner/ending.py",
        include_bytes!("../../images/sandbox/codebox_runner/ending.py"),
    ),
    (
        "codebox_runner/main.py",
        include_bytes!("../../images/sandbox/codebox_runner/main.py"),
    ),
    (
        "codebox_runner/outputs.py",
        include_bytes!("../../images/sandbox/codebox_runner/outputs.py"),
    ),
    (
        "codebox_runner/packages.py",
        include_bytes!("../../images/sandbox/codebox_runner/packages.py"),
    ),
    (
        "codebox_runner/pictures.py",
        include_bytes!("../../images/sandbox/codebox_runner/pictures.py"),
    ),
    (
        "codebox_runner/privileges.py",
        include_bytes!("../../images/sandbox/codebox_runner/privileges.py"),
    ),
    (
        "codebox_runner/protocol.py",
        include_bytes!("../../images/sandbox/codebox_runner/protocol.py"),
    ),
    (
        "codebox_runner/session_io.py",
        include_bytes!("../../images/sandbox/codebox_runner/session_io.py"),
    ),
    (
        "codebox_runner/supervisor.py",
        include_bytes!("../../images/sandbox/codebox_runner/supervisor.py"),
    ),
    (
        "codebox_runner/user_files.py",
        include_bytes!("../../images/sandbox/codebox_runner/user_files.py"),
    ),
    (
        "codebox_runner/warmup.py",
        include_bytes!("../../images/sandbox/codebox_runner/warmup.py"),
    ),
];

/// Pure: whether an image's labels say it speaks this codebox's runner protocol.
pub fn speaks_this_protocol(labels: &HashMap<String, String>) -> bool {
    labels.get(PROTOCOL_LABEL) == Some(&PROTOCOL_VERSION.to_string())
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("cannot assemble the build context: {0}")]
    Context(std::io::Error),
    #[error("image build failed: {0}")]
    Build(String),
}

/// Pure: the build context as a tar archive, with fixed metadata so equal inputs give
/// equal bytes.
pub fn context_tar() -> Result<Vec<u8>, ImageError> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in CONTEXT_FILES {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_cksum();
        builder
            .append_data(&mut header, name, *data)
            .map_err(ImageError::Context)?;
    }
    builder.into_inner().map_err(ImageError::Context)
}

/// Pure: the hash that identifies one build: the context, the base image's name and, when
/// it is local, its id (a base rebuilt under the same tag is a new build).
pub fn context_hash(context: &[u8], base: &str, base_id: Option<&str>) -> String {
    let mut hasher = Sha256::new();
    hasher.update(context);
    hasher.update(b"\0base=");
    hasher.update(base.as_bytes());
    if let Some(id) = base_id {
        hasher.update(b"\0base_id=");
        hasher.update(id.as_bytes());
    }
    hex::encode(hasher.finalize())
}

pub struct BuildRequest<'a> {
    pub base: &'a str,
    pub tag: &'a str,
    /// Skip the build when an image with this tag already has the same context hash.
    pub if_changed: bool,
}

#[derive(Debug, PartialEq)]
pub enum BuildOutcome {
    Built,
    UpToDate,
}

/// Builds the image, passing every progress line to `progress`.
pub async fn build<E: Images>(
    engine: &E,
    request: BuildRequest<'_>,
    mut progress: impl FnMut(&str),
) -> Result<BuildOutcome, ImageError> {
    let context = context_tar()?;
    let base_id = engine.image_id(request.base).await?;
    let hash = context_hash(&context, request.base, base_id.as_deref());
    if request.if_changed
        && let Some(labels) = engine.image_labels(request.tag).await?
        && labels.get(CONTEXT_HASH_LABEL) == Some(&hash)
        && speaks_this_protocol(&labels)
    {
        return Ok(BuildOutcome::UpToDate);
    }
    let args = HashMap::from([("BASE_IMAGE".to_string(), request.base.to_string())]);
    let labels = HashMap::from([
        (CONTEXT_HASH_LABEL.to_string(), hash),
        (PROTOCOL_LABEL.to_string(), PROTOCOL_VERSION.to_string()),
    ]);
    let mut stream = engine.build(context, request.tag, args, labels);
    while let Some(item) = stream.next().await {
        match item? {
            BuildProgress::Log(line) => progress(&line),
            BuildProgress::Error(message) => return Err(ImageError::Build(message)),
        }
    }
    if engine.image_labels(request.tag).await?.is_none() {
        return Err(ImageError::Build(format!(
            "the daemon finished without producing {}",
            request.tag
        )));
    }
    Ok(BuildOutcome::Built)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_is_deterministic_and_complete() {
        let a = context_tar().unwrap();
        let b = context_tar().unwrap();
        assert_eq!(a, b);
        let mut archive = tar::Archive::new(&a[..]);
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "Dockerfile",
                "runner.py",
                "requirements.txt",
                "codebox_files.py",
                "codebox_display.py",
                "codebox_backend.py",
                "codebox_imports.py",
                "codebox_pretty.py",
                "codebox_rich.py",
                "codebox_charts.py",
                "codebox_ipython.py",
                "codebox_session.py",
                "codebox_sharing.py",
                "codebox_documents.py",
                "codebox_vision.py",
                "filetypes.json",
                "install_packages.py",
                "codebox_runner/__init__.py",
                "codebox_runner/accounting.py",
                "codebox_runner/child.py",
                "codebox_runner/constants.py",
                "codebox_runner/ending.py",
                "codebox_runner/main.py",
                "codebox_runner/outputs.py",
                "codebox_runner/packages.py",
                "codebox_runner/pictures.py",
                "codebox_runner/privileges.py",
                "codebox_runner/protocol.py",
                "codebox_runner/session_io.py",
                "codebox_runner/supervisor.py",
                "codebox_runner/user_files.py",
                "codebox_runner/warmup.py"
            ]
        );
    }

    #[test]
    fn the_runner_in_the_context_speaks_this_protocol() {
        let runner = CONTEXT_FILES
            .iter()
            .find(|(name, _)| *name == "codebox_runner/protocol.py")
            .map(|(_, data)| String::from_utf8_lossy(data))
            .unwrap();
        assert!(runner.contains(&format!("PROTOCOL_VERSION = {PROTOCOL_VERSION}\n")));
    }

    #[test]
    fn only_the_current_protocol_label_speaks_this_protocol() {
        let label = |v: &str| HashMap::from([(PROTOCOL_LABEL.to_string(), v.to_string())]);
        assert!(speaks_this_protocol(&label(&PROTOCOL_VERSION.to_string())));
        assert!(!speaks_this_protocol(&label("1")));
        assert!(!speaks_this_protocol(&HashMap::new()));
    }

    #[test]
    fn hash_depends_on_base() {
        let ctx = context_tar().unwrap();
        assert_ne!(context_hash(&ctx, "a", None), context_hash(&ctx, "b", None));
        assert_eq!(context_hash(&ctx, "a", None), context_hash(&ctx, "a", None));
        // The same tag rebuilt is another base.
        assert_ne!(
            context_hash(&ctx, "a", Some("sha256:1")),
            context_hash(&ctx, "a", Some("sha256:2"))
        );
    }
}
