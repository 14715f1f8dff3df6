//! Pure: what the model sees after a run. Structured, honest about truncation, within a
//! token budget (the tails of stdout and stderr are kept: that is where results and errors
//! are), and scrubbed of any secret the bot knows.

use serde_json::{Value, json};

use super::tokens::{Encoding, tail_within};
use crate::run_result::GeneratedFile;
use crate::sandbox::{ExecutionResult, Status};

#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub stdout_tokens: usize,
    pub stderr_tokens: usize,
}

impl Default for Budget {
    fn default() -> Budget {
        Budget {
            stdout_tokens: 3000,
            stderr_tokens: 1500,
        }
    }
}

pub fn render(
    result: &ExecutionResult,
    generated: &[GeneratedFile],
    encoding: Encoding,
    budget: Budget,
    secrets: &[String],
) -> String {
    let (stdout, stdout_cut) = tail_within(encoding, &result.stdout, budget.stdout_tokens);
    let (stderr, stderr_cut) = tail_within(encoding, &result.stderr, budget.stderr_tokens);
    let mut value = json!({
        "status": result.status.as_str(),
        "exit_code": result.exit_code,
        "execution_ms": result.execution_ms.round(),
        "stdout": stdout,
        "stdout_truncated": result.stdout_truncated || stdout_cut,
        "stderr": stderr,
        "stderr_truncated": result.stderr_truncated || stderr_cut,
        "error": result.error.as_ref().map(|e| json!({"type": e.kind, "message": e.message})),
        "generated_files": generated.iter().map(|f| json!({
            "file_id": f.file_id, "filename": f.filename, "file_type": f.file_type, "size": f.size,
        })).collect::<Vec<Value>>(),
    });
    // Only what says something: a small model finds the output in a short result, and
    // every model pays for the tokens of `false`, `null` and `[]`.
    if let Some(fields) = value.as_object_mut() {
        fields.retain(|key, field| match key.as_str() {
            "status" | "stdout" => true,
            "exit_code" => field != &json!(0),
            _ => {
                !matches!(field, Value::Null | Value::Bool(false))
                    && field != &json!([])
                    && field != &json!("")
            }
        });
    }
    if let Some(session) = &result.session {
        let notes = session.notes();
        if !notes.is_empty() {
            value["session"] = json!(notes);
        }
    }
    if matches!(result.status, Status::Refused | Status::InstallFailed) {
        // Calling again with the same import gets the same answer.
        value["next"] = json!(
            "that package is not available here: solve it without it (or with the installed stack), or tell the user it is unavailable"
        );
    } else if result.status != Status::Ok {
        value["next"] = json!(
            "the run failed: read the error, fix the code and call execute_python_code again; do not answer from this run"
        );
    } else if result.stdout.trim().is_empty() && generated.is_empty() {
        value["note"] = json!("the run printed nothing: print() the values you need");
    } else {
        value["next"] = json!(
            "the run succeeded: answer the user from this output now, unless more code is really needed"
        );
    }
    if stdout_cut || stderr_cut {
        value["note"] = json!("only the last part of long output is shown");
    }
    if !result.packages_installed.is_empty() {
        // Installed before the run; the time is not part of execution_ms.
        value["packages_installed"] = json!(result.packages_installed);
        value["install_ms"] = json!(result.install_ms.round());
    }
    if !result.flags.is_empty() {
        value["flags"] = json!(
            result
                .flags
                .iter()
                .map(|f| f.flag.clone())
                .collect::<Vec<_>>()
        );
    }
    redact(&value.to_string(), secrets)
}

/// Replaces every occurrence of a known secret (defence in depth: the sandbox cannot see
/// them, but nothing the bot sends may ever carry one).
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for secret in secrets.iter().filter(|s| s.len() >= 8) {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), "[redacted]");
        }
    }
    out
}

/// `redact` for text still being written: a tail that could be the start of a secret is
/// held back until the text goes on (or ends), so no secret is shown half.
pub fn redact_growing(text: &str, secrets: &[String]) -> String {
    let mut out = redact(text, secrets);
    let held = secrets
        .iter()
        .filter(|s| s.len() >= 8)
        .filter_map(|secret| {
            (1..secret.len())
                .rev()
                .filter(|n| secret.is_char_boundary(*n))
                .find(|n| out.ends_with(&secret[..*n]))
        })
        .max()
        .unwrap_or(0);
    out.truncate(out.len() - held);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_being_written_is_never_shown_half() {
        let secrets = vec!["sk-supersecret-value".to_string()];
        assert_eq!(redact_growing("the key is sk-sup", &secrets), "the key is ");
        assert_eq!(
            redact_growing("the key is sk-supersecret-value.", &secrets),
            "the key is [redacted]."
        );
        assert_eq!(redact_growing("nothing secret", &secrets), "nothing secret");
    }
    use crate::sandbox::Outcome;
    use crate::sandbox::Status;

    fn result(stdout: &str) -> ExecutionResult {
        ExecutionResult::of(Outcome::value_error(stdout, 12.4), 200.0)
    }

    #[test]
    fn the_model_sees_status_error_and_files() {
        let generated = vec![GeneratedFile {
            file_id: "ABCDEFGHIJKLMNOP".into(),
            filename: "plot.png".into(),
            size: 10,
            file_type: "png".into(),
            path: "/data/user_files/u/ABCDEFGHIJKLMNOP.png".into(),
            picture: None,
        }];
        let text = render(
            &result("42\n"),
            &generated,
            Encoding::O200kBase,
            Budget::default(),
            &[],
        );
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["status"], "error");
        assert_eq!(v["exit_code"], 1);
        assert_eq!(v["stdout"], "42\n");
        assert_eq!(v["error"]["type"], "ValueError");
        assert!(
            v["next"]
                .as_str()
                .unwrap()
                .contains("fix the code and call"),
            "a failed run tells the model to try again: {v}"
        );
        assert_eq!(v["generated_files"][0]["file_id"], "ABCDEFGHIJKLMNOP");
        // Fields that say nothing are left out.
        assert!(v.get("stdout_truncated").is_none(), "{v}");
    }

    #[test]
    fn a_silent_ok_run_is_told_to_print() {
        let mut quiet = result("");
        quiet.status = Status::Ok;
        quiet.error = None;
        let v: Value = serde_json::from_str(&render(
            &quiet,
            &[],
            Encoding::O200kBase,
            Budget::default(),
            &[],
        ))
        .unwrap();
        assert!(v["next"].is_null(), "{v}");
        assert!(v["note"].as_str().unwrap().contains("print()"), "{v}");
    }

    #[test]
    fn long_output_keeps_its_tail_and_says_so() {
        let long = format!("{}THE END\n", "noise line\n".repeat(5000));
        let budget = Budget {
            stdout_tokens: 100,
            stderr_tokens: 100,
        };
        let text = render(&result(&long), &[], Encoding::O200kBase, budget, &[]);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["stdout_truncated"], true);
        assert!(v["stdout"].as_str().unwrap().ends_with("THE END\n"));
        assert!(v["note"].is_string());
    }

    #[test]
    fn secrets_are_redacted() {
        let secret = "sk-canary-1234567890".to_string();
        let text = render(
            &result(&format!("key={secret}")),
            &[],
            Encoding::O200kBase,
            Budget::default(),
            std::slice::from_ref(&secret),
        );
        assert!(!text.contains(&secret));
        assert!(text.contains("[redacted]"));
    }
}
