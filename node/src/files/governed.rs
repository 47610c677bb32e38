//! The node's side of the file endpoint: layer 1 (the identity's scope) checked before a
//! directive is issued, a refusal recorded as a security event, and the owner's commands
//! (grant, revoke, history, undo, rollback).

use std::sync::Arc;

use clawnet_crypto::IdentityId;
use clawnet_protocol::SessionId;
use clawnet_protocol::audit::{Actor, AuditDraft, Outcome};
use clawnet_storage::files::{FileAccess, FileOpRecord, FileScope};
use clawnet_storage::{Change, NodeDb};

use super::endpoint::{EndpointConfig, FileEndpoint, RollbackFilter, RollbackPlan};
use super::path::FsPath;
use super::request::{FileDirective, FileReply, FileRequest};
use super::{FileError, Layer, scope};

/// The owner's files as agents reach them: both layers, in order.
#[derive(Debug, Clone)]
pub struct GovernedFiles {
    db: NodeDb,
    endpoint: Arc<FileEndpoint>,
}

impl GovernedFiles {
    /// Opens the in-node endpoint over `db` (settling what a crash interrupted).
    pub fn open(config: &EndpointConfig, db: NodeDb) -> Result<GovernedFiles, FileError> {
        let endpoint = Arc::new(FileEndpoint::open(config, db.clone())?);
        Ok(GovernedFiles { db, endpoint })
    }

    /// The endpoint (layer 2).
    pub fn endpoint(&self) -> &FileEndpoint {
        &self.endpoint
    }

    /// An identity agent's request: layer 1, then the endpoint. Blocking.
    pub fn request(
        &self,
        identity: IdentityId,
        session: Option<SessionId>,
        request: FileRequest,
    ) -> Result<FileReply, FileError> {
        let actor = Actor::Identity(identity);
        let scope = self.db.read()?.file_scope(&identity)?;
        let basis = match scope::authorize(&scope, &request) {
            Ok(basis) => basis,
            Err(reason) => {
                self.db.append(AuditDraft::new(
                    actor,
                    "security.files",
                    format!("{} {}", request.name(), request.describe()),
                    Layer::Scope.label(),
                    Outcome::Denied(reason.clone()),
                ))?;
                return Err(FileError::Denied { layer: Layer::Scope, reason });
            }
        };
        self.endpoint.execute(&FileDirective { actor, session, basis, request })
    }

    /// [`GovernedFiles::request`] off the async runtime's threads.
    pub async fn request_async(
        &self,
        identity: IdentityId,
        session: Option<SessionId>,
        request: FileRequest,
    ) -> Result<FileReply, FileError> {
        let files = self.clone();
        tokio::task::spawn_blocking(move || files.request(identity, session, request))
            .await
            .map_err(|err| FileError::Io { context: "running a file operation", detail: err.to_string() })?
    }

    /// The identity's scope.
    pub fn scope(&self, identity: IdentityId) -> Result<FileScope, FileError> {
        Ok(self.db.read()?.file_scope(&identity)?)
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
