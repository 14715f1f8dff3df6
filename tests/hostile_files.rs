//! Another local account on the host (uid 65534) against what codebox keeps: a user's
//! uploaded file, the session snapshot that holds a secret the code set, the database.
//! It reads none of them, while the user's own runs still read the file and the secret,
//! under runc and gVisor; an install that was left readable is tightened at start, and
//! `codebox doctor` says so.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::codebox;
use serde_json::Value;

const SECRET: &str = "sk-alice-private";
const SALARY: &str = "alice,123456";

fn ok(data: &Path, args: &[&str]) -> Value {
    common::cli_json(data, args)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn regular_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            found.extend(regular_files(&entry.path()));
        } else if kind.is_file() {
            found.push(entry.path());
        }
    }
    found
}

/// Whether uid 65534 can read `path` (`cat` as that account).
fn nobody_reads(path: &Path) -> bool {
    Command::new("cat")
        .arg(path)
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap()
        .status
        .success()
}

/// A DATA_DIR inside a directory every account may enter, as /var/lib is.
fn open_parent() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    root
}

fn users_data_stays_theirs(runtime: &str) {
    let root = open_parent();
    let data = root.path().join("data");
    let csv = root.path().join("salaries.csv");
    std::fs::write(&csv, format!("name,salary\n{SALARY}\n")).unwrap();
    let uploaded = ok(
        &data,
        &[
            "files",
            "upload",
            "--user",
            "alice",
            "--json",
            csv.to_str().unwrap(),
        ],
    );
    assert_eq!(uploaded[0]["filename"], "salaries.csv");
    let session = ["--user", "alice", "--session", "s", "--runtime", runtime];
    let first = ok(
        &data,
        &[
            &["run", "--json"][..],
            &session,
            &["-c", &format!("secret_token = '{SECRET}'")],
        ]
        .concat(),
    );
    assert_eq!(first["status"], "ok", "{first}");
    assert_eq!(first["session"]["saved"], true, "{first}");

    // Everything secret is on disk, and no other account reads any of it.
    let files = regular_files(&data);
    let holding = |needle: &str| {
        files
            .iter()
            .filter(|f| String::from_utf8_lossy(&std::fs::read(f).unwrap()).contains(needle))
            .cloned()
            .collect::<Vec<_>>()
    };
    let stored_csv = holding(SALARY);
    let snapshot = holding(SECRET);
    assert!(!stored_csv.is_empty() && !snapshot.is_empty(), "{files:?}");
    let database = data.join("codebox.sqlite3");
    assert!(database.exists());
    assert_eq!(mode(&data), 0o700);
    for file in &files {
        assert!(!nobody_reads(file), "uid 65534 read {}", file.display());
        if !file.starts_with(data.join("packages")) {
            assert_eq!(
                mode(file) & 0o007,
                0,
                "{} is {:o}",
                file.display(),
                mode(file)
            );
        }
    }
    assert_eq!(mode(&database) & 0o077, 0, "{:o}", mode(&database));
    for stored in stored_csv.iter().chain(&snapshot) {
        assert_eq!(mode(stored), 0o640, "{}", stored.display());
    }

    // The user's own next run still reads its file and its variables.
    let code = format!(
        "import os\nprint(secret_token)\nfor name in sorted(os.listdir('{}')):\n    \
         path = os.path.join('{}', name)\n    \
         if os.path.isfile(path) and not name.startswith('.'):\n        \
         print(open(path).read())",
        codebox::sandbox::INPUT_DIR,
        codebox::sandbox::INPUT_DIR
    );
    let second = ok(
        &data,
        &[&["run", "--json"][..], &session, &["-c", &code]].concat(),
    );
    let stdout = second["stdout"].as_str().unwrap();
    assert!(
        stdout.contains(SECRET) && stdout.contains(SALARY),
        "{runtime}: {second}"
    );
}

#[test]
fn users_data_stays_theirs_under_runc() {
    users_data_stays_theirs("runc");
}

#[test]
fn users_data_stays_theirs_under_gvisor() {
    users_data_stays_theirs("runsc");
}

#[test]
fn an_install_left_readable_is_tightened_at_start_and_doctor_says_so() {
    let root = open_parent();
    let data = root.path().join("data");
    let csv = root.path().join("a.csv");
    std::fs::write(&csv, "x\n1\n").unwrap();
    ok(
        &data,
        &[
            "files",
            "upload",
            "--user",
            "bob",
            "--json",
            csv.to_str().unwrap(),
        ],
    );
    let database = data.join("codebox.sqlite3");
    // As an older codebox left it.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&database, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(nobody_reads(&database));
    ok(&data, &["files", "list", "--user", "bob", "--json"]);
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&database), 0o600);
    assert!(!nobody_reads(&database));

    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let doctor = codebox(&data).arg("doctor").output().unwrap();
    let said = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        said.contains("was 755") && said.contains("tightened to 0700"),
        "{said}"
    );
    assert_eq!(mode(&data), 0o700);
    let again = codebox(&data).arg("doctor").output().unwrap();
    let said = String::from_utf8_lossy(&again.stdout);
    assert!(said.contains("is writable and 0700"), "{said}");
}
