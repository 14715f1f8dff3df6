//! One run's stream, from the job's hand-over to its ending: a state object with one
//! method per runner event, each saying whether the stream goes on or how it ended.

use std::ops::ControlFlow;
use std::time::Instant;

use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::{Executor, ExecutorError, elapsed_ms};
use crate::config::Runtime;
use crate::container::engine::{Chunk, Containers, InputSink};
use crate::sandbox::deadlines::{Deadlines, Phase};
use crate::sandbox::ending::{Ending, RunRecord, Transcript};
use crate::sandbox::limits::Limits;
use crate::sandbox::live::{LiveContainer, RUNNER_DIAGNOSTICS_BYTES};
use crate::sandbox::order;
use crate::sandbox::protocol::{
    Item, Job, LiveJob, OutdatedImage, RunnerEvent, RunnerResult, SiteDirs, check_ready,
};
use crate::sandbox::result::{Flag, MeasuredPicture, Status};
use crate::sandbox::session::{SessionIo, SessionJob, state_budget};
use crate::sandbox::snapshot_spool::SnapshotSpool;
use crate::sandbox::watch::{OutputStream, RunEvent, RunWatch};
use crate::sandbox::{ExecutionRequest, INPUT_DIR, OUTPUT_DIR};

/// The longest picture measure the runner's report is believed to have taken: more than
/// its own budget (codebox_runner's MEASURE_PICTURES_S) ever lets it.
const MAX_MEASURE_MS: f64 = 10_000.0;

/// A stream that ended before the code could start, with nothing to report: the caller
/// gets an error, never a result.
#[derive(Debug)]
enum NeverStarted {
    /// The code did not start within the startup timeout; the container was killed.
    StartupTimeout,
    /// The runner said `ready` in another protocol version: the image must be rebuilt. It
    /// never got the job; the container was killed.
    Outdated(OutdatedImage),
}

/// Where the stream stopped.
type End = Result<Ending, NeverStarted>;
/// What one step of the stream decided.
type Step = Result<ControlFlow<End>, ExecutorError>;

pub(super) struct RunStream<'a, E: Containers + 'static> {
    executor: &'a Executor<E>,
    live: &'a mut LiveContainer<E>,
    watch: Option<&'a RunWatch>,
    session: Option<&'a SessionIo>,
    /// The job, until it is handed to a runner that said `ready` in this protocol version:
    /// an out-of-date image never runs the code.
    job_line: Option<Vec<u8>>,
    auth: String,
    /// Fixed from the hand-off on; nothing the container sends moves them.
    deadlines: Deadlines,
    phase: Phase,
    transcript: Transcript,
    outputs: Option<tokio::fs::File>,
    snapshot: SnapshotSpool,
    installs_requested: u32,
    outputs_announced: bool,
    handoff_started: Instant,
    code_started: Option<Instant>,
    collect_started: Option<Instant>,
}

impl<'a, E: Containers + 'static> RunStream<'a, E> {
    pub(super) fn new(
        executor: &'a Executor<E>,
        live: &'a mut LiveContainer<E>,
        request: &'a ExecutionRequest,
        limits: &Limits,
    ) -> Result<RunStream<'a, E>, ExecutorError> {
        let watch = request.watch.as_ref().filter(|watch| !watch.is_closed());
        let session = executor.session_of(request);
        let job = Job {
            code: request.code.clone(),
            timeout_s: limits.timeout.as_secs_f64(),
            memory_mb: limits.memory_mb,
            workdir: OUTPUT_DIR.to_string(),
            output_dir: OUTPUT_DIR.to_string(),
            max_output_chars: limits.max_output_chars,
            max_output_files: limits.max_output_files,
            max_output_file_bytes: limits.max_output_file_bytes,
            max_output_total_bytes: limits.max_output_total_bytes,
            files: request.files.clone(),
            scan_imports: executor.packages.is_some(),
            session: session.map(|io| SessionJob::for_io(io, INPUT_DIR)),
            live: watch.map(|_| LiveJob::for_limits(limits)),
            measure_pictures: limits.runtime == Runtime::Runc,
            auth: (executor.job_keys)(),
        };
        let mut deadlines = Deadlines::new(
            tokio::time::Instant::now(),
            executor.startup_timeout,
            limits.timeout,
        );
        if let Some(io) = session {
            deadlines = deadlines.with_session(state_budget(limits.timeout));
            live.decoder.accept_state(io.max_bytes);
        }
        let transcript = Transcript {
            diagnostics: std::mem::take(&mut live.diagnostics),
            ..Transcript::default()
        };
        Ok(RunStream {
            executor,
            watch,
            session,
            job_line: Some(job.to_line()?),
            auth: job.auth,
            deadlines,
            phase: Phase::Starting,
            transcript,
            outputs: None,
            snapshot: SnapshotSpool::default(),
            installs_requested: 0,
            outputs_announced: false,
            handoff_started: Instant::now(),
            code_started: None,
            collect_started: None,
            live,
        })
    }

    /// Reads the stream to its ending. The session's snapshot is put in place only when
    /// the run ended by the protocol's rules, and removed otherwise.
    pub(super) async fn read(mut self) -> Result<RunRecord, ExecutorError> {
        if self.live.ready {
            self.hand_over_job().await;
        }
        let end = loop {
            if let ControlFlow::Break(end) = self.step().await? {
                break end;
            }
        };
        self.transcript.snapshot_arrived = self.snapshot.arrived && matches!(end, Ok(Ending::Done));
        if let Some(io) = self.session {
            if self.transcript.snapshot_arrived {
                let spool_error = self.executor.spool_error(&self.live.run_id);
                self.snapshot
                    .place(&io.save_to)
                    .await
                    .map_err(spool_error)?;
            } else {
                self.snapshot.discard(&io.save_to).await;
            }
        }
        if self.transcript.result.is_none() {
            // The runner could not say how long the code ran: it ran until the ending.
            self.transcript.execution_ms = self.code_started.map_or(0.0, elapsed_ms);
        }
        tracing::debug!(run_id = %self.live.run_id, ending = ?end, "sandbox stream ended");
        match end {
            Ok(ending) => Ok(RunRecord {
                ending,
                transcript: self.transcript,
            }),
            Err(NeverStarted::Outdated(outdated)) => Err(outdated.into()),
            Err(NeverStarted::StartupTimeout) => Err(ExecutorError::StartupTimeout {
                seconds: self.executor.startup_timeout.as_secs_f64(),
                image: self.executor.image.clone(),
            }),
        }
    }

    /// One chunk of the stream, under the deadline of the phase it is in.
    async fn step(&mut self) -> Step {
        let deadline = self.deadlines.for_phase(self.phase);
        let next = tokio::time::timeout_at(deadline, self.live.attached.output.next()).await;
        let Ok(next) = next else {
            return self.kill_for(self.timed_out()).await;
        };
        let data = match next {
            None => return Ok(ControlFlow::Break(Ok(Ending::StreamEnded))),
            Some(Err(err)) => {
                tracing::warn!(run_id = %self.live.run_id, error = %err, "sandbox stream ended with an error");
                return Ok(ControlFlow::Break(Ok(Ending::StreamFailed(err))));
            }
            Some(Ok(Chunk::Stderr(data))) => {
                self.keep_diagnostics(&data);
                return Ok(ControlFlow::Continue(()));
            }
            Some(Ok(Chunk::Stdout(data))) => data,
        };
        let items = match self.live.decoder.push(&data) {
            Ok(items) => items,
            Err(err) => return self.kill_for(Ok(Ending::ProtocolError(err))).await,
        };
        for item in items {
            if let ControlFlow::Break(end) = self.on_item(item).await? {
                return Ok(ControlFlow::Break(end));
            }
        }
        Ok(ControlFlow::Continue(()))
    }

    fn timed_out(&self) -> End {
        match self.phase {
            Phase::Starting => Err(NeverStarted::StartupTimeout),
            Phase::Running => Ok(Ending::HostTimeout),
            Phase::Collecting => Ok(Ending::CollectionTimeout),
        }
    }

    /// Every ending the host decides kills the container first.
    async fn kill_for(&mut self, end: End) -> Step {
        self.executor.engine.kill(&self.live.id).await?;
        Ok(ControlFlow::Break(end))
    }

    /// The runner's own stderr (never the user's), bounded.
    fn keep_diagnostics(&mut self, data: &[u8]) {
        let kept = &mut self.transcript.diagnostics;
        let room = RUNNER_DIAGNOSTICS_BYTES.saturating_sub(kept.len());
        kept.extend_from_slice(&data[..data.len().min(room)]);
    }

    async fn on_item(&mut self, item: Item) -> Step {
        let progress = order::Progress {
            job_handed: self.job_line.is_none(),
            installs_requested: self.installs_requested,
            outputs_announced: self.outputs_announced,
            state_announced: self.snapshot.announced,
            session: self.session.is_some(),
            live: self.watch.is_some(),
        };
        if let Err(reason) = order::check(&item, self.phase, progress) {
            return self.kill_for(Ok(Ending::ProtocolError(reason))).await;
        }
        match item {
            Item::Event(RunnerEvent::Ready { protocol }) => self.on_ready(protocol).await,
            Item::Event(RunnerEvent::Missing { modules }) => self.on_missing(modules).await,
            Item::Event(RunnerEvent::Started) => Ok(self.on_started()),
            Item::Event(RunnerEvent::Output {
                stream,
                text,
                skipped,
            }) => Ok(self.on_output(stream, text, skipped)),
            Item::Event(RunnerEvent::Result(result)) => Ok(self.on_result(result).await),
            Item::Event(RunnerEvent::Outputs {
                flags,
                pictures,
                measure_ms,
                ..
            }) => self.on_outputs(flags, pictures, measure_ms),
            Item::Event(RunnerEvent::State { .. }) => self.on_state().await,
            Item::BlobChunk(bytes) => self.on_blob_chunk(&bytes).await,
            Item::BlobEnd => self.on_blob_end().await,
            Item::Event(RunnerEvent::Done) => Ok(self.on_done()),
        }
    }

    /// The runner speaks this protocol (or the image is out of date): it gets the job.
    async fn on_ready(&mut self, protocol: Option<u32>) -> Step {
        if let Err(outdated) = check_ready(&self.live.image, protocol) {
            return self.kill_for(Err(NeverStarted::Outdated(outdated))).await;
        }
        self.live.ready = true;
        self.hand_over_job().await;
        Ok(ControlFlow::Continue(()))
    }

    async fn hand_over_job(&mut self) {
        if let Some(line) = self.job_line.take() {
            hand_off(&mut self.live.attached.input, &line, "job").await;
            self.live.decoder.authenticate_with(&self.auth);
            self.deadlines.handed_over(tokio::time::Instant::now());
        }
    }

    /// The code is stopped at an import the sandbox cannot find; the host's deadlines wait
    /// while the packages are made ready (or refused), then the runner hears which.
    async fn on_missing(&mut self, modules: Vec<String>) -> Step {
        self.installs_requested += 1;
        if let Some(watch) = self.watch {
            // Names come from the code's pipe: bounded before anyone shows them.
            watch.publish(RunEvent::Installing {
                modules: modules
                    .iter()
                    .take(10)
                    .map(|m| m.chars().take(100).collect())
                    .collect(),
            });
        }
        let install_started = tokio::time::Instant::now();
        let resolved = self.executor.resolve_packages(&modules).await;
        self.deadlines.add_install(install_started.elapsed());
        let reply = match resolved {
            Ok(prepared) => {
                let reply = SiteDirs {
                    site_dirs: prepared.site_dirs.clone(),
                    error: None,
                };
                self.transcript.packages.push(prepared);
                reply
            }
            Err(refusal) => {
                let reply = SiteDirs {
                    site_dirs: Vec::new(),
                    error: Some(refusal.error.message.clone()),
                };
                let flag = match refusal.status {
                    Status::Refused => "package_refused",
                    _ => "package_install_failed",
                };
                self.transcript
                    .flags
                    .push(Flag::named(flag, &refusal.module));
                self.transcript.refusals.push(refusal);
                reply
            }
        };
        hand_off(
            &mut self.live.attached.input,
            &reply.to_line()?,
            "package directories",
        )
        .await;
        Ok(ControlFlow::Continue(()))
    }

    fn on_started(&mut self) -> ControlFlow<End> {
        self.transcript.started = true;
        self.transcript.phases.handoff_ms = elapsed_ms(self.handoff_started);
        self.phase = Phase::Running;
        self.code_started = Some(Instant::now());
        if let Some(watch) = self.watch {
            watch.publish(RunEvent::Started);
        }
        ControlFlow::Continue(())
    }

    fn on_output(&mut self, stream: OutputStream, text: String, skipped: u64) -> ControlFlow<End> {
        if let Some(watch) = self.watch {
            watch.publish(RunEvent::Output {
                stream,
                text,
                skipped_chars: skipped,
            });
        }
        ControlFlow::Continue(())
    }

    async fn on_result(&mut self, result: RunnerResult) -> ControlFlow<End> {
        self.phase = Phase::Collecting;
        // No more package requests: the runner's stdin is done.
        let _ = self.live.attached.input.shutdown().await;
        self.collect_started = Some(Instant::now());
        self.transcript.result = Some(result);
        ControlFlow::Continue(())
    }

    /// The output tar follows; it is spooled to an unnamed temporary file.
    fn on_outputs(
        &mut self,
        flags: Vec<Flag>,
        pictures: Vec<MeasuredPicture>,
        measure_ms: f64,
    ) -> Step {
        self.outputs_announced = true;
        self.transcript.flags.extend(flags);
        self.transcript.pictures = pictures;
        // The runner's own figure, from inside the sandbox: believed up to a bound.
        self.transcript.phases.measure_ms = measure_ms.clamp(0.0, MAX_MEASURE_MS);
        let file = tempfile::tempfile().map_err(self.executor.spool_error(&self.live.run_id))?;
        self.outputs = Some(tokio::fs::File::from_std(file));
        Ok(ControlFlow::Continue(()))
    }

    /// The session's snapshot follows (ignored for a job without a session).
    async fn on_state(&mut self) -> Step {
        if let Some(io) = self.session {
            let spool_error = self.executor.spool_error(&self.live.run_id);
            self.snapshot.open(&io.save_to).await.map_err(spool_error)?;
        }
        Ok(ControlFlow::Continue(()))
    }

    async fn on_blob_chunk(&mut self, bytes: &[u8]) -> Step {
        let file = match self.snapshot.file.as_mut() {
            Some(file) => Some(file),
            None => self.outputs.as_mut(),
        };
        if let Some(file) = file {
            let spool_error = self.executor.spool_error(&self.live.run_id);
            file.write_all(bytes).await.map_err(spool_error)?;
        }
        Ok(ControlFlow::Continue(()))
    }

    async fn on_blob_end(&mut self) -> Step {
        if self.snapshot.file.is_some() {
            let spool_error = self.executor.spool_error(&self.live.run_id);
            self.snapshot.finish().await.map_err(spool_error)?;
        } else {
            self.transcript.archive = self.outputs.take();
        }
        Ok(ControlFlow::Continue(()))
    }

    fn on_done(&mut self) -> ControlFlow<End> {
        self.transcript.phases.collect_ms = self.collect_started.map_or(0.0, elapsed_ms);
        ControlFlow::Break(Ok(Ending::Done))
    }
}

/// Writes one line to the runner's stdin. A runner that died closes stdin; the stream,
/// read next, tells why, so a failed write is only logged.
pub(super) async fn hand_off(input: &mut InputSink, line: &[u8], what: &'static str) {
    let written = async {
        input.write_all(line).await?;
        input.flush().await
    };
    if let Err(err) = written.await {
        tracing::debug!(error = %err, what, "hand-off to the runner interrupted");
    }
}
