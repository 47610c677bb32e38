//! The `clawnet` binary, run as a process on real data directories.

use std::path::Path;
use std::process::{Command, Output};

use clawnet_crypto::Keyring;
use clawnet_crypto::keystore::{self, Passphrase};
use clawnet_storage::NodeDb;
use clawnet_storage::audit::{raw_entry, tamper_with_entry};

fn clawnet(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_clawnet"))
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("CLAWNET_PASSPHRASE")
        .env_remove("CLAWNET_DATA_DIR")
        .output()
        .expect("the clawnet binary runs")
}

fn clawnet_with_passphrase(dir: &Path, passphrase: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_clawnet"))
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env("CLAWNET_PASSPHRASE", passphrase)
        .output()
        .expect("the clawnet binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[track_caller]
fn ok(output: Output) -> String {
    assert!(output.status.success(), "failed: {}", stderr(&output));
    stdout(&output)
}

/// A failure is exit code 1 and exactly one line on stderr.
#[track_caller]
fn fails(output: Output) -> String {
    assert_eq!(output.status.code(), Some(1), "stdout: {} stderr: {}", stdout(&output), stderr(&output));
    let err = stderr(&output);
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err:?}");
    assert!(err.starts_with("clawnet: error: "), "{err:?}");
    err
}

fn init(dir: &Path) {
    let out = ok(clawnet(dir, &["init", "--name", "laptop", "--insecure-no-passphrase"]));
    assert!(out.contains("Owner fingerprint:"), "{out}");
}

#[test]
fn identity_lifecycle_is_listed_and_audited() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("node");
    init(&dir);
    ok(clawnet(&dir, &["identity", "create", "work", "--description", "Day job at ACME"]));
    ok(clawnet(&dir, &["identity", "create", "family", "--description", "Home"]));
    let listed: serde_json::Value = serde_json::from_str(&ok(clawnet(&dir, &["identity", "list", "--json"]))).unwrap();
    let tags: Vec<&str> = listed.as_array().unwrap().iter().map(|i| i["tag"].as_str().unwrap()).collect();
    assert_eq!(tags, ["work", "family"]);
    assert!(listed.as_array().unwrap().iter().all(|i| i["status"] == "active"));

    let out = ok(clawnet(&dir, &["identity", "retire", "work"]));
    assert!(out.contains("Retired identity work"), "{out}");
    let listed: serde_json::Value = serde_json::from_str(&ok(clawnet(&dir, &["identity", "list", "--json"]))).unwrap();
    assert_eq!(listed[0]["status"], "retired");
    assert!(listed[0]["retired_at_ms"].is_u64());
    let table = ok(clawnet(&dir, &["identity", "list"]));
    assert!(table.contains("retired") && table.contains("Home"), "{table}");

    // A retired tag can be reused by a new identity.
    ok(clawnet(&dir, &["identity", "create", "work", "--description", "New job"]));

    let verified = ok(clawnet(&dir, &["audit", "verify"]));
    assert!(verified.contains("Audit chain verified: 5 entries"), "{verified}");
    let export = ok(clawnet(&dir, &["audit", "export"]));
    let actions: Vec<String> = export
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap()["action"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(actions, ["node.init", "identity.create", "identity.create", "identity.retire", "identity.create"]);
}

#[test]
fn bad_input_gets_one_line_errors_and_changes_nothing() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("node");
    let err = fails(clawnet(&dir, &["identity", "list"]));
    assert!(err.contains("run `clawnet init` first"), "{err}");

    init(&dir);
    let err = fails(clawnet(&dir, &["init", "--name", "again", "--insecure-no-passphrase"]));
    assert!(err.contains("already exists"), "{err}");
    let err = fails(clawnet(&dir, &["identity", "create", "Work!", "--description", "x"]));
    assert!(err.contains("invalid identity tag"), "{err}");
    ok(clawnet(&dir, &["identity", "create", "work", "--description", "x"]));
    let err = fails(clawnet(&dir, &["identity", "create", "work", "--description", "y"]));
    assert!(err.contains("already called \"work\""), "{err}");
    let err = fails(clawnet(&dir, &["identity", "retire", "nosuch"]));
    assert!(err.contains("no active identity"), "{err}");
    let long = "d".repeat(2000);
    fails(clawnet(&dir, &["identity", "create", "long", "--description", &long]));

    // Usage errors are exit code 2 (clap).
    let usage = clawnet(&dir, &["identity", "create"]);
    assert_eq!(usage.status.code(), Some(2));

    // Nothing above changed the chain beyond genesis and the one identity.
    assert!(ok(clawnet(&dir, &["audit", "verify"])).contains("verified: 2 entries"));
}

#[test]
fn passphrase_protects_the_keystore() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("node");
    let out = ok(clawnet_with_passphrase(&dir, "correct horse", &["init", "--name", "desk"]));
    assert!(out.contains("encrypted with your passphrase"), "{out}");
    ok(clawnet_with_passphrase(&dir, "correct horse", &["identity", "create", "work", "--description", "x"]));
    let err = fails(clawnet_with_passphrase(&dir, "wrong", &["identity", "create", "home", "--description", "x"]));
    assert!(err.contains("wrong passphrase"), "{err}");
    // Without a terminal or the variable, it says how to provide one.
    let err = fails(clawnet(&dir, &["identity", "create", "home", "--description", "x"]));
    assert!(err.contains("CLAWNET_PASSPHRASE"), "{err}");
    // Reading needs no passphrase.
    assert!(ok(clawnet(&dir, &["audit", "verify"])).contains("2 entries"));
    // The secrets are in the file only encrypted: unlock them, then look for them in the raw bytes.
    let blob = NodeDb::open(&dir.join("clawnet.redb")).unwrap().read().unwrap().keystore().unwrap();
    assert!(keystore::needs_passphrase(&blob));
    let (secrets, _) = keystore::unlock(&blob, Some(&Passphrase::new("correct horse".into()))).unwrap();
    let keyring = Keyring::from_bytes(&secrets).unwrap();
    assert_eq!(keyring.identities.len(), 1);
    let file = std::fs::read(dir.join("clawnet.redb")).unwrap();
    for secret in [keyring.owner.signing.to_bytes(), keyring.device.to_bytes()] {
        assert!(!file.windows(32).any(|w| w == secret.as_slice()), "a secret key is stored in the clear");
    }
}

#[test]
fn editing_stored_audit_entries_makes_verify_fail_and_name_the_entry() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("node");
    init(&dir);
    for tag in ["work", "family", "club"] {
        ok(clawnet(&dir, &["identity", "create", tag, "--description", "x"]));
    }
    let db_path = dir.join("clawnet.redb");
    for seq in 1..=4u64 {
        let db = NodeDb::open(&db_path).unwrap();
        let original = raw_entry(&db, seq).unwrap().unwrap();
        drop(db);
        // Every 9th byte, plus the first and the last, of each entry.
        let mut positions: Vec<usize> = (0..original.len()).step_by(9).collect();
        positions.push(original.len() - 1);
        for byte in positions {
            let mut altered = original.clone();
            altered[byte] ^= 0x01;
            let db = NodeDb::open(&db_path).unwrap();
            tamper_with_entry(&db, seq, &altered).unwrap();
            drop(db);
            let err = fails(clawnet(&dir, &["audit", "verify"]));
            assert!(err.contains(&format!("audit entry {seq} is invalid")), "entry {seq} byte {byte}: {err}");
        }
        let db = NodeDb::open(&db_path).unwrap();
        tamper_with_entry(&db, seq, &original).unwrap();
    }
    assert!(ok(clawnet(&dir, &["audit", "verify"])).contains("4 entries"));
}

#[test]
fn export_to_a_file_writes_every_entry() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("node");
    init(&dir);
    ok(clawnet(&dir, &["identity", "create", "work", "--description", "x"]));
    let file = temp.path().join("audit.jsonl");
    let out = clawnet(&dir, &["audit", "export", "--out", file.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(stderr(&out).contains("Exported 2 audit entries"));
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.lines().count(), 2);
    assert!(!temp.path().join("audit.partial").exists());
}

#[test]
fn demo_runs_and_verifies() {
    let temp = tempfile::tempdir().unwrap();
    let keep = temp.path().join("demo");
    let out = Command::new(env!("CARGO_BIN_EXE_clawnet")).args(["demo", "--keep"]).arg(&keep).output().unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(text.contains("All checks passed."), "{text}");
    assert_eq!(text.matches("byte-identical: true").count(), 2, "both sessions, both sides: {text}");
    assert!(text.contains("Initech dispatch: Initech can deliver"), "the child session ran: {text}");
    assert!(text.contains("Globex sales: Our partner confirms: Initech can deliver"), "globex relayed it: {text}");
    assert!(text.contains("procurement: Agreed: a unit price of"), "the rule brains reach an agreement: {text}");
    assert!(text.contains("held for the owner as approval"), "{text}");
    // The kept nodes verify with the CLI too; the supplier recorded the held leak, and its owner
    // finds it waiting for a decision.
    for node in ["acme", "globex", "initech"] {
        assert!(ok(clawnet(&keep.join(node), &["audit", "verify"])).contains("Audit chain verified"), "{node}");
    }
    let export = ok(clawnet(&keep.join("globex"), &["audit", "export"]));
    let events: Vec<&str> = export.lines().filter(|l| l.contains("\"action\":\"security.")).collect();
    assert_eq!(events.len(), 1, "{export}");
    assert!(events[0].contains("\"action\":\"security.disclosure\""), "{export}");
    assert!(!export.contains("production cost"), "the audit never quotes a never-share item");
    let approvals = ok(clawnet(&keep.join("globex"), &["approvals"]));
    assert!(approvals.contains("held-message") && approvals.contains("pending"), "{approvals}");
}
