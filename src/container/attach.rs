//! Starting a container with its one attach stream, the same way for every kind.

use std::sync::Arc;

use bollard::models::ContainerCreateBody;

use super::engine::{Attached, Containers, EngineError};
use super::guard::ContainerGuard;
use super::retirer::Retirer;

/// Creates, attaches (before start, so no output is missed) and starts a container from
/// any body; the guard holds it from the creation request on, and hands it to `retirer`
/// when dropped.
pub async fn start_attached<E: Containers + 'static>(
    engine: &Arc<E>,
    retirer: &Arc<Retirer>,
    name: String,
    body: ContainerCreateBody,
) -> Result<(ContainerGuard<E>, String, Attached), EngineError> {
    let mut guard = ContainerGuard::create(engine, retirer, name, body);
    let id = guard.created().await?;
    let attached = engine.attach(&id).await?;
    engine.start(&id).await?;
    Ok((guard, id, attached))
}
