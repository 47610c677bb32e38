//! `clawnet approvals`, `clawnet approve` and `clawnet reject`: what your agents asked you to
//! decide (collaboration requests, session invitations, messages the disclosure guard held), and
//! your decisions. The list is read from the data directory when no node runs; deciding and
//! watching need the running node, because a decision is signed and sent to the other node and
//! events happen only there.

use std::path::Path;
use std::process::ExitCode;

use anyhow::bail;
use clap::Args;

use super::{running_node, short};
use crate::api::ApiClient;
use crate::approvals::ApprovalView;
use crate::home::NodeHome;
use crate::sessions::NodeEvent;

#[derive(Debug, Args)]
pub(crate) struct ApprovalsArgs {
    /// Print JSON instead of a table (with --watch: only the events, one JSON object a line)
    #[arg(long)]
    json: bool,
    /// Then follow new requests, decisions and session events live until Ctrl-C (needs the
    /// running node)
    #[arg(long)]
    watch: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ApproveArgs {
    /// The approval's id (a unique prefix, as `clawnet approvals` shows it)
    id: String,
    /// Print JSON instead of one line
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct RejectArgs {
    /// The approval's id (a unique prefix, as `clawnet approvals` shows it)
    id: String,
    /// Why, told to the other owner where one waits for an answer
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
    /// Print JSON instead of one line
    #[arg(long)]
    json: bool,
}

/// Why deciding needs the running node.
const DECIDING_NEEDS_NODE: &str = "start it with `clawnet run` first (a decision is signed and sent to the other node)";

pub(crate) async fn list(data_dir: &Path, args: ApprovalsArgs) -> anyhow::Result<ExitCode> {
    if args.watch {
        let api = running_node(data_dir, "start the node with `clawnet run` to watch live").await?;
        return watch(&api, args.json).await;
    }
    let approvals = match ApiClient::discover(data_dir).await {
        Some(api) => api.approvals().await?,
        None => NodeHome::open(data_dir)?.approvals()?,
    };
    print_approvals(&approvals, args.json)?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn approve(data_dir: &Path, args: ApproveArgs) -> anyhow::Result<ExitCode> {
    let api = running_node(data_dir, DECIDING_NEEDS_NODE).await?;
    print_decision(&api.approve(&args.id).await?, args.json)?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn reject(data_dir: &Path, args: RejectArgs) -> anyhow::Result<ExitCode> {
    let api = running_node(data_dir, DECIDING_NEEDS_NODE).await?;
    print_decision(&api.reject(&args.id, args.reason.as_deref().unwrap_or_default()).await?, args.json)?;
    Ok(ExitCode::SUCCESS)
}

/// Prints the current approvals (unless `json`), then every event until the node stops.
async fn watch(api: &ApiClient, json: bool) -> anyhow::Result<ExitCode> {
    if !json {
        print_approvals(&api.approvals().await?, false)?;
        println!("Watching live (Ctrl-C to stop)...");
    }
    api.events(|event| {
        if json {
            // A `NodeEvent` is plain strings and numbers: it always serializes.
            println!("{}", serde_json::to_string(&event).unwrap_or_default());
        } else {
            println!("{}", describe(&event));
        }
    })
    .await?;
    bail!("the node stopped; nothing more to watch")
}

fn print_approvals(approvals: &[ApprovalView], json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(approvals)?);
    } else if approvals.is_empty() {
        println!("Nothing waits for your decision.");
    } else {
        println!("{:<10} {:<18} {:<10} {:<10} SUMMARY", "ID", "KIND", "IDENTITY", "STATUS");
        for approval in approvals {
            println!(
                "{:<10} {:<18} {:<10} {:<10} {}",
                short(&approval.id),
                approval.kind,
                approval.identity,
                approval.status,
                approval.summary
            );
        }
    }
    Ok(())
}

/// An approval just decided, in one line (or as JSON).
fn print_decision(approval: &ApprovalView, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(approval)?);
    } else {
        println!(
            "{} {} ({}, identity {}): {}",
            short(&approval.id),
            approval.status,
            approval.kind,
            approval.identity,
            approval.summary
        );
    }
    Ok(())
}

/// One event, in one line.
fn describe(event: &NodeEvent) -> String {
    match event {
        NodeEvent::ApprovalPending { id, summary } => format!("approval {} waits: {summary}", short(id)),
        NodeEvent::ApprovalDecided { id, status, by } => format!("approval {} {status} (by {by})", short(id)),
        NodeEvent::SessionStarted { session } => format!("session {} started", short(session)),
        NodeEvent::Turn { session, turn_no, speaker, text } => {
            format!("session {} [{turn_no}] {speaker}: {text}", short(session))
        }
        NodeEvent::Advice { session, text, withheld } => {
            let seen = if *withheld { "shown to you only" } else { "seen by the agent" };
            format!("session {} manager advice ({seen}): {text}", short(session))
        }
        NodeEvent::SessionClosed { session, reason } => format!("session {} closed: {reason}", short(session)),
    }
}
