//! Killing a process (SIGKILL) in the middle of a stream of audit appends leaves a chain that
//! verifies and holds every entry whose append had returned.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clawnet_storage::NodeDb;

/// Runs the writer until it has reported `at_least` appends, kills it, and returns the
/// sequence numbers it reported (all of them, including those still in the pipe).
fn run_and_kill(db: &std::path::Path, at_least: usize) -> Vec<u64> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_audit-writer"))
        .arg(db)
        .arg("8")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("audit-writer starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut reported = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while reported.len() < at_least {
        assert!(Instant::now() < deadline, "the writer stalled after {} appends", reported.len());
        let line = lines.next().expect("the writer exited early").unwrap();
        reported.push(line.strip_prefix("appended ").unwrap().parse().unwrap());
    }
    child.kill().unwrap(); // SIGKILL on Unix: no destructor, no flush, no clean close.
    child.wait().unwrap();
    for line in lines {
        reported.push(line.unwrap().strip_prefix("appended ").unwrap().parse().unwrap());
    }
    reported
}

#[test]
fn sigkill_mid_append_keeps_every_returned_entry_and_a_valid_chain() {
    let temp = tempfile::tempdir().unwrap();
    let db_path = temp.path().join("node.redb");
    let mut previous_head = 0;
    for (round, at_least) in [300, 700, 150].into_iter().enumerate() {
        let reported = run_and_kill(&db_path, at_least);
        let db = NodeDb::open(&db_path).unwrap();
        let summary = db.verify_audit().unwrap_or_else(|err| panic!("round {round}: chain broken after kill: {err}"));
        let max_reported = reported.iter().copied().max().unwrap();
        assert!(
            summary.entries >= max_reported,
            "round {round}: append of entry {max_reported} returned but the chain has {} entries",
            summary.entries
        );
        assert!(reported.iter().all(|&seq| seq > previous_head), "round {round}: a reported seq was reused");
        previous_head = summary.entries;
    }
}
