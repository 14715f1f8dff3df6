//! A conversation's next run, prepared while its caller is still deciding what to run: a
//! warm container is taken from the pool, shown the conversation's snapshot and told to
//! restore it, then held (`pool::hold`) until that run claims it.

use std::path::Path;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::{ExecutionRequest, Executor, ExecutorError};
use crate::container::engine::Containers;
use crate::sandbox::held::StateIdentity;
use crate::sandbox::limits::Limits;
use crate::sandbox::pool::WarmContainer;
use crate::sandbox::protocol::prepare_line;
use crate::sandbox::session::STATE_RESTORE_NAME;
use crate::sandbox::{INPUT_DIR, OUTPUT_DIR};

impl<E: Containers + 'static> Executor<E> {
    /// Holds a warm container for `conversation` whose runner restores `state` (the
    /// conversation's snapshot file) now. Its next run takes it when its snapshot is still
    /// that very file (see `StateIdentity`); otherwise it runs as before. True when a
    /// container holds that state; false when the pool had none to spare within
    /// `patience` (none is started for it, and the pool's last waiting container stays for
    /// runs that will certainly come), when the conversation's run started meanwhile, or
    /// when sessions are off.
    pub async fn prepare(
        &self,
        conversation: &str,
        state: &Path,
        limits: &Limits,
        patience: Duration,
    ) -> Result<bool, ExecutorError> {
        let (Some(pool), Some(_)) = (&self.pool, self.state_mb) else {
            return Ok(false);
        };
        let identity = StateIdentity::of(state).map_err(ExecutorError::Stage)?;
        let identity_again = identity.clone();
        if pool.holds(conversation, &identity) {
            return Ok(true);
        }
        pool.expect(conversation);
        let Some(mut warm) = pool.take_spare(limits, patience).await else {
            pool.forget(conversation);
            return Ok(false);
        };
        let (source, target) = (
            state.to_path_buf(),
            warm.inputs_dir.join(STATE_RESTORE_NAME),
        );
        let linked = tokio::task::spawn_blocking(move || {
            std::fs::hard_link(&source, &target)
                .or_else(|_| std::fs::copy(&source, &target).map(|_| ()))
        })
        .await
        .map_err(|join| std::io::Error::other(join.to_string()))
        .and_then(|r| r);
        if let Err(err) = linked {
            pool.retire(warm.live.guard, warm.inputs_dir);
            return Err(ExecutorError::Stage(err));
        }
        let line = prepare_line(&format!("{INPUT_DIR}/{STATE_RESTORE_NAME}"), OUTPUT_DIR)?;
        let input = &mut warm.live.attached.input;
        let written = async {
            input.write_all(&line).await?;
            input.flush().await
        };
        if let Err(err) = written.await {
            tracing::debug!(error = %err, "a held container's runner did not take its state");
            pool.retire_dead(warm.live.guard, warm.inputs_dir);
            return Ok(false);
        }
        tracing::debug!(run_id = %warm.live.run_id, "a container holds a conversation's state");
        pool.hold(conversation.to_string(), warm, identity);
        Ok(pool.holds(conversation, &identity_again))
    }

    /// Whether a container is held for `conversation` (with whatever state).
    pub fn holds_for(&self, conversation: &str) -> bool {
        self.pool
            .as_ref()
            .is_some_and(|pool| pool.holds_any(conversation))
    }

    /// The container held for this run's conversation, when it restored exactly the
    /// snapshot the run was given; a held one that did not is removed.
    pub(super) fn held_for(&self, request: &ExecutionRequest) -> Option<WarmContainer<E>> {
        let pool = self.pool.as_ref()?;
        let session = self.session_of(request)?;
        let conversation = session.conversation.as_deref()?;
        let (warm, held_state) = pool.claim(conversation, &request.limits)?;
        let given = request
            .input_dir
            .as_ref()
            .filter(|_| session.restore)
            .and_then(|dir| StateIdentity::of(&dir.join(STATE_RESTORE_NAME)).ok());
        if given.as_ref() == Some(&held_state) {
            return Some(warm);
        }
        tracing::debug!(run_id = %warm.live.run_id, "a held container's state is not the run's; removed");
        pool.retire(warm.live.guard, warm.inputs_dir);
        None
    }
}
