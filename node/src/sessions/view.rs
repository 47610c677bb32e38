//! What the owner sees of sessions: a list, and one session with its verified transcript.

use clawnet_protocol::SessionId;
use clawnet_protocol::session::{EndMarker, Phase};
use serde::{Deserialize, Serialize};

use super::inbound::describe_close;
use super::restore;
use crate::error::NodeError;
use crate::node::Node;

/// One session, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionView {
    /// Its id.
    pub id: String,
    /// `awaiting-consent`, `active`, `ending`, `closed` or `rejected`.
    pub state: String,
    /// Why it ended, once it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// What it is for.
    pub purpose: String,
    /// Our identity in it.
    pub identity: String,
    /// The other owner.
    pub counterpart: String,
    /// Whether our identity proposed it.
    pub initiated: bool,
    /// Turns so far.
    pub turns: u32,
    /// Turns granted.
    pub max_turns: u16,
    /// 0 for a top-level session.
    pub depth: u8,
    /// The session it was opened from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// When it was proposed (ms since the epoch).
    pub created_at_ms: u64,
}

/// One turn, as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TurnView {
    /// Its number.
    pub turn_no: u32,
    /// Who spoke: our identity's tag or the other owner's name.
    pub speaker: String,
    /// What was said.
    pub text: String,
    /// The end marker it carried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// Its hash (the next turn links to it).
    pub hash: String,
}

/// One session with its transcript.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionDetail {
    /// The session.
    pub session: SessionView,
    /// The transcript, in order.
    pub transcript: Vec<TurnView>,
    /// Whether every signature and hash link of the stored session verified just now.
    pub verified: bool,
}

impl Node {
    /// Every session, newest first.
    pub fn session_list(&self) -> Result<Vec<SessionView>, NodeError> {
        let mut views =
            self.sessions.all().into_iter().map(|(id, _, _)| self.session_view(&id)).collect::<Result<Vec<_>, _>>()?;
        views.sort_by_key(|view| std::cmp::Reverse(view.created_at_ms));
        Ok(views)
    }

    /// Session `query` (a unique id prefix) with its transcript, verified again from storage.
    pub fn session_detail(&self, query: &str) -> Result<SessionDetail, NodeError> {
        let id = self.find_session(query)?;
        let view = self.home.db().read()?;
        let record = view.session(&id)?.ok_or_else(|| NodeError::Session("the session is not stored".into()))?;
        let turns = view.turns(&id)?;
        let verified = restore(&record, &turns).is_ok();
        let summary = self.session_view(&id)?;
        let proposal = record.proposal.decode_unverified().map_err(|err| NodeError::Session(err.to_string()))?;
        let me = self.home.owner();
        let transcript = turns
            .iter()
            .filter_map(|signed| {
                let turn = signed.decode_unverified().ok()?;
                let ours = (turn.speaker == proposal.initiator.identity) == (proposal.initiator.owner == me);
                Some(TurnView {
                    turn_no: turn.turn_no,
                    speaker: if ours { summary.identity.clone() } else { summary.counterpart.clone() },
                    text: turn.text,
                    end: turn.end.map(|m| marker_name(m).to_owned()),
                    hash: clawnet_protocol::session::turn_hash(signed).to_hex(),
                })
            })
            .collect();
        Ok(SessionDetail { session: summary, transcript, verified })
    }

    pub(crate) fn session_view(&self, id: &SessionId) -> Result<SessionView, NodeError> {
        let (slot, facts) =
            self.sessions.get(id).ok_or_else(|| NodeError::Session(format!("session {} is not known", id.short())))?;
        let (proposal, phase, turns) = match slot.try_lock() {
            Ok(session) => (session.proposal().clone(), session.phase(), session.turns()),
            // Being changed right now: what is durable is the answer.
            Err(_) => {
                let view = self.home.db().read()?;
                let record = view.session(id)?.ok_or_else(|| NodeError::Session("the session is not stored".into()))?;
                let session = restore(&record, &view.turns(id)?).map_err(|err| NodeError::Session(err.to_string()))?;
                (session.proposal().clone(), session.phase(), session.turns())
            }
        };
        let me = self.home.owner();
        let view = self.home.db().read()?;
        let our_identity =
            if proposal.initiator.owner == me { proposal.initiator.identity } else { proposal.target.identity };
        let identity = view.identity(&our_identity)?.map_or_else(|| our_identity.to_hex(), |i| i.tag.to_string());
        let counterpart = view
            .contact(&facts.counterpart)?
            .map_or_else(|| facts.counterpart.fingerprint().to_string(), |c| c.display_name);
        let (state, outcome) = match phase {
            Phase::AwaitingConsent => ("awaiting-consent", None),
            Phase::Active => ("active", None),
            Phase::Ending(marker) => ("ending", Some(marker_name(marker).to_owned())),
            Phase::Closed(reason) => ("closed", Some(describe_close(reason))),
            Phase::Rejected => ("rejected", None),
        };
        Ok(SessionView {
            id: id.to_hex(),
            state: state.into(),
            outcome,
            purpose: proposal.purpose.clone(),
            identity,
            counterpart,
            initiated: proposal.initiator.owner == me,
            turns,
            max_turns: proposal.max_turns,
            depth: proposal.depth,
            parent: proposal.parent.map(|p| p.to_hex()),
            created_at_ms: proposal.created_at.as_millis(),
        })
    }
}

/// An end marker's name.
pub(crate) fn marker_name(marker: EndMarker) -> &'static str {
    match marker {
        EndMarker::Resolved => "resolved",
        EndMarker::Deadlock => "deadlock",
        EndMarker::NeedsOwner => "needs-owner",
    }
}
