//! Pure rendering of results for people: the non-JSON `codebox run` output, and the texts
//! front ends show (status lines, reports).

pub mod live;

use std::path::Path;

use crate::sandbox::{ExecutionResult, Status};
use crate::store::FileRecord;

/// One line per file: id, type, size, expiry, name.
pub fn file_table(records: &[FileRecord]) -> String {
    if records.is_empty() {
        return "no files\n".to_string();
    }
    let mut out = String::new();
    for r in records {
        let expiry = r.expires_at.map_or("never".to_string(), |at| {
            at.format("%Y-%m-%d %H:%M UTC").to_string()
        });
        out.push_str(&format!(
            "{}  {:8}  {:>10}  expires {}  {}\n",
            r.file_id, r.file_type, r.file_size, expiry, r.filename
        ));
    }
    out
}

/// The line confirming one stored upload, with its summary.
pub fn upload_confirmation(r: &FileRecord) -> String {
    let expiry = r.expires_at.map_or("never expires".to_string(), |at| {
        format!("expires {}", at.format("%Y-%m-%d %H:%M UTC"))
    });
    let mut out = format!(
        "📎 Stored `{}` ({}, {}) as `{}`, {}.\n",
        r.filename,
        r.file_type,
        human_size(r.file_size),
        r.file_id,
        expiry
    );
    if let Some(summary) = &r.summary {
        let summary: String = summary.chars().take(800).collect();
        out.push_str(&format!("```\n{}\n```\n", defuse_fences(&summary)));
    }
    out
}

/// What a code fence inside untrusted text becomes, so it cannot close our block.
const FENCE_STANDIN: &str = "'''";

/// Untrusted text made safe inside a code block: replacing every run of three backticks
/// leaves at most two in a row, whatever the length of the run.
pub fn defuse_fences(text: &str) -> String {
    text.replace("```", FENCE_STANDIN)
}

pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KB", "MB", "GB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The last line of an answer: which model wrote it (Discord's small text).
pub fn reply_footer(model: &str) -> String {
    format!("-# {}", model.replace(['`', '\n'], ""))
}

/// The code of a turn's runs, each with how it ended and how long it took, in Python
/// blocks (the code is the model's: fences inside it are defused).
pub fn code_section(ran: &[crate::llm::conversation::RanCode]) -> String {
    let mut out = String::new();
    for (i, run) in ran.iter().enumerate() {
        out.push_str(&format!(
            "**Run {}** · {}\n```python\n{}\n```\n",
            i + 1,
            defuse_fences(&ran_label(run)),
            defuse_fences(run.code.trim_end())
        ));
    }
    out
}

/// How a run ended and how long it took, on one line.
fn ran_label(run: &crate::llm::conversation::RanCode) -> String {
    let time = run
        .seconds
        .map(|s| format!(" in {s:.2} s"))
        .unwrap_or_default();
    format!("{}{time}", run.status.replace('\n', " "))
}

/// The same runs as a Python file, for code too long for a message.
pub fn code_file(ran: &[crate::llm::conversation::RanCode]) -> String {
    let mut out = String::new();
    for (i, run) in ran.iter().enumerate() {
        out.push_str(&format!(
            "# --- run {} · {} ---\n{}\n\n",
            i + 1,
            ran_label(run),
            run.code.trim_end()
        ));
    }
    out
}

/// /usage by model: one line per model this month.
pub fn usage_by_model(
    by_model: &std::collections::BTreeMap<String, crate::conversations::UsageTotals>,
) -> String {
    let mut out = String::new();
    for (model, u) in by_model {
        let cost = if u.unpriced_requests > 0 {
            "cost unknown (no price)".to_string()
        } else {
            format!("${:.4}", u.cost_usd)
        };
        out.push_str(&format!(
            "- `{}`: {} requests, {} prompt + {} completion tokens, {cost}\n",
            model.replace('`', ""),
            u.requests,
            u.prompt_tokens,
            u.completion_tokens
        ));
    }
    out
}

/// /usage: this month's totals; an unpriced model's cost is said to be unknown.
pub fn usage_report(month: &str, u: &crate::conversations::UsageTotals) -> String {
    let cost = if u.unpriced_requests > 0 {
        format!(
            "${:.4} for priced models, unknown for {} requests to unpriced models",
            u.cost_usd, u.unpriced_requests
        )
    } else {
        format!("${:.4}", u.cost_usd)
    };
    // Image tokens are our own count of what pictures took, part of the prompt tokens the
    // API billed; text is the rest.
    let text_tokens = u.prompt_tokens.saturating_sub(u.image_tokens);
    format!(
        "Usage for {month}: {} model requests, {} prompt tokens ({text_tokens} text, {} images; {} cached), {} completion tokens, cost {cost}; {} code runs, {:.1} CPU seconds.",
        u.requests,
        u.prompt_tokens,
        u.image_tokens,
        u.cached_tokens,
        u.completion_tokens,
        u.runs,
        u.cpu_seconds
    )
}

/// /run: the result of code run directly, as Discord text.
pub fn run_for_discord(run: &crate::run_result::UserRunResult) -> String {
    let r = &run.result;
    let mut out = format!("**{}** in {:.0} ms\n", r.status.as_str(), r.execution_ms);
    // The exception comes from the code: inside a block, never live markdown or mentions.
    if let Some(e) = &r.error {
        let text: String = format!("{}: {}", e.kind, e.message)
            .chars()
            .take(1500)
            .collect();
        out.push_str(&format!("```\n{}\n```\n", defuse_fences(&text)));
    }
    for (title, text, cut) in [
        ("stdout", &r.stdout, r.stdout_truncated),
        ("stderr", &r.stderr, r.stderr_truncated),
    ] {
        if !text.is_empty() {
            let tail: String = text
                .chars()
                .rev()
                .take(1500)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            let note = if cut || tail.len() < text.len() {
                " (end shown)"
            } else {
                ""
            };
            out.push_str(&format!(
                "{title}{note}:\n```\n{}\n```\n",
                defuse_fences(&tail)
            ));
        }
    }
    // Variable names come from the code: inside a block, like its output.
    let notes = r.session.as_ref().map(|s| s.notes()).unwrap_or_default();
    if !notes.is_empty() {
        let text: String = notes.join("\n").chars().take(800).collect();
        out.push_str(&format!("session:\n```\n{}\n```\n", defuse_fences(&text)));
    }
    for g in &run.generated_files {
        out.push_str(&format!("📎 `{}` stored as `{}`\n", g.filename, g.file_id));
    }
    out
}

/// The status line for a finished run (or a run that could not start).
pub fn status_line(result: Result<&crate::run_result::UserRunResult, &str>) -> String {
    match result {
        Err(reason) => format!("❌ could not run the code: {reason}"),
        Ok(run) => {
            let r = &run.result;
            let secs = r.execution_ms / 1000.0;
            match r.status {
                Status::Ok => format!("✅ done in {secs:.1} s"),
                // The type comes from the sandbox: shown as code, never as markdown (it
                // is an identifier by then, so it holds no backtick).
                Status::Error => format!(
                    "⚠️ failed after {secs:.1} s: `{}`",
                    r.error
                        .as_ref()
                        .map(|e| e.kind.replace('`', "'"))
                        .unwrap_or_else(|| "error".to_string())
                ),
                Status::Timeout => format!("⏱️ timed out after {secs:.0} s"),
                Status::Oom => "💥 ran out of memory".to_string(),
                Status::Killed => "🛑 killed".to_string(),
                Status::Refused => format!(
                    "🚫 not run: {}",
                    r.error
                        .as_ref()
                        .map(|e| e.message.as_str())
                        .unwrap_or("refused")
                ),
                Status::InstallFailed => "📦 not run: a package could not be installed".to_string(),
            }
        }
    }
}

/// /limits: what every run is allowed, and the file and message limits.
pub fn limits_report(l: &crate::sandbox::Limits, settings: &crate::config::Settings) -> String {
    format!(
        "Each run: {} s, {} MB memory, {} CPU, {} processes, {} MB scratch, no network, runtime {}.\nFiles: {} per user, {} MB each, expire after {} h.\nMessages: {} per minute; up to {} code runs per message.",
        l.timeout.as_secs_f64(),
        l.memory_mb,
        l.cpus,
        l.pids,
        l.disk_mb,
        l.runtime.as_str(),
        settings.store.max_files_per_user,
        settings.store.max_file_size_mb,
        settings.store.file_expiration_hours,
        settings.chat.rate_limit_per_minute,
        settings.chat.max_tool_rounds,
    )
}

/// /limits: the monthly caps in force here.
pub fn budget_report(caps: &crate::app::budget::Caps) -> String {
    let usd = |cap: Option<f64>| cap.map_or("none".to_string(), crate::app::budget::dollars);
    format!(
        "Monthly budgets: {} per member, {} for this server, {} tokens per member on unpriced models.",
        usd(caps.user_usd),
        usd(caps.server_usd),
        caps.user_tokens
            .map_or("no cap on".to_string(), |t| t.to_string())
    )
}

pub fn file_details(record: &FileRecord, path: &Path) -> String {
    let expiry = record
        .expires_at
        .map_or("never".to_string(), |at| at.to_rfc3339());
    let mut out = format!(
        "id:       {}\nuser:     {}\nname:     {}\ntype:     {}\nsize:     {} bytes\nsha256:   {}\norigin:   {}\ncreated:  {}\nexpires:  {}\npath:     {}\n",
        record.file_id,
        record.user_id,
        record.filename,
        record.file_type,
        record.file_size,
        record.sha256,
        record.origin.as_str(),
        record.created_at.to_rfc3339(),
        expiry,
        path.display()
    );
    if let Some(summary) = &record.summary {
        out.push_str(&format!("summary:\n{summary}\n"));
    }
    out
}

pub fn run_summary(result: &ExecutionResult) -> String {
    summary(result, true)
}

/// The summary after the output was already shown as it came (`codebox run` in a
/// terminal): everything but stdout and stderr.
pub fn run_summary_after_streaming(result: &ExecutionResult) -> String {
    summary(result, false)
}

fn summary(result: &ExecutionResult, with_output: bool) -> String {
    let mut out = String::new();
    let verdict = match result.status {
        Status::Ok => "ok".to_string(),
        Status::Error => format!(
            "error (exit code {})",
            result.exit_code.map_or("?".to_string(), |c| c.to_string())
        ),
        Status::Timeout => "timed out".to_string(),
        Status::Oom => "out of memory".to_string(),
        Status::Killed => "killed".to_string(),
        Status::Refused => "refused, not run".to_string(),
        Status::InstallFailed => "package install failed, not run".to_string(),
    };
    out.push_str(&format!(
        "status: {verdict}  (code {:.0} ms, install {:.0} ms, total {:.0} ms, run {})\n",
        result.execution_ms, result.install_ms, result.total_ms, result.run_id
    ));
    if !result.packages_installed.is_empty() || !result.packages_cached.is_empty() {
        out.push_str(&format!(
            "packages: installed [{}], from cache [{}]\n",
            result.packages_installed.join(", "),
            result.packages_cached.join(", ")
        ));
    }
    if let Some(error) = &result.error {
        out.push_str(&format!("error: {}: {}\n", error.kind, error.message));
    }
    if with_output {
        section(&mut out, "stdout", &result.stdout, result.stdout_truncated);
        section(&mut out, "stderr", &result.stderr, result.stderr_truncated);
    }
    if let Some(session) = &result.session {
        out.push_str(&format!(
            "session: {} kept, restored {} (restore {:.0} ms, save {:.0} ms)\n",
            session.kept_count,
            session.restored.len(),
            session.restore_ms,
            session.save_ms
        ));
        for note in session.notes() {
            out.push_str(&format!("  {note}\n"));
        }
    }
    if !result.output_files.is_empty() {
        out.push_str("output files:\n");
        for file in &result.output_files {
            out.push_str(&format!(
                "  {} ({} bytes) -> {}\n",
                file.name,
                file.size,
                file.path.display()
            ));
        }
    }
    if !result.flags.is_empty() {
        out.push_str("flags:\n");
        for flag in &result.flags {
            out.push_str(&format!("  {}", flag.flag));
            if let Some(name) = &flag.name {
                out.push_str(&format!(" {name}"));
            }
            if let Some(size) = flag.size {
                out.push_str(&format!(" ({size} bytes)"));
            }
            if let Some(more) = flag.more {
                out.push_str(&format!(" (+{more} more)"));
            }
            out.push('\n');
        }
    }
    out
}

fn section(out: &mut String, title: &str, text: &str, truncated: bool) {
    if text.is_empty() {
        return;
    }
    let note = if truncated { " (truncated)" } else { "" };
    out.push_str(&format!("--- {title}{note} ---\n{text}"));
    if !text.ends_with('\n') {
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_code_of_a_turn_is_shown_as_it_ran_with_fences_defused() {
        use crate::llm::conversation::RanCode;
        let ran = vec![
            RanCode {
                code: "print('```not a fence')".into(),
                status: "ok".into(),
                seconds: Some(0.1234),
            },
            RanCode {
                code: "import os".into(),
                status: "not run: running code is not allowed".into(),
                seconds: None,
            },
        ];
        let text = code_section(&ran);
        assert!(
            text.starts_with("**Run 1** · ok in 0.12 s\n```python\n"),
            "{text}"
        );
        assert_eq!(text.matches("```").count(), 4, "only our fences: {text}");
        assert!(text.contains("**Run 2** · not run: running code is not allowed\n"));
        let file = code_file(&ran);
        assert!(file.contains("# --- run 1 · ok in 0.12 s ---\nprint('```not a fence')\n"));
        assert!(
            file.contains("# --- run 2 · not run: running code is not allowed ---\nimport os\n")
        );
        assert_eq!(reply_footer("gpt-4o`\n@x"), "-# gpt-4o@x");
    }
    use crate::sandbox::Outcome;
    use crate::sandbox::{Flag, OutputFile};

    #[test]
    fn the_status_shows_an_exception_type_as_code() {
        let mut result = failed();
        result.stdout = String::new();
        result.stderr = String::new();
        result.stdout_truncated = false;
        result.execution_ms = 1200.0;
        result.output_files = vec![];
        result.flags = vec![];
        let mut run = crate::run_result::UserRunResult {
            result,
            generated_files: vec![],
        };
        assert_eq!(status_line(Ok(&run)), "⚠️ failed after 1.2 s: `ValueError`");
        run.result.error.as_mut().unwrap().kind = "a`b".into();
        assert_eq!(status_line(Ok(&run)), "⚠️ failed after 1.2 s: `a'b`");
    }

    /// A run whose code raised ValueError, with a truncated stdout, a file and a flag.
    fn failed() -> ExecutionResult {
        let mut result = ExecutionResult::of(Outcome::value_error("partial", 12.0), 180.0);
        result.stdout_truncated = true;
        result.output_files = vec![OutputFile {
            name: "a.png".into(),
            size: 10,
            path: "/d/a.png".into(),
            picture: None,
        }];
        result.flags = vec![Flag::named("file_too_large", "big.bin")];
        result
    }

    #[test]
    fn summary_shows_everything_that_matters() {
        let result = failed();
        let text = run_summary(&result);
        assert!(text.starts_with("status: error (exit code 1)"));
        assert!(text.contains("error: ValueError: bad"));
        assert!(text.contains("--- stdout (truncated) ---\npartial\n"));
        assert!(text.contains("a.png (10 bytes) -> /d/a.png"));
        assert!(text.contains("file_too_large big.bin"));
    }
}
