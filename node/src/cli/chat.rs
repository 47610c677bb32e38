//! `clawnet chat IDENTITY | --manager`: talk with one of your agents. Interactive in a terminal
//! (one line per message; an empty line or Ctrl-D ends it), or scripted: `--message TEXT` for
//! one turn, or messages piped on stdin one per line. `--json` prints one JSON object per turn.
//! The turn runs in the running node if there is one, otherwise in this process.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::bail;
use clap::Args;
use serde::Serialize;

use crate::agents::Message;
use crate::agents::brain::AnyBrain;
use crate::agents::file_tools::FileTools;
use crate::agents::tools::AgentEvent;
use crate::agents::tools::ToolExtension;
use crate::api::ApiClient;
use crate::chat::{ChatLine, ChatReply, ChatRequest, chat_turn};
use crate::config::NodeConfig;
use crate::files::{GovernedFiles, endpoint_config};
use crate::home::{NodeHome, UnlockedHome};
use crate::passphrase;

/// Options of `clawnet chat`.
#[derive(Debug, Args)]
pub(crate) struct ChatArgs {
    /// The identity to talk with (its tag)
    #[arg(required_unless_present = "manager", conflicts_with = "manager")]
    identity: Option<String>,
    /// Talk with your manager agent instead
    #[arg(long)]
    manager: bool,
    /// Send this one message, print the reply and exit
    #[arg(long, value_name = "TEXT")]
    message: Option<String>,
    /// Print one JSON object per turn (reply, events, transcript)
    #[arg(long)]
    json: bool,
}

/// Where turns run.
enum Runner {
    Remote(ApiClient),
    Local { home: Arc<UnlockedHome>, brain: Arc<AnyBrain>, tools: Vec<Arc<dyn ToolExtension>> },
}

/// What `--json` prints for a turn.
#[derive(Debug, Serialize)]
struct JsonTurn<'a> {
    #[serde(flatten)]
    reply: &'a ChatReply,
    events: &'a [AgentEvent],
}

pub(crate) async fn run(data_dir: &Path, args: ChatArgs) -> anyhow::Result<ExitCode> {
    let runner = match ApiClient::discover(data_dir).await {
        Some(api) => Runner::Remote(api),
        None => {
            let config = NodeConfig::load(data_dir)?;
            let brain = AnyBrain::from_config(config.llm.as_ref())?;
            let home = NodeHome::open(data_dir)?.unlock(passphrase::for_unlock)?;
            let files = GovernedFiles::open(&endpoint_config(data_dir, &config.files.folder), home.db().clone())?;
            let tools: Vec<Arc<dyn ToolExtension>> = vec![Arc::new(FileTools::new(files))];
            Runner::Local { home: Arc::new(home), brain: Arc::new(brain), tools }
        }
    };
    let agent = if args.manager { None } else { args.identity.clone() };
    let interactive = args.message.is_none() && std::io::stdin().is_terminal() && !args.json;
    let mut history: Vec<Message> = Vec::new();
    if let Some(message) = &args.message {
        turn(&runner, &agent, &mut history, message, args.json).await?;
        return Ok(ExitCode::SUCCESS);
    }
    if interactive {
        let who = agent.as_ref().map_or_else(|| "your manager".to_owned(), |tag| format!("identity {tag}"));
        println!("Chatting with {who}. An empty line or Ctrl-D ends the chat.");
    }
    let stdin = std::io::stdin();
    loop {
        if interactive {
            print!("you> ");
            std::io::stdout().flush()?;
        }
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            break;
        }
        let message = line.trim();
        if message.is_empty() {
            if interactive {
                break;
            }
            continue;
        }
        if let Err(err) = turn(&runner, &agent, &mut history, message, args.json).await {
            if !interactive {
                return Err(err);
            }
            eprintln!("clawnet: error: {err:#}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One turn: shows events as they come (unless `--json`), then the reply.
async fn turn(
    runner: &Runner,
    agent: &Option<String>,
    history: &mut Vec<Message>,
    message: &str,
    json: bool,
) -> anyhow::Result<()> {
    let request = ChatRequest { agent: agent.clone(), history: history.clone(), message: message.into() };
    let mut events: Vec<AgentEvent> = Vec::new();
    let mut streamed = false;
    let mut show = |event: AgentEvent| {
        if !json {
            streamed |= show_event(&event);
        }
        events.push(event);
    };
    let reply = match runner {
        Runner::Local { home, brain, tools } => {
            chat_turn(home.clone(), brain.clone(), tools, &request, &mut show).await?
        }
        Runner::Remote(api) => {
            let mut outcome: Option<Result<ChatReply, String>> = None;
            api.post_lines("/v1/chat", &request, |line: ChatLine| match line {
                ChatLine::Event(event) => show(event),
                ChatLine::Done { done } => outcome = Some(Ok(done)),
                ChatLine::Failed { error } => outcome = Some(Err(error)),
            })
            .await?;
            match outcome {
                Some(Ok(reply)) => reply,
                Some(Err(error)) => bail!("{error}"),
                None => bail!("the running node ended the turn without an answer"),
            }
        }
    };
    if json {
        println!("{}", serde_json::to_string(&JsonTurn { reply: &reply, events: &events })?);
    } else if streamed {
        println!();
    } else {
        println!("{}", reply.text);
    }
    history.extend(reply.transcript);
    Ok(())
}

/// Prints an event for the owner; returns whether it was reply text (printed as it streams).
fn show_event(event: &AgentEvent) -> bool {
    match event {
        AgentEvent::Text { text } => {
            print!("{text}");
            let _ = std::io::stdout().flush();
            return true;
        }
        AgentEvent::ToolCall { name, .. } => eprintln!("  [tool] {name}"),
        AgentEvent::ToolResult { name, ok: false, result } => {
            eprintln!("  [tool] {name} failed: {}", result["error"].as_str().unwrap_or_default())
        }
        AgentEvent::ToolResult { .. } => {}
        AgentEvent::Advice { text, withheld } => {
            let note = if *withheld { " (shown to you only: it draws on other identities' memory)" } else { "" };
            eprintln!("  [manager advice{note}] {text}");
        }
        AgentEvent::ApprovalRequested { id, summary } => {
            eprintln!("  [approval {}] {summary}: see `clawnet approvals`", &id[..id.len().min(8)])
        }
        AgentEvent::Refused { reason } => eprintln!("  [refused, security event] {reason}"),
        AgentEvent::Held { approval, matched } => eprintln!(
            "  [held for you, approval {}] it contains never-share item(s): {}",
            &approval[..approval.len().min(8)],
            matched.join("; ")
        ),
    }
    false
}
