//! Audit chain benchmark: durable group-commit appends and chain verification, each next to raw
//! floors measured in the same run on the same machine.
//!
//! - append throughput with 16, 64 and 256 appends in flight (4 submitting threads) vs raw redb
//!   durable commits of the same batch size and record size, and vs raw ed25519 signing of the
//!   same bodies on one core (the writer signs once per batch since 2026-12-06, so this floor
//!   is what signing every entry would allow);
//! - one durable append's latency vs one raw redb durable commit of one record;
//! - `verify` throughput vs raw ed25519 batch verification (`ed25519_dalek::verify_batch`) of one
//!   signature per entry (the chain holds one per batch, so this too is the every-entry-signed
//!   design's floor).
//!
//! Run: `cargo bench -p clawnet-storage --bench audit` (add `-- --runs N` for more runs). Prints
//! every run and the medians.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clawnet_crypto::{Domain, SigningSecret};
use clawnet_protocol::audit::{Actor, AuditDraft, Outcome, VERIFY_BATCH, parse_record};
use clawnet_protocol::testkit::TestOwner;
use clawnet_storage::audit::raw_entry;
use clawnet_storage::{Change, Genesis, NodeDb, Pending};
use redb::{Database, TableDefinition};

/// Threads submitting appends; each keeps `in_flight / SUBMITTERS` appends outstanding.
const SUBMITTERS: usize = 4;
/// Appends in flight for each throughput measurement; the target is checked at 64.
const IN_FLIGHT: [usize; 3] = [16, 64, 256];
const HEADLINE_IN_FLIGHT: usize = 64;
const APPENDS: usize = 20_000;
const LATENCY_SAMPLES: usize = 300;
const RAW_TABLE: TableDefinition<'static, u64, &[u8]> = TableDefinition::new("raw");

fn main() {
    let runs = std::env::args().skip_while(|arg| arg != "--runs").nth(1).and_then(|n| n.parse().ok()).unwrap_or(5);
    let mut results = Vec::new();
    for run in 1..=runs {
        let result = run_once();
        println!("run {run}: {result}");
        results.push(result);
    }
    let median = |f: &dyn Fn(&RunResult) -> f64| median(results.iter().map(f).collect());
    let sign = median(&|r| r.sign_per_s);
    println!("\nmedian of {runs} runs (ratios are medians of each run's ratio)");
    println!("  raw ed25519 signing, same bodies, one core: {sign:>9.0} signatures/s");
    println!("  in flight  append/s   avg batch  raw redb/s (same batch)  append / slower floor");
    for (idx, in_flight) in IN_FLIGHT.iter().enumerate() {
        let append = median(&|r| r.levels[idx].append_per_s);
        let batch = median(&|r| r.levels[idx].avg_batch);
        let redb = median(&|r| r.levels[idx].redb_per_s);
        let ratio = median(&|r| r.levels[idx].append_per_s / r.levels[idx].redb_per_s.min(r.sign_per_s));
        let target = if *in_flight == HEADLINE_IN_FLIGHT { "  (target >= 0.70)" } else { "" };
        println!("  {in_flight:>9}  {append:>8.0}   {batch:>9.1}  {redb:>23.0}  {ratio:>21.2}{target}");
    }
    let lat = median(&|r| r.append_latency_us);
    let raw_lat = median(&|r| r.redb_latency_us);
    let lat_ratio = median(&|r| r.append_latency_us / r.redb_latency_us);
    println!(
        "  one durable append: {lat:.1} us; one raw redb durable commit: {raw_lat:.1} us; ratio {lat_ratio:.2} (target <= 1.30)"
    );
    let verify = median(&|r| r.verify_per_s);
    let batch_verify = median(&|r| r.batch_verify_per_s);
    let verify_ratio = median(&|r| r.verify_per_s / r.batch_verify_per_s);
    println!(
        "  audit verify: {verify:.0} entries/s; raw ed25519 batch verify ({VERIFY_BATCH} per batch): {batch_verify:.0} signatures/s; ratio {verify_ratio:.2} (target >= 0.70)"
    );
}

struct Level {
    append_per_s: f64,
    avg_batch: f64,
    redb_per_s: f64,
}

struct RunResult {
    levels: Vec<Level>,
    sign_per_s: f64,
    append_latency_us: f64,
    redb_latency_us: f64,
    verify_per_s: f64,
    batch_verify_per_s: f64,
}

impl std::fmt::Display for RunResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (level, in_flight) in self.levels.iter().zip(IN_FLIGHT) {
            write!(
                f,
                "[{in_flight}: {:.0}/s b{:.1} redb {:.0}/s] ",
                level.append_per_s, level.avg_batch, level.redb_per_s
            )?;
        }
        write!(
            f,
            "sign {:.0}/s, latency {:.1}us vs {:.1}us, verify {:.0}/s vs {:.0}/s",
            self.sign_per_s, self.append_latency_us, self.redb_latency_us, self.verify_per_s, self.batch_verify_per_s
        )
    }
}

struct Fixture {
    owner: TestOwner,
}

impl Fixture {
    fn node(&self, path: &Path) -> NodeDb {
        let genesis = Genesis {
            owner: self.owner.id(),
            device_cert: self.owner.device_cert(),
            node_name: "bench".into(),
            keystore: Vec::new(),
        };
        NodeDb::create(path, genesis, self.device()).expect("create")
    }

    fn device(&self) -> SigningSecret {
        SigningSecret::from_bytes(&self.owner.device.to_bytes())
    }
}

fn run_once() -> RunResult {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let fixture = Fixture { owner: TestOwner::new(7, &[]) };
    let raw = Database::create(dir.path().join("raw.redb")).expect("raw db");
    let mut raw_key = 0u64;

    let mut levels = Vec::new();
    let mut verify_db = None;
    for in_flight in IN_FLIGHT {
        let db = Arc::new(fixture.node(&dir.path().join(format!("append-{in_flight}.redb"))));
        let (append_per_s, avg_batch) = appends(&db, in_flight);
        let record = raw_entry(&db, 2).expect("read").expect("entry 2");
        let redb_per_s = raw_redb(&raw, &mut raw_key, &record, avg_batch.round().max(1.0) as usize);
        levels.push(Level { append_per_s, avg_batch, redb_per_s });
        if in_flight == HEADLINE_IN_FLIGHT {
            verify_db = Some(db);
        }
    }
    let db = verify_db.expect("headline level ran");
    let record = raw_entry(&db, 2).expect("read").expect("entry 2");
    let body = parse_record(&record).expect("record").body;

    // Raw ed25519 signing of bodies of the same size, one core.
    let signer = fixture.device();
    let mut message = body.to_vec();
    let signs = 20_000;
    let start = Instant::now();
    for n in 0..signs {
        message[10] = n as u8;
        std::hint::black_box(signer.sign(Domain::AuditEntry, &message));
    }
    let sign_per_s = signs as f64 / start.elapsed().as_secs_f64();

    // Latency: one append at a time vs one single-record durable commit at a time, interleaved
    // so both see the same disk.
    let single = fixture.node(&dir.path().join("single.redb"));
    let mut append_latencies = Vec::with_capacity(LATENCY_SAMPLES);
    let mut redb_latencies = Vec::with_capacity(LATENCY_SAMPLES);
    for n in 0..LATENCY_SAMPLES {
        let start = Instant::now();
        single.append(draft(0, n)).expect("append");
        append_latencies.push(start.elapsed());
        let start = Instant::now();
        raw_commit(&raw, &mut raw_key, &record, 1);
        redb_latencies.push(start.elapsed());
    }

    // Verification of the whole chain vs raw batch verification of the same entries.
    let start = Instant::now();
    let summary = db.verify_audit().expect("chain verifies");
    let verify_per_s = summary.entries as f64 / start.elapsed().as_secs_f64();
    let records: Vec<Vec<u8>> =
        (1..=summary.entries).map(|seq| raw_entry(&db, seq).expect("read").expect("entry")).collect();
    // One signature per entry, by ed25519-dalek itself over the same bodies: the raw floor of a
    // chain whose every entry is signed.
    let raw_key = ed25519_dalek::SigningKey::from_bytes(&[42; 32]);
    let bodies: Vec<&[u8]> = records.iter().map(|record| parse_record(record).expect("record").body).collect();
    let signatures: Vec<ed25519_dalek::Signature> =
        bodies.iter().map(|body| ed25519_dalek::Signer::sign(&raw_key, body)).collect();
    let keys = vec![raw_key.verifying_key(); VERIFY_BATCH];
    let start = Instant::now();
    for (bodies, signatures) in bodies.chunks(VERIFY_BATCH).zip(signatures.chunks(VERIFY_BATCH)) {
        ed25519_dalek::verify_batch(bodies, signatures, &keys[..bodies.len()]).expect("valid signatures");
    }
    let batch_verify_per_s = signatures.len() as f64 / start.elapsed().as_secs_f64();

    RunResult {
        levels,
        sign_per_s,
        append_latency_us: micros(median_duration(append_latencies)),
        redb_latency_us: micros(median_duration(redb_latencies)),
        verify_per_s,
        batch_verify_per_s,
    }
}

/// Appends `APPENDS` entries keeping `in_flight` outstanding; returns (entries/s, avg batch).
fn appends(db: &Arc<NodeDb>, in_flight: usize) -> (f64, f64) {
    let window = in_flight / SUBMITTERS;
    let per_thread = APPENDS / SUBMITTERS;
    let before = db.writer_stats().expect("writer");
    let start = Instant::now();
    let workers: Vec<_> = (0..SUBMITTERS)
        .map(|t| {
            let db = db.clone();
            std::thread::spawn(move || {
                let mut outstanding: VecDeque<Pending<()>> = VecDeque::with_capacity(window);
                for n in 0..per_thread {
                    if outstanding.len() == window {
                        outstanding.pop_front().expect("window").wait().expect("append");
                    }
                    outstanding.push_back(db.submit(Change::audit(draft(t, n))).expect("submit"));
                }
                for pending in outstanding {
                    pending.wait().expect("append");
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("submitter");
    }
    let elapsed = start.elapsed();
    let stats = db.writer_stats().expect("writer");
    let appended = (per_thread * SUBMITTERS) as f64;
    (appended / elapsed.as_secs_f64(), appended / (stats.batches - before.batches) as f64)
}

/// Raw redb: durable commits of `batch` records of the same size; returns records/s.
fn raw_redb(raw: &Database, key: &mut u64, record: &[u8], batch: usize) -> f64 {
    let commits = (APPENDS / batch).max(20);
    let start = Instant::now();
    for _ in 0..commits {
        raw_commit(raw, key, record, batch);
    }
    (commits * batch) as f64 / start.elapsed().as_secs_f64()
}

fn raw_commit(raw: &Database, key: &mut u64, record: &[u8], batch: usize) {
    let tx = raw.begin_write().expect("tx");
    {
        let mut table = tx.open_table(RAW_TABLE).expect("table");
        for _ in 0..batch {
            table.insert(*key, record).expect("insert");
            *key += 1;
        }
    }
    tx.commit().expect("commit");
}

fn draft(thread: usize, n: usize) -> AuditDraft {
    AuditDraft::new(Actor::Node, "bench.append", format!("thread {thread} append {n}"), "benchmark", Outcome::Success)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn median_duration(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}
