//! `clawnet approvals`: what your agents asked you to decide (collaboration requests, messages
//! the disclosure guard held). Deciding arrives with collaboration sessions.

use std::path::Path;
use std::process::ExitCode;

use crate::api::ApiClient;
use crate::approvals::ApprovalView;
use crate::home::NodeHome;

pub(crate) async fn run(data_dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let approvals: Vec<ApprovalView> = match ApiClient::discover(data_dir).await {
        Some(api) => api.get("/v1/approvals").await?,
        None => NodeHome::open(data_dir)?.approvals()?,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&approvals)?);
    } else if approvals.is_empty() {
        println!("Nothing waits for your decision.");
    } else {
        println!("{:<10} {:<14} {:<10} {:<10} SUMMARY", "ID", "KIND", "IDENTITY", "STATUS");
        for approval in &approvals {
            println!(
                "{:<10} {:<14} {:<10} {:<10} {}",
                &approval.id[..8],
                approval.kind,
                approval.identity,
                approval.status,
                approval.summary
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
