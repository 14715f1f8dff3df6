//! A run shown in a terminal as it happens: the code's stdout to stdout and its stderr to
//! stderr as they come, codebox's own notes (a package install, output not relayed) to
//! stderr.

use std::io::Write;

use crate::sandbox::watch::{OutputStream, RunEvent, Subscription};

/// Whether the terminal saw everything the code wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Streamed {
    /// Some output was not shown (a flood past the live budget, a terminal behind).
    pub incomplete: bool,
    /// Nothing was written at all.
    pub empty: bool,
}

/// Prints the run's events until it ends. It blocks (a terminal or pipe that is not read
/// blocks its writer): run it on a thread of its own, never on an async worker.
pub fn print_live(mut subscription: Subscription) -> Streamed {
    let mut streamed = Streamed {
        incomplete: false,
        empty: true,
    };
    while let Some(watched) = subscription.blocking_recv() {
        if watched.missed_before > 0 {
            streamed.incomplete = true;
            note(&format!(
                "[codebox: {} pieces of output not shown: the terminal fell behind]",
                watched.missed_before
            ));
        }
        match watched.event {
            RunEvent::Started => {}
            RunEvent::Installing { modules } => note(&format!(
                "[codebox: installing packages for {} (not counted in the time limit)]",
                modules.join(", ")
            )),
            RunEvent::Output {
                stream,
                text,
                skipped_chars,
            } => {
                if skipped_chars > 0 {
                    streamed.incomplete = true;
                    note(&format!(
                        "[codebox: {skipped_chars} characters of {} not shown live]",
                        match stream {
                            OutputStream::Stdout => "stdout",
                            OutputStream::Stderr => "stderr",
                        }
                    ));
                }
                if text.is_empty() {
                    continue;
                }
                streamed.empty = false;
                // A closed terminal (a pipe whose reader left) is no reason to stop the run.
                let _ = match stream {
                    OutputStream::Stdout => {
                        let mut out = std::io::stdout().lock();
                        out.write_all(text.as_bytes()).and_then(|()| out.flush())
                    }
                    OutputStream::Stderr => {
                        let mut err = std::io::stderr().lock();
                        err.write_all(text.as_bytes()).and_then(|()| err.flush())
                    }
                };
            }
        }
    }
    if subscription.missed() > 0 {
        streamed.incomplete = true;
    }
    streamed
}

fn note(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{text}");
}
