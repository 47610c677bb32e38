//! The node's side of the file endpoint: layer 1 (the identity's scope) checked before a
//! directive is issued, a refusal recorded as a security event, the directive sent to the
//! endpoint that holds its paths (in this process, or on a device of the owner), and the
//! owner's commands (grant, revoke, history, undo, rollback).

use std::sync::Arc;

use clawnet_crypto::IdentityId;
use clawnet_protocol::SessionId;
use clawnet_protocol::audit::{Actor, AuditDraft, Outcome};
use clawnet_storage::files::{FileAccess, FileOpRecord, FileScope};
use clawnet_storage::{Change, NodeDb};

use super::endpoint::{EndpointConfig, FileEndpoint, RollbackFilter, RollbackPlan};
use super::path::FsPath;
use super::remote::{EndpointAnswer, EndpointCall, OnlineDevice, RemoteEndpoints};
use super::request::{FileDirective, FileReply, FileRequest};
use super::{FileError, Layer, scope};

/// The owner's files as agents reach them: both layers, in order.
#[derive(Debug, Clone)]
pub struct GovernedFiles {
    db: NodeDb,
    endpoint: Arc<FileEndpoint>,
    remote: Arc<RemoteEndpoints>,
}

impl GovernedFiles {
    /// Opens the in-node endpoint over `db` (settling what a crash interrupted); no remote
    /// endpoint is reachable until [`RemoteEndpoints::attach`] gives them the network.
    pub fn open(config: &EndpointConfig, db: NodeDb) -> Result<GovernedFiles, FileError> {
        let endpoint = Arc::new(FileEndpoint::open(config, db.clone())?);
        let local = endpoint.whitelist().folders().iter().filter_map(|(path, _)| FsPath::parse(path).ok()).collect();
        let remote = Arc::new(RemoteEndpoints::new(db.clone(), local));
        Ok(GovernedFiles { db, endpoint, remote })
    }

    /// The in-node endpoint (layer 2 for this node's folders).
    pub fn endpoint(&self) -> &FileEndpoint {
        &self.endpoint
    }

    /// The endpoints on the owner's other devices.
    pub fn remote(&self) -> &Arc<RemoteEndpoints> {
        &self.remote
    }

    /// An identity agent's request on this node's own folders: layer 1, then the in-node
    /// endpoint. Blocking. Agents go through [`GovernedFiles::request_async`], which also
    /// reaches the owner's other devices.
    pub fn request(
        &self,
        identity: IdentityId,
        session: Option<SessionId>,
        request: FileRequest,
    ) -> Result<FileReply, FileError> {
        let directive = self.authorize(identity, session, request)?;
        self.endpoint.execute(&directive)
    }

    /// An identity agent's request: layer 1, then the endpoint holding its paths (here, off the
    /// runtime's threads, or on a connected device of the owner).
    pub async fn request_async(
        &self,
        identity: IdentityId,
        session: Option<SessionId>,
        request: FileRequest,
    ) -> Result<FileReply, FileError> {
        let files = self.clone();
        let Some(device) = self.remote.route(&request)? else {
            return blocking(move || files.request(identity, session, request)).await;
        };
        let directive = blocking(move || files.authorize(identity, session, request)).await?;
        match self.remote.call(&device, &EndpointCall::Execute(directive.clone())).await {
            Ok(EndpointAnswer::Reply(reply)) => Ok(reply),
            Ok(other) => Err(unexpected(&device, &other)),
            Err(err) if err.is_denial() => {
                let remote = self.remote.clone();
                let denied = err.clone();
                blocking(move || remote.record_device_denial(&device, directive.actor, &directive.request, &denied))
                    .await?;
                Err(err)
            }
            Err(err) => Err(err),
        }
    }

    /// Layer 1: the directive for `request` if the identity's scope allows it; otherwise a
    /// security event and the denial.
    fn authorize(
        &self,
        identity: IdentityId,
        session: Option<SessionId>,
        request: FileRequest,
    ) -> Result<FileDirective, FileError> {
        let actor = Actor::Identity(identity);
        let scope = self.db.file_scope(&identity)?;
        match scope::authorize(&scope, &request) {
            Ok(basis) => Ok(FileDirective { actor, session, basis, request }),
            Err(reason) => {
                self.db.append(AuditDraft::new(
                    actor,
                    "security.files",
                    format!("{} {}", request.name(), request.describe()),
                    Layer::Scope.label(),
                    Outcome::Denied(reason.clone()),
                ))?;
                Err(FileError::Denied { layer: Layer::Scope, reason })
            }
        }
    }

    /// The identity's scope.
    pub fn scope(&self, identity: IdentityId) -> Result<FileScope, FileError> {
        Ok(self.db.file_scope(&identity)?)
    }

    /// Grants `identity` the folder `root` (audited, owner's decision).
    pub fn grant(&self, identity: IdentityId, root: &FsPath, access: FileAccess) -> Result<FileScope, FileError> {
        let mut scope = self.scope(identity)?;
        scope::grant(&mut scope, root, access);
        if scope.grants.len() > clawnet_storage::files::MAX_GRANTS {
            return Err(FileError::TooLarge {
                what: "the identity's grants".into(),
                limit: clawnet_storage::files::MAX_GRANTS as u64,
            });
        }
        self.store_scope(identity, &scope, format!("grant {root} {}", access.as_str()))?;
        Ok(scope)
    }

    /// Takes the folder `root` back from `identity`.
    pub fn revoke(&self, identity: IdentityId, root: &FsPath) -> Result<FileScope, FileError> {
        let mut scope = self.scope(identity)?;
        if !scope::revoke(&mut scope, root) {
            return Err(FileError::Invalid(format!("the identity has no grant for {root}")));
        }
        self.store_scope(identity, &scope, format!("revoke {root}"))?;
        Ok(scope)
    }

    /// The journal, filtered.
    pub fn history(&self, filter: &RollbackFilter) -> Result<Vec<FileOpRecord>, FileError> {
        self.endpoint.history(filter)
    }

    /// Undoes one operation for the owner.
    pub fn undo(&self, op: u64) -> Result<u64, FileError> {
        self.endpoint.undo(op, Actor::Owner)
    }

    /// What a rollback would do.
    pub fn plan_rollback(&self, filter: &RollbackFilter) -> Result<RollbackPlan, FileError> {
        self.endpoint.plan_rollback(filter)
    }

    /// Rolls back for the owner.
    pub fn rollback(&self, filter: &RollbackFilter) -> Result<Vec<u64>, FileError> {
        self.endpoint.rollback(filter, Actor::Owner)
    }

    /// The journal of the connected device `device`, filtered. Blocking, on the runtime.
    pub fn device_history(&self, device: &str, filter: &RollbackFilter) -> Result<Vec<FileOpRecord>, FileError> {
        match self.call_device(device, EndpointCall::History(filter.clone()))? {
            (_, EndpointAnswer::History(records)) => Ok(records),
            (device, other) => Err(unexpected(&device, &other)),
        }
    }

    /// Undoes operation `op` of the device `device` for the owner (the device checks its
    /// whitelist again). Blocking, on the runtime.
    pub fn device_undo(&self, device: &str, op: u64) -> Result<u64, FileError> {
        match self.call_device(device, EndpointCall::Undo { op, actor: Actor::Owner })? {
            (_, EndpointAnswer::Undone(undo)) => Ok(undo),
            (device, other) => Err(unexpected(&device, &other)),
        }
    }

    /// What rolling back `filter` on the device `device` would do. Blocking, on the runtime.
    pub fn device_plan_rollback(&self, device: &str, filter: &RollbackFilter) -> Result<RollbackPlan, FileError> {
        match self.call_device(device, EndpointCall::PlanRollback(filter.clone()))? {
            (_, EndpointAnswer::Plan(plan)) => Ok(plan),
            (device, other) => Err(unexpected(&device, &other)),
        }
    }

    /// Rolls back `filter` on the device `device` for the owner. Blocking, on the runtime.
    pub fn device_rollback(&self, device: &str, filter: &RollbackFilter) -> Result<Vec<u64>, FileError> {
        match self.call_device(device, EndpointCall::Rollback { filter: filter.clone(), actor: Actor::Owner })? {
            (_, EndpointAnswer::RolledBack(undone)) => Ok(undone),
            (device, other) => Err(unexpected(&device, &other)),
        }
    }

    fn call_device(&self, name: &str, call: EndpointCall) -> Result<(OnlineDevice, EndpointAnswer), FileError> {
        let device = self.remote.by_name(name)?;
        let answer = self.remote.call_blocking(&device, &call)?;
        Ok((device, answer))
    }

    fn store_scope(&self, identity: IdentityId, scope: &FileScope, what: String) -> Result<(), FileError> {
        let stored = scope.clone();
        self.db.commit(Change::new(move |txn| txn.put_file_scope(&identity, &stored)).with_audit(AuditDraft::new(
            Actor::Owner,
            "files.scope",
            format!("identity {}: {what}", &identity.to_hex()[..8]),
            "owner command",
            Outcome::Success,
        )))?;
        Ok(())
    }
}

/// Runs `work` on the runtime's blocking threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, FileError> + Send + 'static,
) -> Result<T, FileError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| FileError::Io { context: "running a file operation", detail: err.to_string() })?
}

fn unexpected(device: &OnlineDevice, answer: &EndpointAnswer) -> FileError {
    FileError::Remote { device: device.name.clone(), detail: format!("unexpected answer {answer:?}") }
}
