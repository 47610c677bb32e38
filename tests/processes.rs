//! The real `clawnet-bootstrap` and `clawnet` binaries as processes: two nodes reachable only
//! through the relay become contacts with the CLI, and a contact accept queued by a sender that
//! is then killed with SIGKILL is still delivered, exactly once, after it restarts.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::bail;
use clawnet_tests::processes::{Process, binary, clawnet_ok};

const STARTUP: Duration = Duration::from_secs(30);

fn start_node(clawnet: &Path, dir: &Path, relay: &str) -> anyhow::Result<Process> {
    let dir = dir.to_str().unwrap_or_default();
    let mut process = Process::spawn(
        clawnet,
        &["--data-dir", dir, "run", "--bootstrap", relay],
        &[("CLAWNET_LISTEN", ""), ("RUST_LOG", "warn")],
    )?;
    process.wait_for_line("api ", STARTUP)?;
    Ok(process)
}

/// Polls a CLI command until its output satisfies `done`.
fn until(what: &str, mut check: impl FnMut() -> anyhow::Result<bool>) -> anyhow::Result<()> {
    let deadline = Instant::now() + STARTUP;
    while Instant::now() < deadline {
        if check()? {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("timed out waiting for {what}")
}

fn contacts(clawnet: &Path, dir: &Path) -> anyhow::Result<Vec<serde_json::Value>> {
    Ok(serde_json::from_str(&clawnet_ok(clawnet, dir, &["contact", "list", "--json"])?)?)
}

#[test]
fn real_binaries_befriend_through_the_relay_and_survive_a_killed_sender() -> anyhow::Result<()> {
    let clawnet = binary("clawnet-node", "clawnet")?;
    let relay_bin = binary("clawnet-bootstrap", "clawnet-bootstrap")?;
    let temp = tempfile::tempdir()?;
    let key = temp.path().join("relay.key");
    let mut relay = Process::spawn(
        &relay_bin,
        &["--listen", "/ip4/127.0.0.1/tcp/0", "--key-file", key.to_str().unwrap_or_default()],
        &[("RUST_LOG", "warn")],
    )?;
    let relay_addr = relay.wait_for_line("listening ", STARTUP)?.trim_start_matches("listening ").to_owned();

    let (alice_dir, bob_dir) = (temp.path().join("alice"), temp.path().join("bob"));
    for (dir, name) in [(&alice_dir, "alice"), (&bob_dir, "bob")] {
        clawnet_ok(&clawnet, dir, &["init", "--name", name, "--insecure-no-passphrase"])?;
    }
    let mut alice = start_node(&clawnet, &alice_dir, &relay_addr)?;
    let mut bob = start_node(&clawnet, &bob_dir, &relay_addr)?;

    // The invite must carry a relay circuit address: wait for alice's reservation.
    let mut code = String::new();
    until("an invite with a relay address", || {
        code = clawnet_ok(&clawnet, &alice_dir, &["contact", "invite"])?.trim().to_owned();
        let parsed = clawnet_protocol::contact::InviteCode::from_text(&code, clawnet_crypto::Timestamp::now())?;
        Ok(parsed.addresses.iter().any(|a| a.contains("p2p-circuit")))
    })?;
    clawnet_ok(&clawnet, &bob_dir, &["contact", "add", &code])?;
    let mut request = String::new();
    until("bob's request at alice", || {
        let requests: Vec<serde_json::Value> =
            serde_json::from_str(&clawnet_ok(&clawnet, &alice_dir, &["contact", "requests", "--json"])?)?;
        if let Some(first) = requests.first() {
            request = first["id"].as_str().unwrap_or_default().to_owned();
        }
        Ok(!request.is_empty())
    })?;

    // Bob goes down; alice accepts (the accept is now durable in her outbox) and is killed.
    assert_eq!(bob.terminate()?, Some(0), "bob did not shut down cleanly");
    clawnet_ok(&clawnet, &alice_dir, &["contact", "accept", &request])?;
    alice.kill();

    let mut bob = start_node(&clawnet, &bob_dir, &relay_addr)?;
    let _alice = start_node(&clawnet, &alice_dir, &relay_addr)?;
    until("bob to see alice as connected", || {
        Ok(contacts(&clawnet, &bob_dir)?.iter().any(|c| c["name"] == "alice" && c["state"] == "connected"))
    })?;
    let export = clawnet_ok(&clawnet, &bob_dir, &["audit", "export"])?;
    let accepted = export.lines().filter(|l| l.contains("\"action\":\"contact.accepted\"")).count();
    assert_eq!(accepted, 1, "the accept was applied {accepted} times");
    assert!(clawnet_ok(&clawnet, &bob_dir, &["audit", "verify"])?.contains("Audit chain verified"));
    assert_eq!(bob.terminate()?, Some(0));
    relay.kill();
    Ok(())
}
