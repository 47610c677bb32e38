//! Group commit: many concurrent writers, few durable transactions.
//!
//! Every write is a [`Change`]: audit drafts plus an optional step that writes records.
//! [`NodeDb::submit`](crate::NodeDb::submit) queues a change and returns a [`Pending`] that
//! resolves once the change is durable; it can be waited on by a thread or awaited by a task.
//!
//! Two stages form a pipeline. The *sealer* thread takes everything queued (one batch), numbers
//! and links its audit entries and signs them, handing half of a large batch to a *signer*
//! helper thread; the *committer* thread takes every sealed batch available, runs each change's
//! step, inserts the sealed entries and commits them in one durable write transaction (durable
//! through the commit journal, `journal.rs`; a checkpoint now and then). While
//! the committer flushes, the sealer signs what queued meanwhile, so a stream of appends runs at
//! the speed of the slower stage, not of both, and batches grow with the load. A blocking
//! [`NodeDb::commit`](crate::NodeDb::commit) with nothing in flight skips the threads and seals
//! and commits on the calling thread: a lone change pays for its fsync and nothing else.
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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clawnet_crypto::{Hash32, OwnerId, SigningSecret, Timestamp};
use clawnet_protocol::audit::{AuditDraft, LinkedEntry, SealedEntry};
use redb::Database;

use crate::deliveries::QueuedFeed;
use crate::error::{DbResultExt, StoreError};
use crate::journal::Journal;
use crate::schema::AUDIT;
use crate::view::Txn;

mod waits;

use waits::{Committed, Durable, Slot, typed};
pub use waits::{Pending, WhenDurable};

/// Most changes committed in one transaction.
const MAX_BATCH: usize = 4096;
/// Changes that may wait for the sealer before `submit` blocks (backpressure).
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
    /// Time spent sealing (numbering and signing entries).
    pub sealing: Duration,
    /// Time spent committing (running steps, inserting, flushing).
    pub committing: Duration,
    /// Syncs of the commit journal: one per durable batch between checkpoints.
    pub journal_syncs: u64,
}

/// The position the next audit entry takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChainHead {
    /// Sequence number of the next entry.
    pub(crate) next_seq: u64,
    /// Link hash of the last entry (zero before the first).
    pub(crate) prev: Hash32,
}

struct Job {
    audit: Vec<AuditDraft>,
    step: Option<Step>,
    durable_later: bool,
    slot: Arc<Slot>,
}

/// A batch on its way from the sealer to the committer.
struct SealedBatch {
    jobs: Vec<Job>,
    entries: Vec<Vec<SealedEntry>>,
}

/// State both pipeline threads and submitters see.
struct Shared {
    db: Arc<Database>,
    signer: SigningSecret,
    owner: OwnerId,
    /// Where the next sealed entry goes (ahead of the disk while batches are in flight).
    head: Mutex<ChainHead>,
    /// Changes submitted to the pipeline and not yet finished.
    in_flight: AtomicUsize,
    /// Set once, by the first failed commit.
    poisoned: OnceLock<String>,
    stats: Mutex<WriterStats>,
    /// Where committed transactions publish the messages they queued.
    queued: Arc<QueuedFeed>,
    /// Makes batches durable between checkpoints; held by whichever thread commits.
    journal: Mutex<Journal>,
    /// Who waits for a durable-later batch to reach the disk.
    durable: Durable,
}

/// The group-commit writer of one database: a handle on the sealer and committer threads.
pub(crate) struct Writer {
    inbox: Option<SyncSender<Job>>,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl fmt::Debug for Writer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writer").field("stats", &self.stats()).finish_non_exhaustive()
    }
}

impl Writer {
    /// Starts the pipeline; entries continue the chain after `head`.
    pub(crate) fn start(
        db: Arc<Database>,
        signer: SigningSecret,
        owner: OwnerId,
        head: ChainHead,
        queued: Arc<QueuedFeed>,
        journal: Journal,
    ) -> Result<Writer, StoreError> {
        let shared = Arc::new(Shared {
            db,
            signer,
            owner,
            head: Mutex::new(head),
            in_flight: AtomicUsize::new(0),
            poisoned: OnceLock::new(),
            stats: Mutex::new(WriterStats::default()),
            durable: Durable::new(journal.synced_through()),
            queued,
            journal: Mutex::new(journal),
        });
        let (inbox, jobs) = sync_channel::<Job>(QUEUE_CAPACITY);
        // The sealer never waits for the committer (which takes every sealed batch at once),
        // so signing and flushing overlap fully; the bound only caps memory.
        let (to_committer, batches) = sync_channel::<SealedBatch>(QUEUE_CAPACITY);
        let (work, to_sign) = sync_channel::<Vec<Vec<LinkedEntry>>>(1);
        let (signed, done) = sync_channel::<Vec<Vec<SealedEntry>>>(1);
        let sealer = Sealer { shared: shared.clone(), helper: SigningHelper { work, done } };
        let helper_shared = shared.clone();
        let committer = Committer { shared: shared.clone() };
        let spawn = |name: &str, run: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new().name(name.into()).spawn(run).map_err(|err| StoreError::Io {
                context: format!("starting the {name} thread"),
                detail: err.to_string(),
            })
        };
        let threads = vec![
            spawn("clawnet-audit-sealer", Box::new(move || sealer.run(jobs, to_committer)))?,
            spawn("clawnet-audit-committer", Box::new(move || committer.run(batches)))?,
            spawn(
                "clawnet-audit-signer",
                Box::new(move || {
                    for group in to_sign {
                        if signed.send(sign_group(&helper_shared.signer, group)).is_err() {
                            return;
                        }
                    }
                }),
            )?,
        ];
        Ok(Writer { inbox: Some(inbox), shared, threads })
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
            return Err(StoreError::Poisoned("the writer threads stopped".into()));
        }
        Ok(Pending { slot, output: PhantomData })
    }

    /// Commits `change` and blocks until it is durable. When nothing else is in flight, the
    /// calling thread seals and commits it itself, saving the hand-offs to the pipeline threads
    /// (most of a lone change's latency beyond the fsync); otherwise it joins the pipeline.
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

    /// Whether nothing is in flight and no thread is committing.
    pub(crate) fn is_idle(&self) -> bool {
        self.shared.in_flight.load(Ordering::SeqCst) == 0 && self.shared.head.try_lock().is_ok()
    }

    /// Commits `change` on the calling thread if the writer is idle (nothing in flight, no
    /// other thread committing); otherwise hands the change back untouched.
    pub(crate) fn commit_if_idle<T: Send + 'static>(
        &self,
        change: Change<T>,
    ) -> Result<Result<(T, CommitReceipt), StoreError>, Change<T>> {
        if let Some(reason) = self.shared.poisoned.get() {
            return Ok(Err(StoreError::Poisoned(reason.clone())));
        }
        // Only when uncontended: if another thread holds the head, queueing behind it in the
        // pipeline is what lets concurrent changes share one commit.
        let uncontended = match self.shared.head.try_lock() {
            Ok(head) if self.shared.in_flight.load(Ordering::SeqCst) == 0 => Some(head),
            // The guard of a failed check must be gone before the caller queues behind the sealer.
            _ => None,
        };
        let Some(mut head) = uncontended else {
            return Err(change);
        };
        // Holding the head keeps the sealer out until this change is on disk (a change submitted
        // meanwhile waits for it), so entries still reach the disk in sequence order.
        let slot = Arc::new(Slot::new());
        let mut jobs = vec![Job { audit: change.audit, step: change.step, durable_later: change.durable_later, slot }];
        let started = Instant::now();
        let (entries, next) = seal_jobs(&self.shared, None, &mut jobs, *head);
        let sealed_at = Instant::now();
        let outcome = commit_batch(&self.shared, jobs, &entries);
        if outcome.is_ok() {
            *head = next;
        }
        drop(head);
        self.shared.record(&outcome, &entries, sealed_at - started, sealed_at.elapsed());
        Ok(outcome.and_then(|mut done| match done.pop() {
            Some(result) => typed(Ok(result)),
            None => Err(StoreError::Poisoned("a committed change produced no result".into())),
        }))
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the inbox lets the sealer finish what is queued and stop; the committer
        // follows when the sealer drops its end.
        self.inbox = None;
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        // A last checkpoint, so the next open has nothing to replay. Without it (a crash) the
        // journal replays the same batches.
        if self.shared.poisoned.get().is_none() && lock(&self.shared.journal).has_records() {
            let _ = self.shared.checkpoint(|_| Ok(()));
        }
    }
}

/// The first pipeline stage: numbers, links and signs audit entries.
struct Sealer {
    shared: Arc<Shared>,
    helper: SigningHelper,
}

/// A thread the sealer hands part of a large batch to: the committer spends most of its time
/// waiting for the disk, so a core is usually free for signing.
struct SigningHelper {
    work: SyncSender<Vec<Vec<LinkedEntry>>>,
    done: Receiver<Vec<Vec<SealedEntry>>>,
}

impl Sealer {
    fn run(self, jobs: Receiver<Job>, committer: SyncSender<SealedBatch>) {
        while let Ok(first) = jobs.recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
            let started = Instant::now();
            // Holding the head while signing is uncontended: these jobs count as in flight, so
            // no inline commit starts meanwhile.
            let entries = {
                let mut head = lock(&self.shared.head);
                let (entries, next) = seal_jobs(&self.shared, Some(&self.helper), &mut batch, *head);
                *head = next;
                entries
            };
            lock(&self.shared.stats).sealing += started.elapsed();
            if committer.send(SealedBatch { jobs: batch, entries }).is_err() {
                return;
            }
        }
    }
}

/// The second pipeline stage: one durable transaction per batch.
struct Committer {
    shared: Arc<Shared>,
}

impl Committer {
    fn run(self, batches: Receiver<SealedBatch>) {
        while let Ok(SealedBatch { mut jobs, mut entries }) = batches.recv() {
            // Commit everything sealed so far in one transaction.
            while jobs.len() < MAX_BATCH {
                match batches.try_recv() {
                    Ok(more) => {
                        jobs.extend(more.jobs);
                        entries.extend(more.entries);
                    }
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
            let slots: Vec<Arc<Slot>> = jobs.iter().map(|job| job.slot.clone()).collect();
            let started = Instant::now();
            let outcome = commit_batch(&self.shared, jobs, &entries);
            self.shared.record(&outcome, &entries, Duration::ZERO, started.elapsed());
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
        write(&tx)?;
        journal.write_checkpoint(&tx)?;
        tx.commit().ctx(context)?;
        journal.checkpointed();
        self.durable.reached(journal.synced_through());
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
            }
            Err(err) => {
                drop(stats);
                self.poison(err);
            }
        }
    }
}

/// Numbers, links and signs the audit entries of `jobs`, starting at `head`.
fn seal_jobs(
    shared: &Shared,
    helper: Option<&SigningHelper>,
    jobs: &mut [Job],
    mut head: ChainHead,
) -> (Vec<Vec<SealedEntry>>, ChainHead) {
    let now = Timestamp::now();
    // Linking is sequential and cheap; signing is most of the work and parallel.
    let linked: Vec<Vec<LinkedEntry>> = jobs
        .iter_mut()
        .map(|job| {
            std::mem::take(&mut job.audit)
                .into_iter()
                .map(|draft| {
                    let entry = draft.into_entry(head.next_seq, head.prev, now, shared.owner);
                    let linked = LinkedEntry::new(&entry);
                    head = ChainHead { next_seq: head.next_seq + 1, prev: linked.link() };
                    linked
                })
                .collect()
        })
        .collect();
    (sign_all(&shared.signer, helper, linked), head)
}

/// Signs linked entries, sharing the work with the helper when there are enough of them.
fn sign_all(
    signer: &SigningSecret,
    helper: Option<&SigningHelper>,
    linked: Vec<Vec<LinkedEntry>>,
) -> Vec<Vec<SealedEntry>> {
    const PARALLEL_FROM: usize = 16;
    let total: usize = linked.iter().map(Vec::len).sum();
    let Some(helper) = helper.filter(|_| total >= PARALLEL_FROM && linked.len() >= 2) else {
        return sign_group(signer, linked);
    };
    // The helper takes the later half (by jobs, at about half of the entries).
    let mut counted = 0;
    let split = linked
        .iter()
        .position(|entries| {
            counted += entries.len();
            counted >= total / 2
        })
        .map_or(linked.len(), |idx| idx + 1);
    let mut first = linked;
    let second = first.split_off(split.min(first.len()));
    let handed = match helper.work.send(second) {
        Ok(()) => true,
        Err(unsent) => {
            first.extend(unsent.0);
            false
        }
    };
    let mut signed = sign_group(signer, first);
    if handed {
        match helper.done.recv() {
            Ok(rest) => signed.extend(rest),
            // The helper only stops when the writer shuts down, after the sealer.
            Err(_) => unreachable!("the signing helper outlives the sealer"),
        }
    }
    signed
}

fn sign_group(signer: &SigningSecret, group: Vec<Vec<LinkedEntry>>) -> Vec<Vec<SealedEntry>> {
    group.into_iter().map(|entries| entries.into_iter().map(|entry| entry.sign(signer)).collect()).collect()
}

/// Runs every job's step and inserts the sealed entries in one durable transaction. After a
/// failure everything fails: later batches link to entries that never reached the disk.
fn commit_batch(shared: &Shared, jobs: Vec<Job>, sealed: &[Vec<SealedEntry>]) -> Result<Vec<Committed>, StoreError> {
    if let Some(reason) = shared.poisoned.get() {
        return Err(StoreError::Poisoned(reason.clone()));
    }
    // A panicking step must not take the pipeline down with it.
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
    let (queued, writes) = {
        let mut txn = Txn::new(&tx);
        for (job, entries) in jobs.into_iter().zip(sealed) {
            let output = match job.step {
                Some(step) => step(&mut txn)?,
                None => Box::new(()) as Box<dyn Any + Send>,
            };
            let receipt = CommitReceipt { entries: entries.iter().map(|e| (e.seq, e.link)).collect(), batch };
            done.push((output, receipt));
        }
        let mut audit = txn.write_table(AUDIT).ctx(context)?;
        for entry in sealed.iter().flatten() {
            audit.insert(entry.seq, entry.record.as_slice()).ctx(context)?;
        }
        drop(audit);
        (txn.queued, txn.writes.into_inner())
    };
    // The journal's record is on disk before redb commits, so no reader sees a durable change
    // a crash could take back; redb then skips its fsync. (A durable-later batch's record is
    // only written: it is visible before it is on disk, which is what durable-later means.)
    if journal.append(&writes, sync)? {
        // Refused only by a database shared between processes: it then commits durably, which
        // is always allowed.
        let _ = tx.set_durability(redb::Durability::None);
        tx.commit().ctx(context)?;
    } else {
        journal.write_checkpoint(&tx)?;
        tx.commit().ctx(context)?;
        journal.checkpointed();
    }
    let through = journal.synced_through();
    drop(journal);
    shared.durable.reached(through);
    shared.queued.publish(queued);
    Ok(done)
}

/// Locks `mutex`, tolerating poisoning: every critical section here leaves its state
/// consistent (single assignments), so a panic elsewhere does not corrupt it.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}
