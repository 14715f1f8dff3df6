//! `codebox files ...` and `codebox run --user`, as an operator types them, on both
//! metadata backends (embedded and the MongoDB-compatible server).

mod common;

use std::process::{Command, Output};

use common::codebox;
use serde_json::Value;

#[derive(Clone, Copy, Debug)]
enum Backend {
    Embedded,
    Mongo,
}

struct Cli {
    data: tempfile::TempDir,
    backend: Backend,
    database: String,
}

impl Cli {
    fn new(backend: Backend) -> Cli {
        Cli {
            data: tempfile::tempdir().unwrap(),
            backend,
            database: format!("codebox_cli_{}", codebox::store::ids::new_file_id()),
        }
    }

    fn cmd(&self) -> Command {
        let mut cmd = codebox(self.data.path());
        if let Backend::Mongo = self.backend {
            let uri = common::mongo_uri();
            cmd.env("MONGODB_URI", uri)
                .env("MONGODB_DATABASE", &self.database);
        }
        cmd
    }

    fn ok(&self, args: &[&str]) -> Value {
        let output = self.cmd().args(args).output().unwrap();
        assert!(
            output.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&output.stdout))
        })
    }

    fn fails(&self, args: &[&str]) -> Output {
        let output = self.cmd().args(args).output().unwrap();
        assert!(!output.status.success(), "{args:?} should fail");
        output
    }

    fn file(&self, name: &str, content: &[u8]) -> String {
        let path = self.data.path().join(name);
        std::fs::write(&path, content).unwrap();
        path.to_string_lossy().into_owned()
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn operator_flow(backend: Backend) {
    let cli = Cli::new(backend);
    let csv = cli.file("sales.csv", b"region,amount\nnorth,10\nsouth,32\n");
    let img = cli.file(
        "pic.png",
        b"\x89\x50\x4e\x47\x0d\x0a\x1a\x0a\x00\x00\x00\x0d\x49\x48\x44\x52\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89\x00\x00\x00\x0d\x49\x44\x41\x54\x78\xda\x63\x64\x60\xf8\x5f\x0f\x00\x02\x87\x01\x80\xeb\x47\xba\x92\x00\x00\x00\x00\x49\x45\x4e\x44\xae\x42\x60\x82",
    );
    let uploaded = cli.ok(&["files", "upload", "--user", "u1", "--json", &csv, &img]);
    let records = uploaded.as_array().unwrap();
    assert_eq!(records.len(), 2);
    let csv_id = records[0]["file_id"].as_str().unwrap().to_string();
    assert_eq!(records[0]["filename"], "sales.csv");
    assert_eq!(records[0]["file_type"], "csv");
    assert_eq!(records[0]["file_size"], 32);
    assert!(records[0]["expires_at"].is_string());
    let summary = records[0]["summary"].as_str().unwrap();
    assert!(summary.starts_with("2 rows x 2 columns"), "{summary}");
    assert_eq!(records[1]["file_type"], "png");
    assert!(
        records[1]["summary"]
            .as_str()
            .unwrap()
            .starts_with("image 1x1"),
        "{}",
        records[1]["summary"]
    );

    let listed = cli.ok(&["files", "list", "--user", "u1", "--json"]);
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert_eq!(listed[0]["file_id"], csv_id.as_str());
    assert_eq!(listed[0]["summary"], summary, "the summary was stored");
    assert_eq!(
        cli.ok(&["files", "list", "--user", "u2", "--json"]),
        Value::Array(vec![])
    );

    let shown = cli.ok(&["files", "show", &csv_id, "--json"]);
    assert_eq!(shown["user_id"], "u1");
    let not_yours = cli.fails(&["files", "show", &csv_id, "--user", "u2"]);
    assert!(
        stderr(&not_yours).contains("no file"),
        "{}",
        stderr(&not_yours)
    );

    let run = cli.ok(&[
        "run",
        "--user",
        "u1",
        "--file",
        &csv_id,
        "--json",
        "-c",
        &format!(
            "df = load_file({csv_id:?})\nprint(df.amount.sum())\ndf.to_excel('sales.xlsx', index=False)"
        ),
    ]);
    assert_eq!(run["status"], "ok", "{run}");
    assert_eq!(run["stdout"], "42\n");
    assert_eq!(run["output_files"][0]["name"], "sales.xlsx");
    let generated = &run["generated_files"][0];
    assert_eq!(generated["filename"], "sales.xlsx");
    assert_eq!(generated["file_type"], "xlsx");
    let generated_id = generated["file_id"].as_str().unwrap();
    let again = cli.ok(&[
        "run",
        "--user",
        "u1",
        "--json",
        "-c",
        &format!("print(int(load_file({generated_id:?})['amount'].sum()))"),
    ]);
    assert_eq!(again["stdout"], "42\n");

    let foreign = cli.fails(&["run", "--user", "u2", "--file", &csv_id, "-c", "print(1)"]);
    assert!(stderr(&foreign).contains(&csv_id), "{}", stderr(&foreign));

    let deleted = cli.ok(&["files", "delete", "--user", "u1", &csv_id, "--json"]);
    assert_eq!(deleted["file_id"], csv_id.as_str());
    let listed = cli.ok(&["files", "list", "--user", "u1", "--json"]);
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["file_id"].as_str().unwrap())
        .collect();
    assert!(!ids.contains(&csv_id.as_str()));
    assert!(ids.contains(&generated_id));
    cli.fails(&["files", "delete", "--user", "u1", &csv_id]);
}

fn limits_and_expiry(backend: Backend) {
    let cli = Cli::new(backend);
    let big = cli.file("big.bin", &vec![7u8; 2 * 1024 * 1024]);
    let mut cmd = cli.cmd();
    let refused = cmd
        .env("MAX_FILE_SIZE_MB", "1")
        .args(["files", "upload", "--user", "u1", "--no-summary", &big])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("larger than"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(
        cli.ok(&["files", "list", "--user", "u1", "--json"]),
        Value::Array(vec![])
    );

    let small = cli.file("small.txt", b"short-lived");
    let mut cmd = cli.cmd();
    let out = cmd
        .env("FILE_EXPIRATION_HOURS", "0.0001")
        .args([
            "files",
            "upload",
            "--user",
            "u1",
            "--no-summary",
            "--json",
            &small,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let id = serde_json::from_slice::<Value>(&out.stdout).unwrap()[0]["file_id"]
        .as_str()
        .unwrap()
        .to_string();
    std::thread::sleep(std::time::Duration::from_millis(600));
    assert_eq!(
        cli.ok(&["files", "list", "--user", "u1", "--json"]),
        Value::Array(vec![])
    );
    let swept = cli.ok(&["files", "sweep", "--json"]);
    assert_eq!(swept["expired_removed"], serde_json::json!([id]));
    let user_dir = cli.data.path().join("user_files/u1");
    let left = std::fs::read_dir(&user_dir).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "the sweep removed the file from disk");
}

#[test]
fn operator_flow_embedded() {
    operator_flow(Backend::Embedded);
}

#[test]
fn operator_flow_mongodb() {
    operator_flow(Backend::Mongo);
}

#[test]
fn limits_and_expiry_embedded() {
    limits_and_expiry(Backend::Embedded);
}

#[test]
fn limits_and_expiry_mongodb() {
    limits_and_expiry(Backend::Mongo);
}

/// Seven text files of 1600 emoji each used to fail every summary of the batch (JSON
/// escaping pushed the combined output over its cap): each summary stands alone now.
#[test]
fn every_file_of_an_emoji_batch_gets_its_summary() {
    let cli = Cli::new(Backend::Embedded);
    let paths: Vec<String> = (0..7)
        .map(|i| cli.file(&format!("emoji{i}.txt"), "😀".repeat(1600).as_bytes()))
        .collect();
    let mut args = vec!["files", "upload", "--user", "u1", "--json"];
    args.extend(paths.iter().map(String::as_str));
    let records = cli.ok(&args);
    let records = records.as_array().unwrap();
    assert_eq!(records.len(), 7);
    for record in records {
        let summary = record["summary"].as_str().unwrap_or("");
        assert!(!summary.is_empty(), "{record}");
    }
}
