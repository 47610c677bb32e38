//! The real `clawnet-bootstrap` and `clawnet` binaries as processes: two nodes reachable only
//! through the relay become contacts with the CLI, and a contact accept queued by a sender that
//! is then killed with SIGKILL is still delivered, exactly once, after it restarts. The owner
//! chats with agents and edits their memory through a running node and without one, with the
//! rule brain and with a model server named by environment variables.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::bail;
use clawnet_tests::model_server::{ModelServer, Script};
use clawnet_tests::processes::{Process, binary, clawnet, clawnet_ok};

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

/// A node "Ada" in `root` with identity "work", which knows one fact.
fn ada_with_a_work_identity(clawnet_bin: &Path, root: &Path) -> anyhow::Result<std::path::PathBuf> {
    let dir = root.join("ada");
    clawnet_ok(clawnet_bin, &dir, &["init", "--name", "Ada", "--insecure-no-passphrase"])?;
    clawnet_ok(clawnet_bin, &dir, &["identity", "create", "work", "--description", "Ada at Initech"])?;
    clawnet_ok(clawnet_bin, &dir, &["memory", "add", "work", "fact", "The Falcon report is due on 14 March"])?;
    Ok(dir)
}

#[test]
fn the_owner_chats_and_edits_memory_with_and_without_the_running_node() -> anyhow::Result<()> {
    let clawnet_bin = binary("clawnet-node", "clawnet")?;
    let temp = tempfile::tempdir()?;
    // Offline: straight on the data directory.
    let dir = ada_with_a_work_identity(&clawnet_bin, temp.path())?;
    let chat = |message: &str| -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::from_str(&clawnet_ok(&clawnet_bin, &dir, &["chat", "work", "--message", message, "--json"])?)?)
    };
    let turn = chat("When is the Falcon report due?")?;
    assert!(turn["text"].as_str().unwrap_or_default().contains("14 March"), "{turn}");
    assert_eq!(turn["brain"], "rule brain (no model)");

    let dir_text = dir.to_str().unwrap_or_default();
    let mut node = Process::spawn(
        &clawnet_bin,
        &["--data-dir", dir_text, "run"],
        &[("CLAWNET_LISTEN", "/ip4/127.0.0.1/tcp/0"), ("RUST_LOG", "warn")],
    )?;
    node.wait_for_line("api ", STARTUP)?;
    // Online: the same commands go through the node's API (the database is the node's now).
    clawnet_ok(&clawnet_bin, &dir, &["memory", "add", "work", "never-share", "Initech layoffs in June"])?;
    clawnet_ok(&clawnet_bin, &dir, &["memory", "edit", "work", "1", "The Falcon report is due on 21 March"])?;
    let turn = chat("Remember that Bob prefers calls")?;
    assert!(turn["text"].as_str().unwrap_or_default().contains("pattern memory"), "{turn}");
    let turn = chat("When is the Falcon report due?")?;
    assert!(turn["text"].as_str().unwrap_or_default().contains("21 March"), "{turn}");
    let listed: Vec<serde_json::Value> =
        serde_json::from_str(&clawnet_ok(&clawnet_bin, &dir, &["memory", "list", "work", "--json"])?)?;
    let kinds: Vec<&str> = listed.iter().map(|item| item["kind"].as_str().unwrap_or_default()).collect();
    assert_eq!(kinds, ["fact", "never-share", "pattern"]);
    let refused = clawnet(&clawnet_bin, &dir, &["memory", "delete", "work", "9"])?;
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("has no memory entry 9"));
    assert_eq!(node.terminate()?, Some(0), "the node did not shut down cleanly");

    // Offline again: everything the node did is there, and audited.
    let turn = chat("What do you know about Bob?")?;
    assert!(turn["text"].as_str().unwrap_or_default().contains("Bob prefers calls"), "{turn}");
    let export = clawnet_ok(&clawnet_bin, &dir, &["audit", "export"])?;
    let memory_actions = export.lines().filter(|line| line.contains("\"action\":\"memory.")).count();
    assert_eq!(memory_actions, 4, "{export}");
    assert!(!export.contains("layoffs"), "the audit names memory entries, never their text");
    clawnet_ok(&clawnet_bin, &dir, &["audit", "verify"])?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_thinks_with_the_model_server_its_environment_names() -> anyhow::Result<()> {
    let server = ModelServer::start().await?;
    server.push_all([
        Script::tool_call("memory_recall", serde_json::json!({"query": "Falcon"})),
        Script::stream_answer(&["The Falcon report ", "is due on 14 March."]),
    ]);
    let clawnet_bin = binary("clawnet-node", "clawnet")?;
    let temp = tempfile::tempdir()?;
    let dir = ada_with_a_work_identity(&clawnet_bin, temp.path())?;
    let base_url = server.base_url();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(&clawnet_bin)
            .args(["--data-dir", dir.to_str().unwrap_or_default(), "chat", "work", "--message", "Falcon?"])
            .env("CLAWNET_LLM_BASE_URL", base_url)
            .env("CLAWNET_LLM_MODEL", "scripted")
            .env("CLAWNET_LLM_API_KEY", "sk-from-the-environment")
            .output()
    })
    .await??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(stdout.trim(), "The Falcon report is due on 14 March.");
    let received = server.received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[0].header("authorization"), Some("Bearer sk-from-the-environment"));
    let second = received[1].body.to_string();
    assert!(second.contains("The Falcon report is due on 14 March"), "the recalled memory went back to the model");
    assert_eq!(received[0].body["model"], "scripted");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_writes_through_a_real_endpoint_process_and_the_owner_undoes_it() -> anyhow::Result<()> {
    let clawnet_bin = binary("clawnet-node", "clawnet")?;
    let temp = tempfile::tempdir()?;
    let root = temp.path().canonicalize()?;
    let dir = ada_with_a_work_identity(&clawnet_bin, &root)?;
    let folder = root.join("laptop-docs");
    std::fs::create_dir(&folder)?;
    let endpoint_dir = root.join("laptop");
    let target = folder.join("minutes.txt");
    let folder_arg = format!("{}:rw", folder.display());
    let init = clawnet_ok(&clawnet_bin, &endpoint_dir, &["endpoint", "init", "--folder", &folder_arg])?;
    let key = init.lines().find_map(|line| line.strip_prefix("Device key: ")).unwrap_or_default().to_owned();
    assert_eq!(key.len(), 64, "{init}");

    // The node thinks with a scripted model: the agent writes a file on the laptop.
    let server = ModelServer::start().await?;
    let write = serde_json::json!({"path": target.to_str(), "content": "Minutes of Monday", "mode": "create"});
    server.push_all([Script::tool_call("file_write", write), Script::answer("Written.")]);
    let base_url = server.base_url();
    let (clawnet_bin2, dir2, endpoint_dir2, folder2) =
        (clawnet_bin.clone(), dir.clone(), endpoint_dir.clone(), folder.clone());
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let (clawnet_bin, dir, endpoint_dir, folder) = (clawnet_bin2, dir2, endpoint_dir2, folder2);
        let mut node = Process::spawn(
            &clawnet_bin,
            &["--data-dir", dir.to_str().unwrap_or_default(), "run"],
            &[
                ("CLAWNET_LISTEN", "/ip4/127.0.0.1/tcp/0"),
                ("RUST_LOG", "warn"),
                ("CLAWNET_LLM_BASE_URL", &base_url),
                ("CLAWNET_LLM_MODEL", "scripted"),
            ],
        )?;
        let address =
            node.wait_for_line("listening /ip4/127.0.0.1/tcp/", STARTUP)?.trim_start_matches("listening ").to_owned();
        node.wait_for_line("api ", STARTUP)?;
        let certified = clawnet_ok(&clawnet_bin, &dir, &["device", "certify", &key, "--name", "laptop"])?;
        let code = certified.split_whitespace().find(|word| word.starts_with("clawnet-device:")).unwrap_or_default();
        let mut endpoint = Process::spawn(
            &clawnet_bin,
            &[
                "--data-dir",
                endpoint_dir.to_str().unwrap_or_default(),
                "endpoint",
                "--node",
                &address,
                "--certificate",
                code,
            ],
            &[("RUST_LOG", "warn")],
        )?;
        endpoint.wait_for_line("device \"laptop\" registered", STARTUP)?;
        let devices: Vec<serde_json::Value> =
            serde_json::from_str(&clawnet_ok(&clawnet_bin, &dir, &["device", "list", "--json"])?)?;
        assert_eq!(devices.len(), 1);
        assert_eq!(devices[0]["online"], true, "{devices:?}");

        clawnet_ok(&clawnet_bin, &dir, &["files", "grant", "work", folder.to_str().unwrap_or_default(), "--write"])?;
        let reply = clawnet_ok(&clawnet_bin, &dir, &["chat", "work", "--message", "Write the minutes"])?;
        assert_eq!(reply.trim(), "Written.");
        assert_eq!(std::fs::read_to_string(folder.join("minutes.txt"))?, "Minutes of Monday");

        let history: Vec<serde_json::Value> = serde_json::from_str(&clawnet_ok(
            &clawnet_bin,
            &dir,
            &["files", "history", "--device", "laptop", "--json"],
        )?)?;
        assert_eq!(history.len(), 1, "{history:?}");
        assert_eq!(history[0]["actor"], "work");
        let op = history[0]["op"].to_string();
        clawnet_ok(&clawnet_bin, &dir, &["files", "undo", &op, "--device", "laptop"])?;
        assert!(!folder.join("minutes.txt").exists(), "undo left the file");

        clawnet_ok(&clawnet_bin, &dir, &["device", "revoke", "laptop"])?;
        // The endpoint's next heartbeat is refused: it stops with the reason.
        let deadline = Instant::now() + STARTUP;
        let status = loop {
            if let Some(status) = endpoint.try_wait()? {
                break status;
            }
            if Instant::now() > deadline {
                bail!("the revoked endpoint kept running");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(status.code(), Some(1));
        assert_eq!(node.terminate()?, Some(0));
        // The device's own chain, signed by its key, verifies offline.
        clawnet_ok(&clawnet_bin, &endpoint_dir, &["audit", "verify"])?;
        Ok(())
    })
    .await??;
    Ok(())
}
