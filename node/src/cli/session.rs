//! `clawnet session ...`: the collaboration sessions your identities take part in. Sessions live
//! in the running node, so these commands talk to it.

use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;

use super::{running_node, short};
use crate::sessions::{SessionDetail, SessionView, TurnView};

#[derive(Debug, Subcommand)]
pub(crate) enum SessionCommand {
    /// List sessions, newest first
    List {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Show a session with its transcript, verified again from storage
    Show {
        /// The session's id (a unique prefix, as `clawnet session list` shows it)
        id: String,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Stop a session: your signed close goes to the other node, the transcript stays as it is
    Stop {
        /// The session's id (a unique prefix)
        id: String,
        /// Print JSON instead of one line
        #[arg(long)]
        json: bool,
    },
}

pub(crate) async fn run(data_dir: &Path, command: SessionCommand) -> anyhow::Result<ExitCode> {
    let api = running_node(data_dir, "start it with `clawnet run` first (sessions live in the running node)").await?;
    match command {
        SessionCommand::List { json } => print_list(&api.sessions().await?, json)?,
        SessionCommand::Show { id, json } => print_detail(&api.session(&id).await?, json)?,
        SessionCommand::Stop { id, json } => {
            let session = api.stop_session(&id).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&session)?);
            } else {
                println!("Stopped session {}: {}", short(&session.id), state_of(&session));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_list(sessions: &[SessionView], json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(sessions)?);
    } else if sessions.is_empty() {
        println!("No sessions yet.");
    } else {
        println!("{:<10} {:<22} {:<7} {:<12} {:<16} PURPOSE", "ID", "STATE", "TURNS", "IDENTITY", "WITH");
        for session in sessions {
            let nested = session.parent.as_deref().map(|p| format!(" (inside {})", short(p))).unwrap_or_default();
            println!(
                "{:<10} {:<22} {:<7} {:<12} {:<16} {}{nested}",
                short(&session.id),
                state_of(session),
                format!("{}/{}", session.turns, session.max_turns),
                session.identity,
                session.counterpart,
                session.purpose,
            );
        }
    }
    Ok(())
}

fn print_detail(detail: &SessionDetail, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(detail)?);
        return Ok(());
    }
    print_header(&detail.session);
    println!("transcript verified: {}", if detail.verified { "yes" } else { "no" });
    println!();
    if detail.transcript.is_empty() {
        println!("(no turns yet)");
    }
    for turn in &detail.transcript {
        println!("{}", turn_line(turn));
    }
    Ok(())
}

fn print_header(session: &SessionView) {
    let proposer = if session.initiated { "you" } else { session.counterpart.as_str() };
    println!("session      {}", session.id);
    println!("state        {}", session.state);
    println!("outcome      {}", session.outcome.as_deref().unwrap_or("-"));
    println!("purpose      {}", session.purpose);
    println!("identity     {} (proposed by {proposer})", session.identity);
    println!("counterpart  {}", session.counterpart);
    println!("turns        {}/{}", session.turns, session.max_turns);
    println!("depth        {}", session.depth);
    println!("parent       {}", session.parent.as_deref().unwrap_or("-"));
}

/// `[n] speaker: text`, with the end marker the turn carried.
fn turn_line(turn: &TurnView) -> String {
    let end = turn.end.as_deref().map(|marker| format!(" (end: {marker})")).unwrap_or_default();
    format!("[{}] {}: {}{end}", turn.turn_no, turn.speaker, turn.text)
}

/// The state, with the outcome once there is one: `closed (resolved)`.
fn state_of(session: &SessionView) -> String {
    match &session.outcome {
        Some(outcome) => format!("{} ({outcome})", session.state),
        None => session.state.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_turn_shows_its_end_marker() {
        let turn = |end: Option<&str>| TurnView {
            turn_no: 3,
            speaker: "work".into(),
            text: "agreed".into(),
            end: end.map(str::to_owned),
            hash: String::new(),
        };
        assert_eq!(turn_line(&turn(None)), "[3] work: agreed");
        assert_eq!(turn_line(&turn(Some("resolved"))), "[3] work: agreed (end: resolved)");
    }
}
