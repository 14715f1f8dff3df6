//! Pure: what a status message shows while code runs: how long it has run and the last
//! lines of its output, within one Discord message.

use std::time::Duration;

use crate::sandbox::watch::{RunEvent, Watched};

/// Characters of output a status keeps (the message around it stays far below 2,000).
pub const TAIL_CHARS: usize = 1500;
/// Lines of output a status shows.
pub const TAIL_LINES: usize = 15;

/// The newest output of a run, as a terminal would show it: a carriage return starts the
/// line over (progress bars), older text falls off the top.
#[derive(Debug, Clone, Default)]
pub struct OutputTail {
    text: String,
    /// Output was dropped somewhere before the newest text (a flood, a slow reader).
    gap: bool,
    installing: Option<Vec<String>>,
    started: bool,
    /// Something changed since `take_changed` was last asked.
    changed: bool,
    /// The last character was a carriage return whose meaning the next one decides.
    carriage_return: bool,
}

impl OutputTail {
    pub fn apply(&mut self, watched: &Watched) {
        if watched.missed_before > 0 {
            self.gap = true;
        }
        match &watched.event {
            RunEvent::Started => self.started = true,
            RunEvent::Installing { modules } => self.installing = Some(modules.clone()),
            RunEvent::Output {
                text,
                skipped_chars,
                ..
            } => {
                self.installing = None;
                if *skipped_chars > 0 {
                    self.gap = true;
                }
                self.push(text);
            }
        }
        self.changed = true;
    }

    fn push(&mut self, text: &str) {
        for c in text.chars() {
            if std::mem::take(&mut self.carriage_return) && c != '\n' {
                // Back to the start of the line: what follows replaces it (progress bars);
                // "\r\n" is only a line end.
                let line_start = self.text.rfind('\n').map_or(0, |i| i + 1);
                self.text.truncate(line_start);
            }
            if c == '\r' {
                self.carriage_return = true;
            } else {
                self.text.push(c);
            }
        }
        if self.text.chars().count() > 2 * TAIL_CHARS {
            let cut = self.text.chars().count() - TAIL_CHARS;
            self.text = self.text.chars().skip(cut).collect();
            self.gap = true;
        }
    }

    /// Whether anything arrived since the last call.
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// The last lines, at most TAIL_LINES and TAIL_CHARS, with a mark where older output
    /// was left out.
    pub fn lines(&self) -> String {
        let lines: Vec<&str> = self.text.trim_end_matches('\n').split('\n').collect();
        let skipped_lines = lines.len().saturating_sub(TAIL_LINES);
        let mut shown = lines[skipped_lines..].join("\n");
        let mut cut = skipped_lines > 0 || self.gap;
        let count = shown.chars().count();
        if count > TAIL_CHARS {
            shown = shown.chars().skip(count - TAIL_CHARS).collect();
            cut = true;
        }
        if shown.is_empty() {
            return String::new();
        }
        if cut {
            shown.insert_str(0, "…\n");
        }
        shown
    }
}

/// The status text of a run in progress (`round` counts the model's runs in one message).
/// Pure: the status while the model is working on step `round` (a slow model).
pub fn thinking_status(round: usize, elapsed: Duration) -> String {
    let step = if round > 1 {
        format!(" (step {round})")
    } else {
        String::new()
    };
    format!("💭 the model is thinking{step}… {} s", elapsed.as_secs())
}

/// Pure: the status once a slow model answered (and ran no code after it).
pub fn thought_status(elapsed: Duration) -> String {
    format!("💭 the model answered after {} s", elapsed.as_secs())
}

pub fn running_status(round: usize, elapsed: Duration, tail: &OutputTail) -> String {
    let step = if round > 1 {
        format!(" (step {round})")
    } else {
        String::new()
    };
    let mut text = match &tail.installing {
        Some(modules) => format!(
            "📦 installing packages for {}{step}… {} s",
            bounded(&modules.join(", "), 200),
            elapsed.as_secs()
        ),
        None if tail.started => format!("⏳ running code{step}… {} s", elapsed.as_secs()),
        // The container is starting and the files staged: the user sees the run begin.
        None => format!("⏳ running code{step}…"),
    };
    let lines = tail.lines();
    if !lines.is_empty() {
        // Output is the code's: it must not close the block early or format anything.
        let mut safe = super::defuse_fences(&lines);
        let count = safe.chars().count();
        if count > TAIL_CHARS {
            safe = safe.chars().skip(count - TAIL_CHARS).collect();
        }
        text.push_str(&format!("\n```\n{safe}\n```"));
    }
    text
}

/// `text` cut to `max` characters, marked when cut.
fn bounded(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::watch::OutputStream;

    fn output(text: &str) -> Watched {
        Watched {
            event: RunEvent::Output {
                stream: OutputStream::Stdout,
                text: text.to_string(),
                skipped_chars: 0,
            },
            missed_before: 0,
        }
    }

    fn started() -> Watched {
        Watched {
            event: RunEvent::Started,
            missed_before: 0,
        }
    }

    #[test]
    fn shows_elapsed_time_and_the_last_lines() {
        let mut tail = OutputTail::default();
        tail.apply(&started());
        for n in 0..40 {
            tail.apply(&output(&format!("line {n}\n")));
        }
        let text = running_status(1, Duration::from_secs(12), &tail);
        assert!(
            text.starts_with("⏳ running code… 12 s\n```\n…\nline 25\n"),
            "{text}"
        );
        assert!(text.ends_with("line 39\n```"), "{text}");
        assert!(!text.contains("line 24\n"));
    }

    #[test]
    fn a_carriage_return_rewrites_the_line_like_a_terminal() {
        let mut tail = OutputTail::default();
        tail.apply(&output("start\n10%\r"));
        tail.apply(&output("50%\r100%\ndone\n"));
        assert_eq!(tail.lines(), "start\n100%\ndone");
        // The last state of a progress line stays shown until something replaces it.
        tail.apply(&output("1/3\r2/3\r"));
        assert_eq!(tail.lines(), "start\n100%\ndone\n2/3");
        tail.apply(&output("3/3\r"));
        assert_eq!(tail.lines(), "start\n100%\ndone\n3/3");
        // "\r\n" ends a line like "\n" (csv's default), even split across two events.
        let mut csv = OutputTail::default();
        csv.apply(&output("a,b\r"));
        csv.apply(&output("\n1,2\r\n"));
        assert_eq!(csv.lines(), "a,b\n1,2");
    }

    #[test]
    fn a_flood_stays_within_one_message_and_cannot_break_the_block() {
        let mut tail = OutputTail::default();
        tail.apply(&started());
        tail.apply(&output(&format!("{}\n", "é".repeat(100_000))));
        // Runs of every length, 3k+2 included, and fences split across events.
        for run in 1..=11 {
            tail.apply(&output(&format!("{}x\n", "`".repeat(run))));
        }
        tail.apply(&output("`"));
        tail.apply(&output("``[link](https://evil.example)\n"));
        let text = running_status(3, Duration::from_secs(1), &tail);
        assert!(text.chars().count() <= 2000, "{}", text.chars().count());
        assert_eq!(
            text.matches("```").count(),
            2,
            "only the block's own fences: {text}"
        );
        assert!(text.contains("(step 3)"));
    }

    #[test]
    fn missed_events_and_skipped_output_are_marked() {
        let mut tail = OutputTail::default();
        tail.apply(&Watched {
            missed_before: 3,
            ..output("late\n")
        });
        assert_eq!(tail.lines(), "…\nlate");
        let mut tail = OutputTail::default();
        tail.apply(&Watched {
            event: RunEvent::Output {
                stream: OutputStream::Stderr,
                text: "tail\n".into(),
                skipped_chars: 10,
            },
            missed_before: 0,
        });
        assert_eq!(tail.lines(), "…\ntail");
    }

    #[test]
    fn waiting_for_packages_is_said_and_nothing_empty_is_shown() {
        let mut tail = OutputTail::default();
        assert_eq!(running_status(1, Duration::ZERO, &tail), "⏳ running code…");
        tail.apply(&started());
        tail.apply(&Watched {
            event: RunEvent::Installing {
                modules: vec!["sklearn".into()],
            },
            missed_before: 0,
        });
        assert!(tail.take_changed());
        assert!(!tail.take_changed());
        assert_eq!(
            running_status(1, Duration::from_secs(4), &tail),
            "📦 installing packages for sklearn… 4 s"
        );
        tail.apply(&Watched {
            event: RunEvent::Installing {
                modules: vec!["m".repeat(70_000)],
            },
            missed_before: 0,
        });
        assert!(running_status(1, Duration::ZERO, &tail).chars().count() < 300);
    }
}
