//! Killing a process (SIGKILL) in the middle of a stream of audit appends leaves a chain that
//! verifies and holds every entry whose append had returned, also when some of the appends
//! were changes that are durable later (they may be lost, never an earlier durable one).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clawnet_storage::NodeDb;

/// Runs the writer until it has reported `at_least` durable appends, kills it, and returns the
/// sequence numbers of durable appends it reported (all of them, including those still in the
/// pipe), and how many deferred ones it reported. With `defer_every` n > 0, every n-th append
/// of each writer thread is durable later.
fn run_and_kill(db: &std::path::Path, at_least: usize, defer_every: u64) -> (Vec<u64>, usize) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_audit-writer"))
        .arg(db)
        .arg("8")
        .arg(defer_every.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("audit-writer starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut reported, mut deferred) = (Vec::new(), 0);
    let mut read = |line: String, reported: &mut Vec<u64>| match line.split_once(' ') {
        Some(("appended", seq)) => reported.push(seq.parse().unwrap()),
        Some(("deferred", _)) => deferred += 1,
        _ => panic!("unexpected line from the writer: {line}"),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while reported.len() < at_least {
        assert!(Instant::now() < deadline, "the writer stalled after {} appends", reported.len());
        read(lines.next().expect("the writer exited early").unwrap(), &mut reported);
    }
    child.kill().unwrap(); // SIGKILL on Unix: no destructor, no flush, no clean close.
    child.wait().unwrap();
    for line in lines {
        read(line.unwrap(), &mut reported);
    }
    (reported, deferred)
}

#[test]
fn sigkill_mid_append_keeps_every_returned_entry_and_a_valid_chain() {
    kill_rounds(0);
}

#[test]
fn sigkill_among_changes_durable_later_keeps_every_durable_entry_and_a_valid_chain() {
    kill_rounds(3);
}

/// Three rounds of writing and killing: after each, the chain verifies and holds every entry
/// whose durable append returned.
fn kill_rounds(defer_every: u64) {
    let temp = tempfile::tempdir().unwrap();
    let db_path = temp.path().join("node.redb");
    let mut previous_head = 0;
    for (round, at_least) in [300, 700, 150].into_iter().enumerate() {
        let (reported, deferred) = run_and_kill(&db_path, at_least, defer_every);
        if defer_every > 0 {
            assert!(deferred > 0, "round {round}: no change durable later was made");
        }
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
