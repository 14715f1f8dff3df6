//! The runner protocol, pure: the job the host writes to the runner's stdin, and an
//! incremental decoder for what the runner writes back on stdout.
//!
//! The stream is JSON lines, except that an `outputs` event announces N raw bytes (a tar of
//! the output directory) that follow it. Everything on it comes from inside the sandbox, so
//! the decoder bounds every line and blob: a hostile stream can fail the run, never grow
//! the host's memory.

use bytes::{Buf, Bytes, BytesMut};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::limits::Limits;
use super::outcome::Outcome;
use super::result::{Flag, MeasuredPicture};
use super::session::{SessionJob, SessionReport};
use crate::container::rebuild_command;

/// The version of this protocol, announced by the runner in `ready`. Bumped whenever host
/// and runner stop understanding each other; an image whose runner speaks another version
/// must be rebuilt, and says so instead of failing in odd ways. Runners before versions
/// existed announce none (they spoke version 1).
pub const PROTOCOL_VERSION: u32 = 9;

/// One job, written as a single JSON line to the runner's stdin.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    pub code: String,
    pub timeout_s: f64,
    pub memory_mb: u64,
    pub workdir: String,
    pub output_dir: String,
    pub max_output_chars: usize,
    pub max_output_files: usize,
    pub max_output_file_bytes: u64,
    pub max_output_total_bytes: u64,
    /// The stored files this run may `load_file`, with their paths inside the sandbox.
    #[serde(default)]
    pub files: Vec<JobFile>,
    /// Let an import in the code that really fails ask the host for its package (`missing`),
    /// the code stopped meanwhile.
    #[serde(default)]
    pub scan_imports: bool,
    /// Restore the session's previous state before the code and save it after; None runs
    /// the code with nothing before it and keeps nothing.
    #[serde(default)]
    pub session: Option<SessionJob>,
    /// Relay what the code writes while it runs (`output` events); None sends nothing
    /// before the result (nobody watches).
    #[serde(default)]
    pub live: Option<LiveJob>,
    /// Measure the pictures among the outputs (`outputs.pictures`). Off under gVisor, where
    /// forking the runner to measure them takes longer than the picture run it saves.
    #[serde(default)]
    pub measure_pictures: bool,
    /// The job's one-time key (`new_job_key`); the runner keeps it from the code.
    pub auth: String,
}

/// Bounds of the output relayed while the code runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveJob {
    /// One event carries at most this many characters (the newest; older ones are skipped).
    pub max_event_chars: usize,
    /// At most this many characters per stream are relayed in a run.
    pub max_total_chars: usize,
    /// At most one event per stream per interval.
    pub interval_ms: u64,
}

impl LiveJob {
    /// Bounds for a run whose captured output is capped at `max_output_chars` per stream:
    /// ten events a second of at most 4,096 characters, and four times the cap in all.
    pub fn for_limits(limits: &Limits) -> LiveJob {
        LiveJob {
            max_event_chars: 4096,
            max_total_chars: limits.max_output_chars.saturating_mul(4),
            interval_ms: 100,
        }
    }
}

/// Which of the code's streams a piece of live output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputStream {
    Stdout,
    Stderr,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobFile {
    pub file_id: String,
    pub filename: String,
    pub file_type: String,
    pub path: String,
    /// Its name under `/mnt/data` (`store::names::data_names`); the runner re-checks it.
    #[serde(default)]
    pub data_name: String,
}

/// The host's answer to `missing`: package directories to put on the code's path, or why
/// there are none (the code's import then fails with these words).
#[derive(Debug, Clone, Serialize)]
pub struct SiteDirs {
    pub site_dirs: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl SiteDirs {
    pub fn to_line(&self) -> Result<Vec<u8>, serde_json::Error> {
        let mut line = serde_json::to_vec(self)?;
        line.push(b'\n');
        Ok(line)
    }
}

impl Job {
    pub fn to_line(&self) -> Result<Vec<u8>, serde_json::Error> {
        let mut line = serde_json::to_vec(self)?;
        line.push(b'\n');
        Ok(line)
    }
}

/// The runner's report on the code, before output collection.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RunnerResult {
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Boxed: most results have none, and it would triple every event's size.
    #[serde(default)]
    pub session: Option<Box<SessionReport>>,
}

impl std::ops::Deref for RunnerResult {
    type Target = Outcome;
    fn deref(&self) -> &Outcome {
        &self.outcome
    }
}

impl std::ops::DerefMut for RunnerResult {
    fn deref_mut(&mut self) -> &mut Outcome {
        &mut self.outcome
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum RunnerEvent {
    /// The runner is up (and has preloaded what it was told to) and waits for its job.
    Ready {
        #[serde(default)]
        protocol: Option<u32>,
    },
    /// Top-level modules the code imports that the sandbox cannot find; the runner waits
    /// for the host's `SiteDirs` line.
    Missing {
        modules: Vec<String>,
    },
    Started,
    /// What the code wrote since the last such event (only for a job with `live`).
    Output {
        stream: OutputStream,
        text: String,
        /// Older characters written since the last event and not relayed.
        #[serde(default)]
        skipped: u64,
    },
    Result(RunnerResult),
    Outputs {
        bytes: u64,
        /// Hex SHA-256 of the tar that follows; the line's MAC vouches for it.
        #[serde(default)]
        sha256: Option<String>,
        #[serde(default)]
        flags: Vec<Flag>,
        /// The outputs that decoded whole as pictures, measured inside the sandbox.
        #[serde(default)]
        pictures: Vec<MeasuredPicture>,
        /// How long measuring them took.
        #[serde(default)]
        measure_ms: f64,
    },
    /// The session's new snapshot: N raw bytes follow, opaque to the host.
    State {
        bytes: u64,
        sha256: String,
    },
    Done,
}

/// What the decoder yields, in stream order.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Event(RunnerEvent),
    /// A piece of the blob the last `outputs` or `state` announced, in order.
    BlobChunk(Bytes),
    /// The announced number of blob bytes has arrived.
    BlobEnd,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProtocolError {
    #[error("runner sent a line longer than {limit} bytes")]
    LineTooLong { limit: usize },
    #[error("runner announced a blob of {announced} bytes, more than the {limit} allowed")]
    BlobTooLarge { announced: u64, limit: u64 },
    #[error("runner sent an unreadable message: {reason}")]
    BadMessage { reason: String },
    /// Something on the stream did not come from the runner holding the job's key: a
    /// forgery, never a result.
    #[error("unauthenticated message on the runner's stream: {reason}")]
    Unauthenticated { reason: String },
    #[error("runner sent {event} out of order ({reason})")]
    OutOfOrder { event: &'static str, reason: String },
}

/// A one-time key for one job: the runner MACs every line after the job with it.
pub fn new_job_key() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

/// Pure: the MAC the runner puts in front of a line's JSON.
pub fn line_mac(key: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length: the error cannot happen.
    let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The sandbox image's runner speaks another protocol version than this codebox.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "the sandbox image {image} is out of date: its runner speaks {}, this codebox speaks protocol {}; rebuild it with {}",
    spoken(*.found),
    PROTOCOL_VERSION,
    rebuild_command(.image)
)]
pub struct OutdatedImage {
    pub image: String,
    /// The version the runner announced; None for a runner older than versions.
    pub found: Option<u32>,
}

fn spoken(found: Option<u32>) -> String {
    match found {
        Some(version) => format!("protocol {version}"),
        None => "no protocol version (it predates them)".to_string(),
    }
}

/// Pure: whether a runner that announced `found` in its `ready` can take a job from this
/// host; `image` names the image to rebuild when it cannot.
pub fn check_ready(image: &str, found: Option<u32>) -> Result<(), OutdatedImage> {
    if found == Some(PROTOCOL_VERSION) {
        return Ok(());
    }
    Err(OutdatedImage {
        image: image.to_string(),
        found,
    })
}

enum State {
    Line,
    Blob { remaining: u64 },
}

pub struct Decoder {
    /// Set once the job (with its key) is handed over: from then on every line must carry
    /// the key's MAC and the output tar must match its announced digest.
    key: Option<Vec<u8>>,
    blob_digest: Option<(Sha256, String)>,
    buf: BytesMut,
    /// How many bytes at the front of `buf` are known to hold no newline: a line that
    /// arrives in many pieces is scanned once, not once per piece.
    scanned: usize,
    state: State,
    max_line: usize,
    max_blob: u64,
    /// Bound of the session snapshot; 0 refuses any.
    max_state: u64,
}

impl Decoder {
    /// `max_line` bounds one JSON message (the result carries stdout and stderr, each at
    /// most `max_output_chars` characters, up to 4 bytes each, JSON-escaped up to 6x);
    /// `max_blob` bounds the output tar.
    pub fn new(max_line: usize, max_blob: u64) -> Decoder {
        Decoder {
            key: None,
            blob_digest: None,
            buf: BytesMut::new(),
            scanned: 0,
            state: State::Line,
            max_line,
            max_blob,
            max_state: 0,
        }
    }

    /// Accepts a session snapshot of at most `max_bytes`.
    pub fn accept_state(&mut self, max_bytes: u64) {
        self.max_state = max_bytes;
    }

    /// Bounds that fit a run's limits: generous enough for any honest runner, bounded for
    /// a hostile one.
    pub fn for_limits(limits: &Limits) -> Decoder {
        let line = limits.max_output_chars.saturating_mul(2 * 4 * 6) + 1024 * 1024;
        // Tar overhead: headers and padding per file, PAX records for long names.
        let blob = limits.max_output_total_bytes
            + (limits.max_output_files as u64 + 1) * 4096
            + 1024 * 1024;
        Decoder::new(line, blob)
    }

    /// Every line from now on must be authenticated with `key` (the job's).
    pub fn authenticate_with(&mut self, key: &str) {
        self.key = Some(key.as_bytes().to_vec());
    }

    /// The JSON of a line, its MAC checked when a key is set.
    fn open_line<'a>(&self, line: &'a [u8]) -> Result<&'a [u8], ProtocolError> {
        let Some(key) = &self.key else {
            return Ok(line);
        };
        let unauthenticated = |reason: &str| ProtocolError::Unauthenticated {
            reason: reason.to_string(),
        };
        if line.len() < 65 || line[64] != b' ' {
            return Err(unauthenticated("a line without a MAC"));
        }
        let (mac, body) = (&line[..64], &line[65..]);
        let expected = line_mac(key, body);
        // Constant-time comparison: a forger learns nothing from timing.
        let same = mac.len() == expected.len()
            && mac
                .iter()
                .zip(expected.as_bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if !same {
            return Err(unauthenticated("a line whose MAC does not match"));
        }
        Ok(body)
    }

    pub fn push(&mut self, data: &[u8]) -> Result<Vec<Item>, ProtocolError> {
        self.buf.extend_from_slice(data);
        let mut items = Vec::new();
        loop {
            match self.state {
                State::Line => {
                    let found = self.buf[self.scanned..].iter().position(|b| *b == b'\n');
                    let Some(pos) = found.map(|offset| self.scanned + offset) else {
                        self.scanned = self.buf.len();
                        if self.buf.len() > self.max_line {
                            return Err(ProtocolError::LineTooLong {
                                limit: self.max_line,
                            });
                        }
                        break;
                    };
                    if pos > self.max_line {
                        return Err(ProtocolError::LineTooLong {
                            limit: self.max_line,
                        });
                    }
                    let line = self.buf.split_to(pos + 1);
                    self.scanned = 0;
                    let line = &line[..pos];
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    let body = self.open_line(line)?;
                    let event: RunnerEvent =
                        serde_json::from_slice(body).map_err(|e| ProtocolError::BadMessage {
                            reason: e.to_string(),
                        })?;
                    let blob = match &event {
                        RunnerEvent::Outputs { bytes, sha256, .. } => {
                            Some((*bytes, sha256.clone(), self.max_blob))
                        }
                        RunnerEvent::State { bytes, sha256 } => {
                            Some((*bytes, Some(sha256.clone()), self.max_state))
                        }
                        _ => None,
                    };
                    if let Some((bytes, sha256, limit)) = blob {
                        if self.key.is_some() {
                            let Some(announced) = sha256 else {
                                return Err(ProtocolError::Unauthenticated {
                                    reason: "outputs without a digest".to_string(),
                                });
                            };
                            self.blob_digest =
                                Some((Sha256::new(), announced.to_ascii_lowercase()));
                        }
                        if bytes > limit {
                            return Err(ProtocolError::BlobTooLarge {
                                announced: bytes,
                                limit,
                            });
                        }
                        let remaining = bytes;
                        items.push(Item::Event(event));
                        if remaining == 0 {
                            self.check_blob_digest()?;
                            items.push(Item::BlobEnd);
                        } else {
                            self.state = State::Blob { remaining };
                        }
                    } else {
                        items.push(Item::Event(event));
                    }
                }
                State::Blob { remaining } => {
                    if self.buf.is_empty() {
                        break;
                    }
                    let take = remaining.min(self.buf.len() as u64) as usize;
                    let chunk = self.buf.split_to(take).freeze();
                    if let Some((hasher, _)) = self.blob_digest.as_mut() {
                        hasher.update(&chunk);
                    }
                    items.push(Item::BlobChunk(chunk));
                    let left = remaining - take as u64;
                    if left == 0 {
                        self.check_blob_digest()?;
                        items.push(Item::BlobEnd);
                        self.state = State::Line;
                    } else {
                        self.state = State::Blob { remaining: left };
                    }
                }
            }
        }
        if matches!(self.state, State::Line) && self.buf.capacity() > 4 * self.max_line {
            // Keep the buffer from holding on to a large allocation after a big message.
            let rest = self.buf.split().freeze();
            self.buf = BytesMut::from(rest.chunk());
        }
        Ok(items)
    }

    fn check_blob_digest(&mut self) -> Result<(), ProtocolError> {
        if let Some((hasher, announced)) = self.blob_digest.take()
            && hex::encode(hasher.finalize()) != announced
        {
            return Err(ProtocolError::Unauthenticated {
                reason: "a blob does not match its digest".to_string(),
            });
        }
        Ok(())
    }
}

/// The line that asks a waiting runner to restore a session's snapshot before its job is
/// known (the runner's `PREPARE_PREFIX`, then JSON).
pub fn prepare_line(restore: &str, workdir: &str) -> Result<Vec<u8>, serde_json::Error> {
    #[derive(Serialize)]
    struct Prepare<'a> {
        restore: &'a str,
        workdir: &'a str,
    }
    let mut line = b"prepare ".to_vec();
    serde_json::to_writer(&mut line, &Prepare { restore, workdir })?;
    line.push(b'\n');
    Ok(line)
}

#[cfg(test)]
mod tests {
    #[test]
    fn exception_names_are_identifiers_only() {
        for good in ["ValueError", "pandas.errors.ParserError", "_Private", "E1"] {
            assert!(crate::sandbox::outcome::is_exception_name(good), "{good}");
        }
        for bad in [
            "",
            "X\n# Heading",
            "[click](https://evil.example)",
            "a..b",
            "1abc",
            "Err`or",
            &"A".repeat(201),
        ] {
            assert!(!crate::sandbox::outcome::is_exception_name(bad), "{bad}");
        }
        let result: super::RunnerResult = serde_json::from_value(serde_json::json!({
            "status": "error", "exit_code": 1, "stdout": "", "stderr": "",
            "stdout_truncated": false, "stderr_truncated": false, "execution_ms": 1.0,
            "error": {"type": "X\n# Heading [link](https://evil.example)", "message": "m"}
        }))
        .unwrap();
        assert_eq!(result.outcome.error.unwrap().kind, "Exception");
    }

    use super::*;

    fn result_line() -> Vec<u8> {
        br#"{"event":"result","status":"ok","exit_code":0,"stdout":"hi\n","stderr":"","stdout_truncated":false,"stderr_truncated":false,"execution_ms":1.5,"error":null}
"#
        .to_vec()
    }

    #[test]
    fn decodes_events_and_blob_split_anywhere() {
        let mut stream = Vec::new();
        stream
            .extend_from_slice(b"{\"event\":\"ready\",\"protocol\":2}\n{\"event\":\"started\"}\n");
        stream.extend(result_line());
        stream.extend_from_slice(b"{\"event\":\"outputs\",\"bytes\":5,\"flags\":[]}\n");
        stream.extend_from_slice(b"a\nb\nc");
        stream.extend_from_slice(b"{\"event\":\"done\"}\n");
        for split in 1..stream.len() {
            let mut decoder = Decoder::new(4096, 100);
            let mut items = decoder.push(&stream[..split]).unwrap();
            items.extend(decoder.push(&stream[split..]).unwrap());
            let blob: Vec<u8> = items
                .iter()
                .filter_map(|i| match i {
                    Item::BlobChunk(b) => Some(b.to_vec()),
                    _ => None,
                })
                .flatten()
                .collect();
            assert_eq!(blob, b"a\nb\nc", "split at {split}");
            let events: Vec<&RunnerEvent> = items
                .iter()
                .filter_map(|i| match i {
                    Item::Event(e) => Some(e),
                    _ => None,
                })
                .collect();
            assert_eq!(events.len(), 5);
            assert!(matches!(events[2], RunnerEvent::Result(r) if r.stdout == "hi\n"));
            assert_eq!(events[4], &RunnerEvent::Done);
            assert!(items.contains(&Item::BlobEnd));
        }
    }

    #[test]
    fn a_line_delivered_one_byte_at_a_time() {
        let line = result_line();
        let mut decoder = Decoder::new(4096, 100);
        let mut items = Vec::new();
        for (index, byte) in line.iter().enumerate() {
            items.extend(decoder.push(&[*byte]).unwrap());
            if index + 1 < line.len() {
                assert!(items.is_empty());
                // Every byte was looked at once, when it arrived.
                assert_eq!(decoder.scanned, index + 1);
            }
        }
        assert_eq!(items.len(), 1);
        assert!(matches!(&items[0], Item::Event(RunnerEvent::Result(r)) if r.stdout == "hi\n"));
        assert_eq!(decoder.scanned, 0);
    }

    #[test]
    fn a_long_line_split_across_many_pushes() {
        let stdout = "x".repeat(200_000);
        let mut stream = format!(
            r#"{{"event":"result","status":"ok","exit_code":0,"stdout":"{stdout}","stderr":"","stdout_truncated":false,"stderr_truncated":false,"execution_ms":1.5,"error":null}}"#
        )
        .into_bytes();
        stream.extend_from_slice(b"\n{\"event\":\"done\"}\n");
        let mut decoder = Decoder::new(1024 * 1024, 100);
        let mut items = Vec::new();
        for piece in stream.chunks(997) {
            items.extend(decoder.push(piece).unwrap());
        }
        assert_eq!(items.len(), 2);
        assert!(matches!(&items[0], Item::Event(RunnerEvent::Result(r)) if r.stdout == stdout));
        assert_eq!(items[1], Item::Event(RunnerEvent::Done));
    }

    #[test]
    fn ready_carries_the_runner_protocol_version() {
        let mut decoder = Decoder::new(100, 10);
        assert_eq!(
            decoder
                .push(b"{\"event\":\"ready\",\"protocol\":2}\n{\"event\":\"ready\"}\n")
                .unwrap(),
            [
                Item::Event(RunnerEvent::Ready { protocol: Some(2) }),
                Item::Event(RunnerEvent::Ready { protocol: None }),
            ]
        );
    }

    #[test]
    fn only_a_runner_of_this_protocol_version_is_ready() {
        assert_eq!(check_ready("img", Some(PROTOCOL_VERSION)), Ok(()));
        for found in [None, Some(1), Some(PROTOCOL_VERSION + 1)] {
            let err = check_ready("codebox-sandbox:latest", found).unwrap_err();
            let message = err.to_string();
            assert!(message.contains("sandbox image codebox-sandbox:latest is out of date"));
            assert!(message.contains("codebox image build --tag codebox-sandbox:latest"));
            assert!(message.contains("--base codebox-base:bookworm"));
            assert!(message.contains("bash scripts/setup.sh"));
        }
        let message = check_ready("img", None).unwrap_err().to_string();
        assert!(message.contains("no protocol version"), "{message}");
        let message = check_ready("img", Some(1)).unwrap_err().to_string();
        assert!(
            message.contains(&format!(
                "speaks protocol 1, this codebox speaks protocol {PROTOCOL_VERSION}"
            )),
            "{message}"
        );
    }

    #[test]
    fn refuses_an_endless_line() {
        let mut decoder = Decoder::new(100, 100);
        assert!(decoder.push(&[b'x'; 50]).unwrap().is_empty());
        assert_eq!(
            decoder.push(&[b'x'; 60]),
            Err(ProtocolError::LineTooLong { limit: 100 })
        );
    }

    #[test]
    fn refuses_an_oversized_blob_before_reading_it() {
        let mut decoder = Decoder::new(100, 10);
        let err = decoder
            .push(b"{\"event\":\"outputs\",\"bytes\":11}\n")
            .unwrap_err();
        assert_eq!(
            err,
            ProtocolError::BlobTooLarge {
                announced: 11,
                limit: 10
            }
        );
    }

    #[test]
    fn refuses_garbage() {
        let mut decoder = Decoder::new(100, 10);
        assert!(matches!(
            decoder.push(b"not json\n"),
            Err(ProtocolError::BadMessage { .. })
        ));
    }

    #[test]
    fn job_is_one_line() {
        let job = Job {
            code: "print('a')\nprint('b')".into(),
            timeout_s: 1.0,
            memory_mb: 10,
            workdir: "/w".into(),
            output_dir: "/w".into(),
            max_output_chars: 10,
            max_output_files: 1,
            max_output_file_bytes: 1,
            max_output_total_bytes: 1,
            files: vec![],
            scan_imports: false,
            measure_pictures: false,
            session: None,
            live: None,
            auth: new_job_key(),
        };
        let line = job.to_line().unwrap();
        assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(job.auth.len(), 64, "256 bits of key");
        assert_ne!(job.auth, new_job_key(), "one key per job");
    }

    fn signed(key: &str, body: &str) -> Vec<u8> {
        format!("{} {body}\n", line_mac(key.as_bytes(), body.as_bytes())).into_bytes()
    }

    #[test]
    fn after_the_job_every_line_must_carry_the_keys_mac() {
        let started = r#"{"event":"started"}"#;
        let mut decoder = Decoder::new(1 << 20, 1 << 20);
        decoder.authenticate_with("the-key");
        assert_eq!(
            decoder.push(&signed("the-key", started)).unwrap(),
            [Item::Event(RunnerEvent::Started)]
        );
        for forged in [
            format!("{started}\n").into_bytes(),
            signed("another-key", started),
            format!("{} {started}\n", "0".repeat(64)).into_bytes(),
        ] {
            let mut decoder = Decoder::new(1 << 20, 1 << 20);
            decoder.authenticate_with("the-key");
            assert!(
                matches!(
                    decoder.push(&forged),
                    Err(ProtocolError::Unauthenticated { .. })
                ),
                "{}",
                String::from_utf8_lossy(&forged)
            );
        }
    }

    #[test]
    fn the_output_archive_must_match_its_announced_digest() {
        let archive = b"tar bytes";
        let digest = hex::encode(Sha256::digest(archive));
        let outputs = format!(r#"{{"event":"outputs","bytes":9,"sha256":"{digest}","flags":[]}}"#);
        let mut decoder = Decoder::new(1 << 20, 1 << 20);
        decoder.authenticate_with("k");
        let mut stream = signed("k", &outputs);
        stream.extend_from_slice(archive);
        let items = decoder.push(&stream).unwrap();
        assert_eq!(items.last(), Some(&Item::BlobEnd));

        let mut decoder = Decoder::new(1 << 20, 1 << 20);
        decoder.authenticate_with("k");
        let mut stream = signed("k", &outputs);
        stream.extend_from_slice(b"tar bytez");
        assert!(matches!(
            decoder.push(&stream),
            Err(ProtocolError::Unauthenticated { .. })
        ));
    }
}
