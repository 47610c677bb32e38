//! The API server (axum on a loopback listener). Answers are JSON; the owner's chat with an agent
//! (`POST /v1/chat`) and the live event feed (`GET /v1/events`) stream newline-delimited JSON.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clawnet_crypto::{Fingerprint, Hash32, HashDomain};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{
    AddContact, AddMemory, ApiAnnouncement, Assign, CreateIdentity, CreateInvite, EditMemory, ErrorBody, api_file,
};
use crate::agents::brain::AnyBrain;
use crate::agents::memory::{MemoryItem, MemoryScope, MemoryWriter, parse_kind};
use crate::approvals::ApprovalView;
use crate::chat::{ChatLine, ChatRequest, chat_turn};
use crate::config::ApiSettings;
use crate::contacts::DEFAULT_INVITE_VALIDITY;
use crate::error::NodeError;
use crate::files::FileError;
use crate::files::owner::{
    self, FileOpView, FolderView, GrantRequest, JournalQuery, RollbackRequest, RollbackView, ScopeView, UndoRequest,
};
use crate::files::remote::{CertifyRequest, DeviceView, certify};
use crate::node::Node;
use crate::sessions::{NodeEvent, SessionDetail, SessionView};
use crate::views::{AuditSummaryView, ContactTagsView, ContactView, IdentityView, InviteView, StatusView};

/// A running API server.
#[derive(Debug)]
pub struct ApiServer {
    address: SocketAddr,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

#[derive(Debug, Clone)]
struct ApiState {
    node: Arc<Node>,
    /// The brain the owner's agents think with.
    brain: Arc<AnyBrain>,
    /// Hash of the token, compared in constant time per request.
    token_hash: Hash32,
    /// Cancelled when the API stops: ends the streams that would otherwise never finish.
    stop: CancellationToken,
}

/// Request body of `POST /v1/approvals/{id}/reject`; the body may be left out (no reason).
/// The CLI never builds it itself: [`super::ApiClient::reject`] does.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct RejectApproval {
    /// Why, told to the other owner where one waits for an answer.
    #[serde(default)]
    pub(super) reason: String,
}

/// How long a quiet event stream waits before it sends an empty line, so that a watcher that
/// went away is noticed (the write fails) and its subscription dropped.
const EVENT_HEARTBEAT: Duration = Duration::from_secs(15);

impl ApiServer {
    /// Binds the loopback listener, announces it in `api.json` and serves until `shutdown`.
    pub async fn start(
        node: Arc<Node>,
        brain: Arc<AnyBrain>,
        settings: &ApiSettings,
        shutdown: CancellationToken,
    ) -> Result<ApiServer, NodeError> {
        let listener = tokio::net::TcpListener::bind(&settings.listen)
            .await
            .map_err(NodeError::io(format!("binding the local API on {}", settings.listen)))?;
        let address = listener.local_addr().map_err(NodeError::io("reading the local API address"))?;
        let token = hex::encode(clawnet_crypto::rng::random_bytes::<32>());
        let stop = shutdown.child_token();
        let token_hash = Hash32::of(HashDomain::MessageId, token.as_bytes());
        let state = ApiState { node: node.clone(), brain, token_hash, stop: stop.clone() };
        announce(node.home.home().dir(), &ApiAnnouncement { address, token })?;
        let app = router(state);
        let graceful = stop.clone();
        let task = tokio::spawn(async move {
            let served =
                axum::serve(listener, app).with_graceful_shutdown(async move { graceful.cancelled().await }).await;
            if let Err(err) = served {
                tracing::error!(%err, "local API stopped");
            }
        });
        Ok(ApiServer { address, stop, task: Some(task) })
    }

    /// Where it listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Stops accepting requests and waits (briefly) for those in progress.
    pub async fn stop(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

fn router(state: ApiState) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/identities", get(identities).post(create_identity))
        .route("/v1/identities/{tag}/retire", post(retire_identity))
        .route("/v1/audit/verify", get(verify_audit))
        .route("/v1/audit/export", get(export_audit))
        .route("/v1/contacts", get(contacts).post(add_contact))
        .route("/v1/contacts/invite", post(invite))
        .route("/v1/contacts/{id}/accept", post(accept))
        .route("/v1/contacts/{id}/reject", post(reject))
        .route("/v1/contacts/{id}/remove", post(remove))
        .route("/v1/contacts/{id}/assign", post(assign))
        .route("/v1/contacts/{id}/tags", get(tags))
        .route("/v1/memory/{identity}", get(memory).post(add_memory))
        .route("/v1/memory/{identity}/{number}/edit", post(edit_memory))
        .route("/v1/memory/{identity}/{number}/delete", post(delete_memory))
        .route("/v1/approvals", get(approvals))
        .route("/v1/approvals/{id}/approve", post(approve))
        .route("/v1/approvals/{id}/reject", post(reject_approval))
        .route("/v1/sessions", get(sessions))
        .route("/v1/sessions/{id}", get(session))
        .route("/v1/sessions/{id}/stop", post(stop_session))
        .route("/v1/files/folders", get(file_folders))
        .route("/v1/files/scope/{identity}", get(file_scope))
        .route("/v1/files/grant", post(file_grant))
        .route("/v1/files/revoke", post(file_revoke))
        .route("/v1/files/history", post(file_history))
        .route("/v1/files/undo/{op}", post(file_undo))
        .route("/v1/files/rollback", post(file_rollback))
        .route("/v1/devices", get(device_list))
        .route("/v1/devices/certify", post(device_certify))
        .route("/v1/devices/revoke/{name}", post(device_revoke))
        .route("/v1/events", get(events))
        .route("/v1/chat", post(chat))
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .with_state(state)
}

/// Refuses requests without the right bearer token.
async fn authorize(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(|token| Hash32::of(HashDomain::MessageId, token.as_bytes()));
    // Hashes of equal length compared byte by byte without early exit.
    let matches = presented.is_some_and(|hash| {
        hash.as_bytes().iter().zip(state.token_hash.as_bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    });
    if matches {
        next.run(request).await
    } else {
        ApiError(StatusCode::UNAUTHORIZED, "missing or wrong API token".into()).into_response()
    }
}

/// An error answer: status and a one-line message, never internals beyond the node error text.
#[derive(Debug)]
struct ApiError(StatusCode, String);

impl From<NodeError> for ApiError {
    fn from(err: NodeError) -> ApiError {
        let status = match &err {
            NodeError::Contact(_)
            | NodeError::InvalidTag(_)
            | NodeError::TagInUse(_)
            | NodeError::NoSuchIdentity(_)
            | NodeError::DescriptionTooLong { .. }
            | NodeError::InvalidMemory(_)
            | NodeError::NoSuchMemory { .. }
            | NodeError::NotAllowed(_)
            | NodeError::Session(_)
            | NodeError::Agent(_)
            | NodeError::Config(_) => StatusCode::BAD_REQUEST,
            NodeError::Files(err) if err.is_denial() => StatusCode::FORBIDDEN,
            NodeError::Files(FileError::Conflict { .. }) => StatusCode::CONFLICT,
            NodeError::Files(FileError::Io { .. } | FileError::Store(_) | FileError::BackupCorrupt(_)) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            NodeError::Files(_) => StatusCode::BAD_REQUEST,
            NodeError::Audit(_) => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, err.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorBody { error: self.1 })).into_response()
    }
}

type ApiResult<T> = Result<Json<T>, ApiError>;

/// Runs blocking node work (database commits, chain verification) off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, NodeError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|_| ApiError(StatusCode::INTERNAL_SERVER_ERROR, "the operation panicked".into()))?
        .map_err(ApiError::from)
}

/// Runs an owner decision to the end even if the caller goes away: it signs, commits and sends,
/// and dropping it half-way would leave that half done.
async fn to_completion<T: Send + 'static>(
    work: impl Future<Output = Result<T, NodeError>> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::spawn(work)
        .await
        .map_err(|_| ApiError(StatusCode::INTERNAL_SERVER_ERROR, "the operation panicked".into()))?
        .map_err(ApiError::from)
}

async fn status(State(state): State<ApiState>) -> ApiResult<StatusView> {
    let node = &state.node;
    Ok(Json(StatusView {
        name: node.name(),
        owner: node.home.owner().fingerprint().to_string(),
        peer_id: node.network.local_peer().to_string(),
        addresses: node.reachable_addresses().await,
        connected_peers: node.network.connected_peers().await.map(|p| p.len()).unwrap_or(0),
    }))
}

async fn identities(State(state): State<ApiState>) -> ApiResult<Vec<IdentityView>> {
    let records = state.node.home.home().identities()?;
    Ok(Json(records.iter().map(IdentityView::of).collect()))
}

async fn create_identity(State(state): State<ApiState>, Json(body): Json<CreateIdentity>) -> ApiResult<IdentityView> {
    let home = state.node.home.clone();
    let record = blocking(move || home.create_identity(&body.tag, &body.description)).await?;
    state.node.publish_tags(false).await?;
    Ok(Json(IdentityView::of(&record)))
}

async fn retire_identity(State(state): State<ApiState>, Path(tag): Path<String>) -> ApiResult<IdentityView> {
    let home = state.node.home.clone();
    let record = blocking(move || home.retire_identity(&tag)).await?;
    state.node.publish_tags(false).await?;
    Ok(Json(IdentityView::of(&record)))
}

async fn verify_audit(State(state): State<ApiState>) -> ApiResult<AuditSummaryView> {
    let home = state.node.home.clone();
    let summary = blocking(move || Ok(home.db().verify_audit()?)).await?;
    let info = state.node.home.db().info();
    Ok(Json(AuditSummaryView {
        entries: summary.entries,
        head: summary.head.to_hex(),
        node: Fingerprint::of(&info.device_key).to_string(),
        owner: info.owner.fingerprint().to_string(),
    }))
}

async fn export_audit(State(state): State<ApiState>) -> Result<String, ApiError> {
    let home = state.node.home.clone();
    blocking(move || {
        let mut out = Vec::new();
        home.db().export_audit(&mut out)?;
        String::from_utf8(out).map_err(|err| NodeError::Contact(err.to_string()))
    })
    .await
}

async fn invite(State(state): State<ApiState>, Json(body): Json<CreateInvite>) -> ApiResult<InviteView> {
    let validity = body.valid_secs.map_or(DEFAULT_INVITE_VALIDITY, Duration::from_secs);
    Ok(Json(state.node.invite(validity).await?))
}

async fn add_contact(State(state): State<ApiState>, Json(body): Json<AddContact>) -> ApiResult<ContactView> {
    Ok(Json(state.node.add_contact(&body.code).await?))
}

async fn contacts(State(state): State<ApiState>) -> ApiResult<Vec<ContactView>> {
    Ok(Json(state.node.contacts()?))
}

async fn accept(State(state): State<ApiState>, Path(id): Path<String>) -> ApiResult<ContactView> {
    Ok(Json(state.node.accept_contact(&id).await?))
}

async fn reject(State(state): State<ApiState>, Path(id): Path<String>) -> ApiResult<ContactView> {
    Ok(Json(state.node.reject_contact(&id).await?))
}

async fn remove(State(state): State<ApiState>, Path(id): Path<String>) -> ApiResult<ContactView> {
    Ok(Json(state.node.remove_contact(&id).await?))
}

async fn assign(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Json(body): Json<Assign>,
) -> ApiResult<ContactView> {
    Ok(Json(state.node.assign(&id, &body.identity).await?))
}

async fn tags(State(state): State<ApiState>, Path(id): Path<String>) -> ApiResult<ContactTagsView> {
    Ok(Json(state.node.contact_tags(&id)?))
}

async fn memory(State(state): State<ApiState>, Path(identity): Path<String>) -> ApiResult<Vec<MemoryItem>> {
    let home = state.node.home.home();
    let record = home
        .identities()?
        .into_iter()
        .filter(|i| i.tag.to_string() == identity)
        .max_by_key(|i| (i.is_active(), i.created_at))
        .ok_or(NodeError::NoSuchIdentity(identity))?;
    Ok(Json(home.memories(MemoryScope::Identity(record.id), None)?))
}

async fn add_memory(
    State(state): State<ApiState>,
    Path(identity): Path<String>,
    Json(body): Json<AddMemory>,
) -> ApiResult<MemoryItem> {
    let kind = parse_kind(&body.kind, &body.text)?;
    Ok(Json(state.node.home.memory_add(&identity, kind, &body.text, MemoryWriter::Owner).await?))
}

async fn edit_memory(
    State(state): State<ApiState>,
    Path((identity, number)): Path<(String, u64)>,
    Json(body): Json<EditMemory>,
) -> ApiResult<MemoryItem> {
    let kind = body.kind.map(|kind| parse_kind(&kind, &body.text)).transpose()?;
    Ok(Json(state.node.home.memory_edit(&identity, number, &body.text, kind).await?))
}

async fn delete_memory(
    State(state): State<ApiState>,
    Path((identity, number)): Path<(String, u64)>,
) -> ApiResult<MemoryItem> {
    Ok(Json(state.node.home.memory_delete(&identity, number).await?))
}

async fn approvals(State(state): State<ApiState>) -> ApiResult<Vec<ApprovalView>> {
    Ok(Json(state.node.home.home().approvals()?))
}

async fn approve(State(state): State<ApiState>, Path(id): Path<String>) -> ApiResult<ApprovalView> {
    let node = state.node.clone();
    Ok(Json(to_completion(async move { node.approve(&id).await }).await?))
}

async fn reject_approval(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    body: Option<Json<RejectApproval>>,
) -> ApiResult<ApprovalView> {
    let reason = body.map(|Json(body)| body.reason).unwrap_or_default();
    let node = state.node.clone();
    Ok(Json(to_completion(async move { node.reject(&id, &reason).await }).await?))
}

async fn sessions(State(state): State<ApiState>) -> ApiResult<Vec<SessionView>> {
    let node = state.node.clone();
    Ok(Json(blocking(move || node.session_list()).await?))
}

async fn session(State(state): State<ApiState>, Path(id): Path<String>) -> ApiResult<SessionDetail> {
    let node = state.node.clone();
    Ok(Json(blocking(move || node.session_detail(&id)).await?))
}

async fn stop_session(State(state): State<ApiState>, Path(id): Path<String>) -> ApiResult<SessionView> {
    let node = state.node.clone();
    Ok(Json(to_completion(async move { node.stop_session(&id).await }).await?))
}

/// The owner's live events as newline-delimited JSON, from now until the caller goes away or the
/// API stops. A caller that falls behind skips the events it missed and keeps its stream.
async fn events(State(state): State<ApiState>) -> Response {
    let start = tokio::time::Instant::now() + EVENT_HEARTBEAT;
    let mut heartbeat = tokio::time::interval_at(start, EVENT_HEARTBEAT);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let watch = EventWatch { events: state.node.subscribe(), stop: state.stop.clone(), heartbeat };
    ndjson(futures::stream::unfold(watch, |mut watch| async move {
        let line = watch.next_line().await?;
        Some((Ok::<_, Infallible>(line), watch))
    }))
}

/// One caller's subscription to the node's events.
#[derive(Debug)]
struct EventWatch {
    events: broadcast::Receiver<NodeEvent>,
    stop: CancellationToken,
    heartbeat: tokio::time::Interval,
}

impl EventWatch {
    /// The next line to send: an event, or an empty line when it has been quiet for a while;
    /// `None` once the stream should end.
    async fn next_line(&mut self) -> Option<Vec<u8>> {
        loop {
            tokio::select! {
                () = self.stop.cancelled() => return None,
                _ = self.heartbeat.tick() => return Some(b"\n".to_vec()),
                received = self.events.recv() => match received {
                    Ok(event) => return Some(json_line(&event)),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::debug!(missed, "an event watcher fell behind; it skips what it missed");
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
            }
        }
    }
}

/// One turn of the owner's chat with an agent, streamed as newline-delimited JSON: the agent's
/// events as they happen, then the reply (or the error). The turn runs to completion even if
/// the caller goes away, so what the agent started is finished and audited.
async fn chat(State(state): State<ApiState>, Json(request): Json<ChatRequest>) -> Response {
    let (lines, receiver) = tokio::sync::mpsc::unbounded_channel::<ChatLine>();
    tokio::spawn(async move {
        let events = lines.clone();
        let result = chat_turn(
            state.node.home.clone(),
            state.brain.clone(),
            &[state.node.file_tools()],
            &request,
            &mut |event| {
                let _ = events.send(ChatLine::Event(event));
            },
        )
        .await;
        let _ = lines.send(match result {
            Ok(done) => ChatLine::Done { done },
            Err(err) => ChatLine::Failed { error: err.to_string() },
        });
    });
    ndjson(futures::stream::unfold(receiver, |mut receiver| async move {
        let line = receiver.recv().await?;
        Some((Ok::<_, Infallible>(json_line(&line)), receiver))
    }))
}

/// A streamed answer of newline-delimited JSON. The stream is dropped when the caller goes away.
fn ndjson(lines: impl futures::Stream<Item = Result<Vec<u8>, Infallible>> + Send + 'static) -> Response {
    ([(header::CONTENT_TYPE, "application/x-ndjson")], axum::body::Body::from_stream(lines)).into_response()
}

/// `value` as one line of JSON, newline included.
fn json_line(value: &impl Serialize) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(value).unwrap_or_else(|err| format!("{{\"error\":\"{err}\"}}").into_bytes());
    bytes.push(b'\n');
    bytes
}

/// Writes `api.json` readable only by the owner, atomically.
fn announce(dir: &std::path::Path, announcement: &ApiAnnouncement) -> Result<(), NodeError> {
    let path = api_file(dir);
    let partial = path.with_extension("json.partial");
    let text = serde_json::to_string(announcement).map_err(|err| NodeError::Contact(err.to_string()))?;
    {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&partial).map_err(NodeError::io(format!("writing {}", partial.display())))?;
        file.write_all(text.as_bytes()).map_err(NodeError::io(format!("writing {}", partial.display())))?;
    }
    std::fs::rename(&partial, &path).map_err(NodeError::io(format!("writing {}", path.display())))
}

async fn file_folders(State(state): State<ApiState>) -> ApiResult<Vec<FolderView>> {
    let folders = state.node.files.endpoint().whitelist().folders();
    Ok(Json(folders.into_iter().map(|(path, access)| FolderView { path, access: access.as_str().into() }).collect()))
}

async fn file_scope(State(state): State<ApiState>, Path(identity): Path<String>) -> ApiResult<ScopeView> {
    Ok(Json(blocking(move || owner::scope(state.node.home.home(), &identity)).await?))
}

async fn file_grant(State(state): State<ApiState>, Json(body): Json<GrantRequest>) -> ApiResult<ScopeView> {
    Ok(Json(blocking(move || owner::grant(state.node.home.home(), &state.node.files, &body)).await?))
}

async fn file_revoke(State(state): State<ApiState>, Json(body): Json<GrantRequest>) -> ApiResult<ScopeView> {
    Ok(Json(blocking(move || owner::revoke(state.node.home.home(), &state.node.files, &body)).await?))
}

async fn file_history(State(state): State<ApiState>, Json(query): Json<JournalQuery>) -> ApiResult<Vec<FileOpView>> {
    Ok(Json(blocking(move || owner::history(state.node.home.home(), Some(&state.node.files), &query)).await?))
}

async fn file_undo(
    State(state): State<ApiState>,
    Path(op): Path<u64>,
    Json(body): Json<UndoRequest>,
) -> ApiResult<FileOpView> {
    Ok(Json(blocking(move || owner::undo(state.node.home.home(), &state.node.files, op, &body)).await?))
}

async fn file_rollback(State(state): State<ApiState>, Json(body): Json<RollbackRequest>) -> ApiResult<RollbackView> {
    Ok(Json(blocking(move || owner::rollback(state.node.home.home(), &state.node.files, &body)).await?))
}

async fn device_list(State(state): State<ApiState>) -> ApiResult<Vec<DeviceView>> {
    Ok(Json(blocking(move || certify::list(state.node.home.home(), Some(state.node.files.remote()))).await?))
}

async fn device_certify(State(state): State<ApiState>, Json(body): Json<CertifyRequest>) -> ApiResult<String> {
    Ok(Json(blocking(move || certify::certify(&state.node.home, &body)).await?))
}

async fn device_revoke(State(state): State<ApiState>, Path(name): Path<String>) -> ApiResult<()> {
    Ok(Json(blocking(move || certify::revoke(&state.node.home, state.node.files.remote(), &name)).await?))
}
