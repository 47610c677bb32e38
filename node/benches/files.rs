//! File endpoint benchmark: a governed create, overwrite and move through
//! [`GovernedFiles::request`], next to the plain `std::fs` operation with fsync, measured in the
//! same run, interleaved, in the same directory (the whitelisted folder): both sides get their
//! blocks from the same place and sync the same directory, which matters on a virtual disk where
//! writing blocks for the first time costs more than rewriting them.
//!
//! The governed side is the node's real path: layer 1 (the identity's scope, read from the node
//! database), layer 2 (the whitelist, resolved from the folder's handle without following links),
//! the backup of what an overwrite replaces (a hard link into the content-addressed blob store,
//! synced), the new content staged in a spare file (made ahead of time in the endpoint's state
//! directory) and synced, the journal entry synced as the change's decision, then the atomic
//! rename and, for a write, the directory sync. The reply goes then: the decision is durable and
//! recovery journals it and rolls it forward, so the journal commit with its audit entry, a
//! move's directory sync and the next write's spare file are made after the reply (`settle`),
//! before the next change begins. The bench waits for that untimed, before timing anything else,
//! and reports it as "settling", and the p50 of reply and settling together as "whole": what a
//! change costs when changes come back to back rather than one per agent turn.
//! The node is a real one (`NodeHome::init`, an identity, a grant of the whitelisted folder).
//!
//! The plain side is what a program that wants its data on disk does without any of that:
//!
//! - **create**: `File::create` + `write_all` + `sync_all`;
//! - **overwrite**: open with truncate + `write_all` + `sync_all` (in place, not crash-atomic);
//! - **move**: `std::fs::rename` within a directory + fsync of the directory.
//!
//! For the overwrite, a third, fairer reference is measured as well: the plain **atomic**
//! overwrite a careful program does (a temporary file written and synced, renamed over the
//! old one, the directory synced), which writes a new file as the governed path must.
//!
//! Each iteration uses fresh names, and every content (the old one an overwrite replaces
//! included) is distinct, so the content-addressed backup store never finds a blob it already
//! has. The files an overwrite or a move starts from are written and synced, untimed, just
//! before. The sides take turns going first. Reported per size and operation: the p50 of each,
//! and the ratio governed / plain (the target: at most 2 at 1 MiB). For reference, in the
//! same run: a raw redb durable commit (`common::RawDb`; a governed change makes one node commit,
//! while settling), and the p50 of creating an empty file in the folder during each phase ("bare
//! create": a plain create and the plain atomic overwrite create a file, a governed write creates
//! its spare while settling, a plain overwrite or any move creates none; on some virtual disks
//! what a new inode costs varies from tens of microseconds to a millisecond with where the
//! directory happens to be and how busy the disk is).
//!
//! Run: `cargo bench -p clawnet-node --bench files` (add `-- --runs N`). `BENCH_DIR=/dev/shm`
//! puts the node and the folder on tmpfs, which takes the disk out of every figure; `BENCH_DIR`
//! also chooses another place on disk (the default is Cargo's target temporary directory).

// `raw_network` and `cpu_time` are for the network benchmarks; this one uses the rest.
#[allow(dead_code)]
mod common;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clawnet_crypto::IdentityId;
use clawnet_node::files::{self, FileReply, FileRequest, FolderConfig, FsPath, GovernedFiles, WriteMode};
use clawnet_node::home::{KeyProtection, NodeHome};
use clawnet_storage::files::FileAccess;
use common::{RawDb, median, median_duration, micros};

/// File sizes and how many iterations of each operation at that size.
const SIZES: [(usize, usize); 2] = [(4 * 1024, 200), (1024 * 1024, 50)];
/// The operations, in table order.
const OPS: [Op; 3] = [Op::Create, Op::Overwrite, Op::Move];
/// Raw redb durable commits measured for reference.
const RAW_COMMITS: usize = 200;
/// The target: governed at most this many times the plain operation, at [`TARGET_SIZE`].
const TARGET_RATIO: f64 = 2.0;
/// The size the target is stated for.
const TARGET_SIZE: usize = 1024 * 1024;

fn main() -> anyhow::Result<()> {
    let results = common::repeat(5, run_once)?;
    let median = |f: &dyn Fn(&RunResult) -> f64| median(results.iter().map(f).collect());
    let met = |ok: bool| if ok { "met" } else { "NOT MET" };
    println!("\nmedian of {} runs (ratios are medians of each run's ratio)", results.len());
    println!(
        "  {:<8} {:<10} {:>14} {:>16} {:>15} {:>13} {:>13} {:>12}",
        "size", "op", "plain p50", "governed p50", "governed/plain", "bare create", "settling", "whole/plain"
    );
    let mut verdicts = Vec::new();
    for (size_idx, (size, _)) in SIZES.iter().enumerate() {
        for (op_idx, op) in OPS.iter().enumerate() {
            let pick = |r: &RunResult| r.figures[size_idx][op_idx];
            let plain = median(&|r| pick(r).plain_p50_us);
            let governed = median(&|r| pick(r).governed_p50_us);
            let ratio = median(&|r| pick(r).ratio());
            let probe = median(&|r| pick(r).probe_p50_us);
            let settle = median(&|r| pick(r).settle_p50_us);
            let whole = median(&|r| pick(r).whole_p50_us / pick(r).plain_p50_us);
            let mut note = String::new();
            if *size == TARGET_SIZE {
                note = format!("  (target <= {TARGET_RATIO:.2}: {})", met(ratio <= TARGET_RATIO));
                verdicts.push(format!("{} {} ({ratio:.2})", op.name(), met(ratio <= TARGET_RATIO)));
            }
            println!(
                "  {:<8} {:<10} {plain:>11.1} us {governed:>13.1} us {ratio:>15.2} {probe:>10.1} us {settle:>10.1} us \
                 {whole:>12.2}{note}",
                size_label(*size),
                op.name()
            );
            if results.iter().all(|r| pick(r).atomic_p50_us.is_some()) {
                let atomic = median(&|r| pick(r).atomic_p50_us.unwrap_or(f64::NAN));
                let ratio = median(&|r| pick(r).governed_p50_us / pick(r).atomic_p50_us.unwrap_or(f64::NAN));
                println!(
                    "  {:<8} {:<10} {atomic:>11.1} us {:>16} {ratio:>15.2} {:>13}  (plain atomic overwrite: temp + \
                     fsync + rename + dir fsync)",
                    "", "(atomic)", "", ""
                );
            }
        }
    }
    let commit = median(&|r| r.raw_commit_p50_us);
    println!("  raw redb durable commit p50 (reference): {commit:.1} us");
    println!("  bare create: an empty file created in the folder (open O_CREAT + close), p50 over the same phase");
    println!(
        "  settling: p50 of what the governed side finishes after its reply (the journal commit, a move's \
         directory sync, the next write's spare file), waited for untimed before anything else is timed"
    );
    println!("  whole/plain: p50 of the governed reply and its settling together, over the plain p50");
    println!("target governed <= {TARGET_RATIO:.0}x plain at {}: {}", size_label(TARGET_SIZE), verdicts.join(", "));
    Ok(())
}

/// One of the measured operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Create,
    Overwrite,
    Move,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Overwrite => "overwrite",
            Op::Move => "move",
        }
    }
}

/// Who does an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// `std::fs` with fsync.
    Plain,
    /// [`GovernedFiles::request`].
    Governed,
    /// `std::fs`, atomically: temporary file, fsync, rename, directory fsync (overwrite only).
    Atomic,
}

/// One operation at one size, in one run.
#[derive(Debug, Clone, Copy, Default)]
struct Figure {
    plain_p50_us: f64,
    governed_p50_us: f64,
    /// The plain atomic overwrite (overwrite only).
    atomic_p50_us: Option<f64>,
    /// Creating an empty file in the folder (open with `O_CREAT`, close), no data, no sync.
    probe_p50_us: f64,
    /// The governed side's settling after its reply.
    settle_p50_us: f64,
    /// The governed side's reply and settling together.
    whole_p50_us: f64,
}

impl Figure {
    fn ratio(self) -> f64 {
        self.governed_p50_us / self.plain_p50_us
    }
}

struct RunResult {
    /// Indexed by [`SIZES`], then [`OPS`].
    figures: [[Figure; OPS.len()]; SIZES.len()],
    raw_commit_p50_us: f64,
}

impl std::fmt::Display for RunResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for ((size, _), figures) in SIZES.iter().zip(&self.figures) {
            write!(f, "{}:", size_label(*size))?;
            for (op, figure) in OPS.iter().zip(figures) {
                write!(
                    f,
                    " {} {:.0}/{:.0}us ({:.2}x);",
                    op.name(),
                    figure.governed_p50_us,
                    figure.plain_p50_us,
                    figure.ratio()
                )?;
                if let Some(atomic) = figure.atomic_p50_us {
                    write!(f, " atomic overwrite {atomic:.0}us;")?;
                }
            }
            write!(f, " ")?;
        }
        write!(f, "raw commit {:.0}us", self.raw_commit_p50_us)
    }
}

async fn run_once() -> anyhow::Result<RunResult> {
    let base = std::env::var_os("BENCH_DIR").map_or_else(|| env!("CARGO_TARGET_TMPDIR").into(), PathBuf::from);
    let dir = tempfile::tempdir_in(base)?;
    let mut raw_db = RawDb::create(dir.path())?;
    let commits = (0..RAW_COMMITS).map(|_| raw_db.commit_one()).collect::<anyhow::Result<Vec<_>>>()?;
    drop(raw_db);
    let raw_commit_p50_us = micros(median_duration(commits));

    let bench = Bench::set_up(dir.path())?;
    let mut figures = [[Figure::default(); OPS.len()]; SIZES.len()];
    for (size_idx, (size, iterations)) in SIZES.iter().enumerate() {
        for (op_idx, op) in OPS.iter().enumerate() {
            figures[size_idx][op_idx] = bench.measure(*op, *size, *iterations)?;
        }
    }
    Ok(RunResult { figures, raw_commit_p50_us })
}

/// A node with an identity granted one whitelisted folder.
struct Bench {
    files: GovernedFiles,
    identity: IdentityId,
    /// The whitelisted folder (canonical).
    folder: PathBuf,
    /// Bytes that are not all alike, cut to size and stamped per iteration.
    filler: Vec<u8>,
}

impl Bench {
    fn set_up(dir: &Path) -> anyhow::Result<Bench> {
        let home = NodeHome::init(&dir.join("node"), "bench", KeyProtection::None)?;
        let identity = home.create_identity("files", "file endpoint benchmark")?.id;
        let folder = dir.join("folder");
        std::fs::create_dir(&folder)?;
        let folder = std::fs::canonicalize(&folder)?;
        let folders = [FolderConfig { path: folder.clone(), access: FileAccess::ReadWrite }];
        let files = GovernedFiles::open(&files::endpoint_config(home.home().dir(), &folders), home.db().clone())?;
        files.grant(identity, &fs_path(&folder)?, FileAccess::ReadWrite)?;
        let largest = SIZES.iter().map(|(size, _)| *size).max().unwrap_or(0);
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let filler = (0..largest)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        Ok(Bench { files, identity, folder, filler })
    }

    /// `iterations` of `op` at `size` by every side, the sides taking turns going first.
    fn measure(&self, op: Op, size: usize, iterations: usize) -> anyhow::Result<Figure> {
        let sides: &[Side] = if op == Op::Overwrite {
            &[Side::Plain, Side::Governed, Side::Atomic]
        } else {
            &[Side::Plain, Side::Governed]
        };
        let mut times: Vec<Vec<Duration>> = vec![Vec::with_capacity(iterations); sides.len()];
        let mut probes = Vec::with_capacity(iterations);
        let mut settling = Vec::with_capacity(iterations);
        let mut whole = Vec::with_capacity(iterations);
        for iteration in 0..iterations {
            let name = format!("{}-{size}-{iteration}", op.name());
            for turn in 0..sides.len() {
                let side_idx = (iteration + turn) % sides.len();
                let elapsed = match sides[side_idx] {
                    Side::Plain => self.plain(op, size, &name)?,
                    Side::Governed => {
                        let (elapsed, settled) = self.governed(op, size, &name)?;
                        settling.push(settled);
                        whole.push(elapsed + settled);
                        elapsed
                    }
                    Side::Atomic => self.atomic_overwrite(size, &name)?,
                };
                times[side_idx].push(elapsed);
            }
            probes.push(self.probe(&name)?);
        }
        let mut p50s = times.into_iter().map(|samples| micros(median_duration(samples)));
        Ok(Figure {
            plain_p50_us: p50s.next().unwrap_or(f64::NAN),
            governed_p50_us: p50s.next().unwrap_or(f64::NAN),
            atomic_p50_us: p50s.next(),
            probe_p50_us: micros(median_duration(probes)),
            settle_p50_us: micros(median_duration(settling)),
            whole_p50_us: micros(median_duration(whole)),
        })
    }

    /// One plain operation on files named after `name`; returns how long it took.
    fn plain(&self, op: Op, size: usize, name: &str) -> anyhow::Result<Duration> {
        let path = self.folder.join(format!("plain-{name}"));
        let content = self.content(size, &format!("plain {name}"));
        match op {
            Op::Create => {
                let start = Instant::now();
                let mut file = File::create(&path)?;
                file.write_all(&content)?;
                file.sync_all()?;
                Ok(start.elapsed())
            }
            Op::Overwrite => {
                write_synced(&path, &self.content(size, &format!("plain old {name}")))?;
                let start = Instant::now();
                let mut file = OpenOptions::new().write(true).truncate(true).open(&path)?;
                file.write_all(&content)?;
                file.sync_all()?;
                Ok(start.elapsed())
            }
            Op::Move => {
                write_synced(&path, &content)?;
                let to = self.folder.join(format!("plain-{name}.moved"));
                let start = Instant::now();
                std::fs::rename(&path, &to)?;
                File::open(&self.folder)?.sync_all()?;
                Ok(start.elapsed())
            }
        }
    }

    /// Creates an empty file named after `name`; returns how long it took. What creating a file
    /// (an inode and a directory entry) costs in this folder varies a lot on some virtual disks,
    /// and only some of the operations create one.
    fn probe(&self, name: &str) -> anyhow::Result<Duration> {
        let path = self.folder.join(format!("probe-{name}"));
        let start = Instant::now();
        drop(File::create(&path)?);
        Ok(start.elapsed())
    }

    /// One plain atomic overwrite of a file named after `name`; returns how long it took.
    fn atomic_overwrite(&self, size: usize, name: &str) -> anyhow::Result<Duration> {
        let path = self.folder.join(format!("atomic-{name}"));
        let temp = self.folder.join(format!("atomic-{name}.tmp"));
        write_synced(&path, &self.content(size, &format!("atomic old {name}")))?;
        let content = self.content(size, &format!("atomic {name}"));
        let start = Instant::now();
        let mut file = File::create(&temp)?;
        file.write_all(&content)?;
        file.sync_all()?;
        std::fs::rename(&temp, &path)?;
        File::open(&self.folder)?.sync_all()?;
        Ok(start.elapsed())
    }

    /// One governed operation on files named after `name`; returns how long it took until the
    /// reply, and how long its settling took after that.
    fn governed(&self, op: Op, size: usize, name: &str) -> anyhow::Result<(Duration, Duration)> {
        let path = self.folder.join(format!("governed-{name}"));
        let content = self.content(size, &format!("governed {name}"));
        let request = match op {
            Op::Create => FileRequest::Write { path: fs_path(&path)?, content, mode: WriteMode::Create },
            Op::Overwrite => {
                write_synced(&path, &self.content(size, &format!("governed old {name}")))?;
                FileRequest::Write { path: fs_path(&path)?, content, mode: WriteMode::Overwrite }
            }
            Op::Move => {
                write_synced(&path, &content)?;
                let to = self.folder.join(format!("governed-{name}.moved"));
                FileRequest::Move { from: fs_path(&path)?, to: fs_path(&to)? }
            }
        };
        let start = Instant::now();
        let reply = self.files.request(self.identity, None, request)?;
        let elapsed = start.elapsed();
        if !matches!(reply, FileReply::Done { .. }) {
            bail!("a governed {} answered {reply:?}", op.name());
        }
        // What settles after the reply (the journal commit, a move's directory sync, the next
        // spare file) finishes before anything else is timed, so it never overlaps the plain
        // side; it is reported on its own.
        let settling = Instant::now();
        self.files.endpoint().settle()?;
        Ok((elapsed, settling.elapsed()))
    }

    /// `size` bytes that no other content in the run has: `stamp` first, then the filler.
    fn content(&self, size: usize, stamp: &str) -> Vec<u8> {
        let mut content = self.filler[..size].to_vec();
        let stamp = format!("{stamp}\n");
        content[..stamp.len()].copy_from_slice(stamp.as_bytes());
        content
    }
}

/// Writes `content` to a new file at `path` and syncs it (setup, untimed).
fn write_synced(path: &Path, content: &[u8]) -> anyhow::Result<()> {
    let mut file = File::create(path)?;
    file.write_all(content)?;
    file.sync_all()?;
    Ok(())
}

fn fs_path(path: &Path) -> anyhow::Result<FsPath> {
    let text = path.to_str().with_context(|| format!("{} is not UTF-8", path.display()))?;
    Ok(FsPath::parse(text)?)
}

fn size_label(size: usize) -> String {
    if size >= 1024 * 1024 { format!("{} MiB", size / (1024 * 1024)) } else { format!("{} KiB", size / 1024) }
}
