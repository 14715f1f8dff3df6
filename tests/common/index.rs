//! A local Python package index (PEP 503 simple API) serving wheels built in the test,
//! listening on the host's bridge address (codebox's installer proxy connects to it from the
//! host). It counts every project page it
//! serves and every wheel download, so a test can tell how many installations really
//! happened, and whether the index was asked at all.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use super::bridge::bridge_host;

#[derive(Default)]
struct Shelf {
    /// project (normalized) -> (wheel file name, bytes)
    wheels: HashMap<String, (String, Vec<u8>)>,
    /// projects listed with no file at all: pip finds nothing to install
    empty: Vec<String>,
    downloads: HashMap<String, usize>,
    /// project page requests, by the project asked for (listed or not)
    pages: HashMap<String, usize>,
    /// wheel file name -> how long its download is held back
    delays: HashMap<String, Duration>,
    /// project -> a wheel link to another server (what a hostile or careless index serves)
    foreign: HashMap<String, String>,
}

#[derive(Clone)]
pub struct LocalIndex {
    shelf: Arc<Mutex<Shelf>>,
    /// e.g. http://172.17.0.1:PORT/simple/
    pub url: String,
}

/// Builds a pure-Python wheel whose module `module` runs `source` on import.
pub fn build_wheel(dir: &Path, module: &str, version: &str, source: &str) -> (String, Vec<u8>) {
    build_wheel_with_payload(dir, module, version, source, 0)
}

/// The same, carrying `payload_mb` MiB of zeros in `module/payload.bin`: compressed, the
/// wheel stays small; installed, it takes the whole size.
pub fn build_wheel_with_payload(
    dir: &Path,
    module: &str,
    version: &str,
    source: &str,
    payload_mb: usize,
) -> (String, Vec<u8>) {
    build_wheel_full(dir, module, version, source, payload_mb, "")
}

/// A wheel that also installs `<module>-hook.pth` with `pth` at the top of its site
/// directory: the shape of the dependency-confusion attack (a `.pth` line starting with
/// `import` runs wherever `site` processes that directory).
pub fn build_wheel_with_pth(
    dir: &Path,
    module: &str,
    version: &str,
    source: &str,
    pth: &str,
) -> (String, Vec<u8>) {
    build_wheel_full(dir, module, version, source, 0, pth)
}

fn build_wheel_full(
    dir: &Path,
    module: &str,
    version: &str,
    source: &str,
    payload_mb: usize,
    pth: &str,
) -> (String, Vec<u8>) {
    let file = format!("{module}-{version}-py3-none-any.whl");
    let script = r#"
import base64, hashlib, sys, zipfile
out, module, version, source, payload_mb, pth = sys.argv[1:7]
dist = module + "-" + version + ".dist-info"
files = {
    module + "/__init__.py": source.encode(),
    dist + "/METADATA": ("Metadata-Version: 2.1\nName: %s\nVersion: %s\n" % (module.replace("_", "-"), version)).encode(),
    dist + "/WHEEL": b"Wheel-Version: 1.0\nGenerator: codebox-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
if pth:
    files[module + "-hook.pth"] = pth.encode()
if int(payload_mb):
    files[module + "/payload.bin"] = bytes(int(payload_mb) * 1024 * 1024)
record = []
with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as z:
    for name, data in files.items():
        z.writestr(name, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append("%s,sha256=%s,%d" % (name, digest, len(data)))
    record.append(dist + "/RECORD,,")
    z.writestr(dist + "/RECORD", "\n".join(record) + "\n")
"#;
    let path = dir.join(&file);
    let status = Command::new("python3")
        .args(["-c", script])
        .arg(&path)
        .args([module, version, source, &payload_mb.to_string(), pth])
        .status()
        .expect("python3 builds the test wheel");
    assert!(status.success());
    (file, std::fs::read(&path).unwrap())
}

impl LocalIndex {
    pub async fn start() -> LocalIndex {
        let shelf = Arc::new(Mutex::new(Shelf::default()));
        let app = Router::new()
            .route("/simple/{project}/", get(project_page))
            .route("/files/{file}", get(download))
            .with_state(shelf.clone());
        let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        LocalIndex {
            shelf,
            url: format!("http://{}:{port}/simple/", bridge_host()),
        }
    }

    pub fn add_wheel(&self, project: &str, wheel: (String, Vec<u8>)) {
        self.shelf
            .lock()
            .unwrap()
            .wheels
            .insert(project.to_string(), wheel);
    }

    /// Holds back every download of the project's wheel by `delay`, so an installation
    /// takes at least that long however fast the machine is.
    pub fn delay_downloads(&self, project: &str, delay: Duration) {
        let mut shelf = self.shelf.lock().unwrap();
        let file = shelf.wheels[project].0.clone();
        shelf.delays.insert(file, delay);
    }

    /// Lists `project` with one wheel, named by the last part of `url`, which points elsewhere.
    pub fn add_foreign_link(&self, project: &str, url: &str) {
        self.shelf
            .lock()
            .unwrap()
            .foreign
            .insert(project.to_string(), url.to_string());
    }

    pub fn add_empty_project(&self, project: &str) {
        self.shelf.lock().unwrap().empty.push(project.to_string());
    }

    /// How many times a project's page was asked for, whether the index has it or not.
    pub fn page_requests(&self, project: &str) -> usize {
        let shelf = self.shelf.lock().unwrap();
        shelf.pages.get(project).copied().unwrap_or(0)
    }

    /// Every request the index answered: project pages and downloads.
    pub fn total_requests(&self) -> usize {
        let shelf = self.shelf.lock().unwrap();
        shelf.pages.values().sum::<usize>() + shelf.downloads.values().sum::<usize>()
    }

    /// How many times a project's wheel was downloaded.
    pub fn downloads(&self, project: &str) -> usize {
        let shelf = self.shelf.lock().unwrap();
        let Some((file, _)) = shelf.wheels.get(project) else {
            return 0;
        };
        shelf.downloads.get(file).copied().unwrap_or(0)
    }
}

async fn project_page(
    State(shelf): State<Arc<Mutex<Shelf>>>,
    UrlPath(project): UrlPath<String>,
) -> Response {
    let mut shelf = shelf.lock().unwrap();
    *shelf.pages.entry(project.clone()).or_default() += 1;
    if let Some((file, _)) = shelf.wheels.get(&project) {
        let body = format!("<html><body><a href=\"/files/{file}\">{file}</a></body></html>");
        return Html(body).into_response();
    }
    if let Some(url) = shelf.foreign.get(&project) {
        let file = url.rsplit('/').next().unwrap_or_default();
        let body = format!("<html><body><a href=\"{url}\">{file}</a></body></html>");
        return Html(body).into_response();
    }
    if shelf.empty.contains(&project) {
        return Html("<html><body></body></html>".to_string()).into_response();
    }
    StatusCode::NOT_FOUND.into_response()
}

async fn download(
    State(shelf): State<Arc<Mutex<Shelf>>>,
    UrlPath(file): UrlPath<String>,
) -> Response {
    let (bytes, delay) = {
        let mut shelf = shelf.lock().unwrap();
        let Some(bytes) = shelf
            .wheels
            .values()
            .find(|(name, _)| *name == file)
            .map(|(_, bytes)| bytes.clone())
        else {
            return StatusCode::NOT_FOUND.into_response();
        };
        let delay = shelf.delays.get(&file).copied().unwrap_or_default();
        *shelf.downloads.entry(file).or_default() += 1;
        (bytes, delay)
    };
    tokio::time::sleep(delay).await;
    bytes.into_response()
}
