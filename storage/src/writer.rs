//! Group commit: many concurrent writers, few durable transactions.
//!
//! Every write is a [`Change`]: audit drafts plus an optional step that writes records.
//! [`NodeDb::submit`](crate::NodeDb::submit) queues a change and returns a [`Pending`] that
//! resolves once the change is durable; it can be waited on by a thread or awaited by a task.
//!
//! One *writer* thread takes everything queued as one batch, numbers and links its audit
//! entries and signs the last one, whose signature covers the others through the hash chain
//! (`clawnet_protocol::audit`); then it runs each change's step, writes the entries and
//! commits them in one durable write transaction (durable through the commit journal,
//! `journal.rs`; a checkpoint now and then, which is when the entries reach the audit table:
//! until then they are among the recent writes, `recent.rs`). What queues during a commit is the next batch, so
//! batches grow with the load. One signature per batch is why sealing needs no stage of its
//! own: until 2026-12-06 every entry was signed, by a sealer thread (with a signing helper)
//! that handed batches to a committer thread; the hand-off cost more than the overlap saved
//! once a batch took one signature (BENCHMARKS.md, *Governed sessions*). A blocking
//! [`NodeDb::commit`](crate::NodeDb::commit) with nothing in flight skips the thread and seals
//! and commits on the calling thread: a lone change pays for its fsync and nothing else (once
//! changes have shared a batch, only after two batches of one in a row: under load an inline
//! commit is a batch of one that the next batch would have carried).
//!
//! A change may be *durable later* ([`Change::durable_later`]): it is committed and visible when
//! its commit returns, but a batch made only of such changes skips the sync, so it reaches the
//! disk with the next durable commit (or when the database is closed). A crash before that
//! loses it, and every later change, never an earlier one: what survives is always a prefix of
//! the commit sequence, so the audit chain on disk stays whole. It is for what a crash may undo
//! safely: bookkeeping (the outbox forgetting an acknowledged message: it is sent again, and the
//! receiver's dedup answers for it), or a change nobody outside is told of before
//! [`crate::NodeDb::when_durable`] says it is on disk (an inbound session turn, acknowledged
//! only then; [`crate::NodeDb::sync`] bounds the wait).
//!
//! A failed commit poisons the writer: later batches were sealed on top of entries that never
//! reached the disk, and after a failed fsync nothing since can be trusted (the PostgreSQL
//! lesson), so every later write fails until the database is reopened, which re-reads the chain
//! head from disk. A change's step must therefore only write: decisions are made before it is
//! submitted, by the single owner of that state.

use std::any::Any;
use std::fmt;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clawnet_crypto::{Hash32, OwnerId, SigningSecret, Timestamp};
use clawnet_protocol::audit::{AuditDraft, LinkedEntry, SealedEntry, seal_batch};
use redb::{Database, TableHandle};

use crate::deliveries::QueuedFeed;
use crate::deliveries::recent::RecentOutbox;
use crate::error::{DbResultExt, StoreError};
use crate::journal::{Journal, record_put};
use crate::recent::{AuditRows, RecentWrites};
use crate::schema::AUDIT;
use crate::snapshots::{Snapshots, Touched};
use crate::view::Txn;

mod waits;

use waits::{Committed, Durable, Slot, typed};
pub use waits::{Pending, WhenDurable};

/// Most changes committed in one transaction.
const MAX_BATCH: usize = 4096;
/// Batches of one change in a row after which a change may be committed on the calling thread
/// (see [`Writer::commit_if_idle`]).
const LONE_BEFORE_INLINE: u32 = 2;
/// Changes that may wait for the writer thread before `submit` blocks (backpressure).
const QUEUE_CAPACITY: usize = 16 * 1024;

type Step = Box<dyn FnOnce(&mut Txn<'_>) -> Result<Box<dyn Any + Send>, StoreError> + Send>;

/// One atomic write: records (through `step`) and the audit entries that describe them.
pub struct Change<T = ()> {
    audit: Vec<AuditDraft>,
    step: Option<Step>,
    durable_later: bool,
    output: std::marker::PhantomData<fn() -> T>,
}

impl Change<()> {
    /// A change that only records `draft` in the audit chain.
    pub fn audit(draft: AuditDraft) -> Change<()> {
        Change { audit: vec![draft], step: None, durable_later: false, output: std::marker::PhantomData }
    }
}

impl<T: Send + 'static> Change<T> {
    /// A change that runs `step` inside the transaction and returns its output. `step` must
    /// only write (see the module docs).
    pub fn new(step: impl FnOnce(&mut Txn<'_>) -> Result<T, StoreError> + Send + 'static) -> Change<T> {
        let step: Step = Box::new(move |txn| step(txn).map(|out| Box::new(out) as Box<dyn Any + Send>));
        Change { audit: Vec::new(), step: Some(step), durable_later: false, output: std::marker::PhantomData }
    }

    /// Adds an audit entry, committed with the change.
    pub fn with_audit(mut self, draft: AuditDraft) -> Change<T> {
        self.audit.push(draft);
        self
    }

    /// Lets the change reach the disk with the next durable commit instead of paying for an
    /// fsync of its own (see the module docs): only for what a crash may safely undo.
    pub fn durable_later(mut self) -> Change<T> {
        self.durable_later = true;
        self
    }

    /// Adds a write that runs after the change's own step, in the same transaction.
    pub fn also(mut self, more: impl FnOnce(&mut Txn<'_>) -> Result<(), StoreError> + Send + 'static) -> Change<T> {
        let step: Step = match self.step.take() {
            Some(first) => Box::new(move |txn| {
                let output = first(txn)?;
                more(txn)?;
                Ok(output)
            }),
            // Without a step of its own, the change's output is ().
            None => Box::new(move |txn| more(txn).map(|()| Box::new(()) as Box<dyn Any + Send>)),
        };
        self.step = Some(step);
        self
    }
}

impl<T> fmt::Debug for Change<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Change")
            .field("audit", &self.audit)
            .field("has_step", &self.step.is_some())
            .field("durable_later", &self.durable_later)
            .finish()
    }
}

/// What a committed change added to the audit chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitReceipt {
    /// `(seq, link hash)` of each entry the change added, in order.
    pub entries: Vec<(u64, Hash32)>,
    /// The batch that committed it (for [`crate::NodeDb::when_durable`]).
    pub batch: u64,
}

impl CommitReceipt {
    /// The sequence number of the change's last entry (0 if it added none).
    pub fn last_seq(&self) -> u64 {
        self.entries.last().map_or(0, |(seq, _)| *seq)
    }
}

/// Counters of the group commit, for benchmarks and diagnostics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Transactions committed.
    pub batches: u64,
    /// Changes committed.
    pub changes: u64,
    /// Audit entries committed.
    pub entries: u64,
    /// Audit entries committed with a signature (one per batch that has entries).
    pub signatures: u64,
    /// Time spent sealing (numbering, linking and signing entries).
    pub sealing: Duration,
    /// Time spent committing (running steps, inserting, flushing).
    pub committing: Duration,
    /// Syncs of the commit journal: one per durable batch between checkpoints.
    pub journal_syncs: u64,
    /// Batches (of one change) committed on the calling thread rather than the writer's.
    pub inline: u64,
}

/// The position the next audit entry takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChainHead {
    /// Sequence number of the next entry.
    pub(crate) next_seq: u64,
    /// Link hash of the last entry (zero before the first).
    pub(crate) prev: Hash32,
}

/// The in-memory state commits keep current besides the database, shared with the
/// [`NodeDb`](crate::NodeDb) the writer belongs to.
#[derive(Debug, Clone, Default)]
pub(crate) struct Kept {
    /// Where committed transactions publish the messages they queued.
    pub(crate) queued: Arc<QueuedFeed>,
    /// The decoded copies of tables that committed transactions make stale.
    pub(crate) snapshots: Arc<Snapshots>,
    /// The messages queued since the last checkpoint, which a checkpoint copies into the
    /// outbox table.
    pub(crate) recent: Arc<RecentOutbox>,
    /// The turns and audit entries written since the last checkpoint, which a checkpoint
    /// copies into their tables.
    pub(crate) recent_writes: Arc<RecentWrites>,
    /// How long [`crate::NodeDb::read`] waits between taking the recent writes and its snapshot,
    /// in microseconds: widens the moment a concurrent commit must not fall into, for a test.
    #[cfg(test)]
    pub(crate) read_pause: Arc<std::sync::atomic::AtomicU64>,
    /// How long a checkpoint waits between its commit and emptying the recent writes, in
    /// microseconds: widens the moment a view can take them stale (`recent.rs`), for a test.
    #[cfg(test)]
    pub(crate) checkpoint_pause: Arc<std::sync::atomic::AtomicU64>,
}

impl Kept {
    /// Waits the test's `checkpoint_pause`, if any; nothing outside tests.
    fn pause_after_checkpoint(&self) {
        #[cfg(test)]
        pause(&self.checkpoint_pause);
    }
}

/// Sleeps the microseconds `pause` holds (see the pauses of [`Kept`]).
#[cfg(test)]
pub(crate) fn pause(pause: &std::sync::atomic::AtomicU64) {
    let micros = pause.load(std::sync::atomic::Ordering::Relaxed);
    if micros > 0 {
        std::thread::sleep(Duration::from_micros(micros));
    }
}

struct Job {
    audit: Vec<AuditDraft>,
    step: Option<Step>,
    durable_later: bool,
    slot: Arc<Slot>,
}

/// State the writer thread and submitters see.
struct Shared {
    db: Arc<Database>,
    signer: SigningSecret,
    owner: OwnerId,
    /// Where the next entry goes; held by whichever thread seals and commits a batch, through
    /// its commit, so the chain reaches the disk in order.
    head: Mutex<ChainHead>,
    /// Changes submitted to the writer thread and not yet finished.
    in_flight: AtomicUsize,
    /// The latest batches that held one change, in a row (up to [`LONE_BEFORE_INLINE`]).
    lone_batches: AtomicU32,
    /// Set once, by the first failed commit.
    poisoned: OnceLock<String>,
    stats: Mutex<WriterStats>,
    /// What commits keep current in memory besides the database.
    kept: Kept,
    /// Makes batches durable between checkpoints; held by whichever thread commits.
    journal: Mutex<Journal>,
    /// Who waits for a durable-later batch to reach the disk.
    durable: Durable,
}

/// The group-commit writer of one database: a handle on its thread.
pub(crate) struct Writer {
    inbox: Option<SyncSender<Job>>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for Writer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writer").field("stats", &self.stats()).finish_non_exhaustive()
    }
}

impl Writer {
    /// Starts the writer thread; entries continue the chain after `head`.
    pub(crate) fn start(
        db: Arc<Database>,
        signer: SigningSecret,
        owner: OwnerId,
        head: ChainHead,
        kept: Kept,
        journal: Journal,
    ) -> Result<Writer, StoreError> {
        let shared = Arc::new(Shared {
            db,
            signer,
            owner,
            head: Mutex::new(head),
            in_flight: AtomicUsize::new(0),
            lone_batches: AtomicU32::new(LONE_BEFORE_INLINE),
            poisoned: OnceLock::new(),
            stats: Mutex::new(WriterStats::default()),
            durable: Durable::new(journal.synced_through()),
            kept,
            journal: Mutex::new(journal),
        });
        // Every earlier write is in the tables (the last writer closed with a checkpoint, or
        // opening recovered the journal): the recent writes start empty, after the journal's
        // checkpoint.
        shared.kept.recent_writes.clear(lock(&shared.journal).last_checkpoint());
        let (inbox, jobs) = sync_channel::<Job>(QUEUE_CAPACITY);
        let committer = Committer { shared: shared.clone() };
        let thread = std::thread::Builder::new()
            .name("clawnet-writer".into())
            .spawn(move || committer.run(jobs))
            .map_err(|err| StoreError::Io { context: "starting the writer thread".into(), detail: err.to_string() })?;
        Ok(Writer { inbox: Some(inbox), shared, thread: Some(thread) })
    }

    pub(crate) fn stats(&self) -> WriterStats {
        let journal_syncs = lock(&self.shared.journal).syncs();
        WriterStats { journal_syncs, ..*lock(&self.shared.stats) }
    }

    /// Queues `change`; blocks only if the queue is full, never on the disk.
    pub(crate) fn submit<T: Send + 'static>(&self, change: Change<T>) -> Result<Pending<T>, StoreError> {
        if let Some(reason) = self.shared.poisoned.get() {
            return Err(StoreError::Poisoned(reason.clone()));
        }
        let slot = Arc::new(Slot::new());
        let job =
            Job { audit: change.audit, step: change.step, durable_later: change.durable_later, slot: slot.clone() };
        let inbox = self.inbox.as_ref().ok_or_else(|| StoreError::Poisoned("the writer is shut down".into()))?;
        self.shared.in_flight.fetch_add(1, Ordering::SeqCst);
        if inbox.send(job).is_err() {
            self.shared.in_flight.fetch_sub(1, Ordering::SeqCst);
            return Err(StoreError::Poisoned("the writer thread stopped".into()));
        }
        Ok(Pending { slot, output: PhantomData })
    }

    /// Commits `change` and blocks until it is durable. When nothing else is in flight, the
    /// calling thread seals and commits it itself, saving the hand-off to the writer thread
    /// (most of a lone change's latency beyond the fsync); otherwise it joins the queue.
    pub(crate) fn commit<T: Send + 'static>(&self, change: Change<T>) -> Result<(T, CommitReceipt), StoreError> {
        match self.commit_if_idle(change) {
            Ok(done) => done,
            Err(change) => self.submit(change)?.wait(),
        }
    }

    /// Runs `write` in a durable transaction of its own, outside the audit chain and the
    /// journal (a checkpoint, so no replay undoes it): only for tests that play an attacker
    /// with write access to the file.
    #[cfg(any(test, feature = "tamper"))]
    pub(crate) fn raw_write(
        &self,
        write: impl FnOnce(&redb::WriteTransaction) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.shared.checkpoint(write)
    }

    /// Makes every change committed so far durable, durable-later ones included (no sync when
    /// a durable commit since did it already). Blocks the calling thread for the sync.
    pub(crate) fn sync(&self) -> Result<(), StoreError> {
        if let Some(reason) = self.shared.poisoned.get() {
            return Err(StoreError::Poisoned(reason.clone()));
        }
        let mut journal = lock(&self.shared.journal);
        match journal.sync() {
            Ok(()) => {
                self.shared.durable.reached(journal.synced_through());
                Ok(())
            }
            Err(err) => {
                drop(journal);
                self.shared.poison(&err);
                Err(err)
            }
        }
    }

    /// Resolves once batch `batch` is on disk (at once if it is): for a durable-later change
    /// whose effects must not be acknowledged before it is durable.
    pub(crate) fn when_durable(&self, batch: u64) -> WhenDurable {
        WhenDurable { shared: self.shared.clone(), batch }
    }

    /// Whether a change would be committed on the calling thread now: nothing is in flight, no
    /// thread is committing, and the latest batches held one change each.
    pub(crate) fn is_idle(&self) -> bool {
        self.shared.quiet() && self.shared.head.try_lock().is_ok()
    }

    /// Commits `change` on the calling thread if the writer is idle (nothing in flight, no
    /// other thread committing) and has been committing one change at a time; otherwise hands
    /// the change back untouched.
    ///
    /// Why the last condition: under load the writer is idle for moments between batches, and
    /// a change committed inline then is a batch of one, paying a whole commit (redb's, the
    /// journal's write and the seal's signature) where the next batch would have carried it,
    /// while it keeps the others waiting. Committing every change through the writer once two
    /// changes have shared a batch, until [`LONE_BEFORE_INLINE`] batches of one in a row, cut
    /// the CPU of 64 parallel sessions by 7% (BENCHMARKS.md, *Governed sessions*); one change at
    /// a time, each batch is of one, and each is still committed inline.
    pub(crate) fn commit_if_idle<T: Send + 'static>(
        &self,
        change: Change<T>,
    ) -> Result<Result<(T, CommitReceipt), StoreError>, Change<T>> {
        if let Some(reason) = self.shared.poisoned.get() {
            return Ok(Err(StoreError::Poisoned(reason.clone())));
        }
        // Only when uncontended: if another thread holds the head, queueing behind it in the
        // writer thread is what lets concurrent changes share one commit.
        let uncontended = match self.shared.head.try_lock() {
            Ok(head) if self.shared.quiet() => Some(head),
            // The guard of a failed check must be gone before the caller queues behind the writer.
            _ => None,
        };
        let Some(mut head) = uncontended else {
            return Err(change);
        };
        // Holding the head keeps the writer thread out until this change is on disk (a change
        // submitted meanwhile waits for it), so entries still reach the disk in sequence order.
        let slot = Arc::new(Slot::new());
        let jobs = vec![Job { audit: change.audit, step: change.step, durable_later: change.durable_later, slot }];
        let outcome = self.shared.seal_and_commit(&mut head, jobs);
        drop(head);
        lock(&self.shared.stats).inline += u64::from(outcome.is_ok());
        Ok(outcome.and_then(|mut done| match done.pop() {
            Some(result) => typed(Ok(result)),
            None => Err(StoreError::Poisoned("a committed change produced no result".into())),
        }))
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the inbox lets the writer thread finish what is queued and stop.
        self.inbox = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        // A last checkpoint, so the next open has nothing to replay. Without it (a crash) the
        // journal replays the same batches.
        if self.shared.poisoned.get().is_none() && lock(&self.shared.journal).has_records() {
            let _ = self.shared.checkpoint(|_| Ok(()));
        }
    }
}

/// The writer thread: takes everything queued as one batch, seals it and commits it.
struct Committer {
    shared: Arc<Shared>,
}

impl Committer {
    fn run(self, jobs: Receiver<Job>) {
        while let Ok(first) = jobs.recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
            let slots: Vec<Arc<Slot>> = batch.iter().map(|job| job.slot.clone()).collect();
            // Holding the head through the commit is uncontended: these jobs count as in
            // flight, so no inline commit starts meanwhile.
            let outcome = self.shared.seal_and_commit(&mut lock(&self.shared.head), batch);
            self.shared.in_flight.fetch_sub(slots.len(), Ordering::SeqCst);
            match outcome {
                Ok(done) => {
                    for (slot, result) in slots.iter().zip(done) {
                        slot.finish(Ok(result));
                    }
                }
                Err(err) => {
                    for slot in &slots {
                        slot.finish(Err(err.clone()));
                    }
                }
            }
        }
    }
}

impl Shared {
    /// Nothing in flight, and the latest batches held one change each (see
    /// [`Writer::commit_if_idle`]).
    fn quiet(&self) -> bool {
        self.in_flight.load(Ordering::SeqCst) == 0 && self.lone_batches.load(Ordering::Relaxed) >= LONE_BEFORE_INLINE
    }

    /// Seals `jobs` after `head` and commits them in one transaction, moving `head` on if it
    /// committed. The caller holds the head throughout, so batches reach the disk in order.
    fn seal_and_commit(&self, head: &mut ChainHead, mut jobs: Vec<Job>) -> Result<Vec<Committed>, StoreError> {
        let lone =
            if jobs.len() == 1 { (self.lone_batches.load(Ordering::Relaxed) + 1).min(LONE_BEFORE_INLINE) } else { 0 };
        self.lone_batches.store(lone, Ordering::Relaxed);
        let started = Instant::now();
        let (entries, next) = seal_jobs(self, &mut jobs, *head);
        let sealed_at = Instant::now();
        let outcome = commit_batch(self, jobs, &entries);
        if outcome.is_ok() {
            *head = next;
        }
        self.record(&outcome, &entries, sealed_at - started, sealed_at.elapsed());
        outcome
    }

    /// Poisons the writer with `err` and wakes every waiter, so none waits forever.
    fn poison(&self, err: &StoreError) {
        let _ = self.poisoned.set(err.to_string());
        self.durable.wake_all();
    }

    /// Commits `write` in redb as a checkpoint of the journal: durably, with every batch before.
    fn checkpoint(
        &self,
        write: impl FnOnce(&redb::WriteTransaction) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let context = "checkpointing the commit journal";
        let mut journal = lock(&self.journal);
        let tx = self.db.begin_write().ctx(context)?;
        // The recent writes before `write`, so that a test's raw write to a turn or an audit
        // entry stays as it wrote it.
        self.kept.recent_writes.copy_into(&tx, &[], &AuditRows::new())?;
        write(&tx)?;
        let mut recent = self.kept.recent.copy_into(&tx, &Default::default())?;
        journal.write_checkpoint(&tx)?;
        tx.commit().ctx(context)?;
        journal.checkpointed();
        self.kept.pause_after_checkpoint();
        self.kept.recent_writes.clear(journal.last_checkpoint());
        recent.clear();
        drop(recent);
        self.durable.reached(journal.synced_through());
        // Only tests write raw (and the final checkpoint writes nothing): any copy may be stale.
        self.kept.snapshots.written(Touched::ALL);
        Ok(())
    }

    /// Updates the statistics after a batch, and poisons the writer if it failed.
    fn record(
        &self,
        outcome: &Result<Vec<Committed>, StoreError>,
        entries: &[Vec<SealedEntry>],
        sealing: Duration,
        committing: Duration,
    ) {
        let mut stats = lock(&self.stats);
        stats.sealing += sealing;
        stats.committing += committing;
        match outcome {
            Ok(done) => {
                stats.batches += 1;
                stats.changes += done.len() as u64;
                stats.entries += entries.iter().map(|e| e.len() as u64).sum::<u64>();
                // A batch is sealed with one signature if it has entries.
                stats.signatures += u64::from(entries.iter().any(|job| !job.is_empty()));
            }
            Err(err) => {
                drop(stats);
                self.poison(err);
            }
        }
    }
}

/// Numbers and links the audit entries of `jobs`, starting at `head`, and signs the last one:
/// one signature per batch, covering the rest through the chain.
fn seal_jobs(shared: &Shared, jobs: &mut [Job], mut head: ChainHead) -> (Vec<Vec<SealedEntry>>, ChainHead) {
    let now = Timestamp::now();
    let mut counts = Vec::with_capacity(jobs.len());
    let mut linked = Vec::new();
    for job in jobs.iter_mut() {
        let drafts = std::mem::take(&mut job.audit);
        counts.push(drafts.len());
        for draft in drafts {
            let entry = LinkedEntry::new(&draft.into_entry(head.next_seq, head.prev, now, shared.owner));
            head = ChainHead { next_seq: head.next_seq + 1, prev: entry.link() };
            linked.push(entry);
        }
    }
    let mut sealed = seal_batch(linked, &shared.signer).into_iter();
    (counts.into_iter().map(|count| sealed.by_ref().take(count).collect()).collect(), head)
}

/// Runs every job's step and writes the sealed entries in one durable transaction. After a
/// failure everything fails: later batches link to entries that never reached the disk.
fn commit_batch(shared: &Shared, jobs: Vec<Job>, sealed: &[Vec<SealedEntry>]) -> Result<Vec<Committed>, StoreError> {
    if let Some(reason) = shared.poisoned.get() {
        return Err(StoreError::Poisoned(reason.clone()));
    }
    // A panicking step must not take the writer down with it.
    std::panic::catch_unwind(AssertUnwindSafe(|| write_batch(shared, jobs, sealed)))
        .unwrap_or_else(|_| Err(StoreError::Poisoned("a change panicked while being committed".into())))
}

fn write_batch(shared: &Shared, jobs: Vec<Job>, sealed: &[Vec<SealedEntry>]) -> Result<Vec<Committed>, StoreError> {
    let context = "committing a change";
    let mut journal = lock(&shared.journal);
    let mut tx = shared.db.begin_write().ctx(context)?;
    let sync = !jobs.iter().all(|job| job.durable_later);
    let batch = journal.next_seq();
    let mut done = Vec::with_capacity(jobs.len());
    let (queued, writes, touched, recent, turns, audit) = {
        let mut txn = Txn::new(&tx, &shared.kept.recent, &shared.kept.recent_writes);
        for (job, entries) in jobs.into_iter().zip(sealed) {
            let output = match job.step {
                Some(step) => step(&mut txn)?,
                None => Box::new(()) as Box<dyn Any + Send>,
            };
            let receipt = CommitReceipt { entries: entries.iter().map(|e| (e.seq, e.link)).collect(), batch };
            done.push((output, receipt));
        }
        // Into the journal and the recent writes, not the table (`recent.rs`).
        let mut audit = AuditRows::with_capacity(sealed.iter().map(Vec::len).sum());
        for entry in sealed.iter().flatten() {
            let key = <u64 as redb::Value>::as_bytes(&entry.seq);
            record_put(&mut txn.writes.borrow_mut(), AUDIT.name(), &key, &entry.record);
            audit.push((entry.seq, entry.record.clone()));
        }
        (
            txn.queued,
            txn.writes.into_inner(),
            txn.touched.get(),
            txn.recent_changes.into_inner(),
            txn.turn_changes.into_inner(),
            audit,
        )
    };
    // The journal's record is on disk before redb commits, so no reader sees a durable change
    // a crash could take back; redb then skips its fsync. (A durable-later batch's record is
    // only written: it is visible before it is on disk, which is what durable-later means.)
    if journal.append(&writes, sync)? {
        // Its turns and audit entries are on disk now: published before redb commits, so that
        // no view can miss them (`recent.rs`).
        shared.kept.recent_writes.publish(&turns, audit);
        // Refused only by a database shared between processes: it then commits durably, which
        // is always allowed.
        let _ = tx.set_durability(redb::Durability::None);
        tx.commit().ctx(context)?;
        shared.kept.recent.apply(recent);
    } else {
        shared.kept.recent_writes.copy_into(&tx, &turns, &audit)?;
        let mut copied = shared.kept.recent.copy_into(&tx, &recent)?;
        journal.write_checkpoint(&tx)?;
        tx.commit().ctx(context)?;
        journal.checkpointed();
        shared.kept.pause_after_checkpoint();
        shared.kept.recent_writes.clear(journal.last_checkpoint());
        copied.clear();
        drop(copied);
    }
    let through = journal.synced_through();
    drop(journal);
    shared.durable.reached(through);
    shared.kept.snapshots.written(touched);
    shared.kept.queued.publish(queued);
    Ok(done)
}

/// Locks `mutex`, tolerating poisoning: every critical section here leaves its state
/// consistent (single assignments), so a panic elsewhere does not corrupt it.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}
