//! Group commit: many concurrent writers, few durable transactions.
//!
//! Every write is a [`Change`]: audit drafts plus an optional step that writes records. Callers
//! submit changes and block until theirs is durable. There is no writer thread: the first
//! caller to find work queued becomes the *sealer* of a batch — it takes everything queued,
//! numbers and links the audit entries and signs them, outside any database lock — and then
//! the *committer* of that batch, in batch order: one write transaction runs every change's
//! step, inserts the sealed entries and commits with fsync. While one batch is being committed,
//! the next one is sealed by another caller, so signing overlaps the disk flush and a stream of
//! appends runs at the speed of the slower of the two, not their sum.
//!
//! A failed commit poisons the writer: later batches were sealed on top of entries that never
//! reached the disk, and after a failed fsync nothing since can be trusted (the PostgreSQL
//! lesson), so every later write fails until the database is reopened, which re-reads the chain
//! head from disk. A change's step must therefore only write: decisions are made before it is
//! submitted, by the single owner of that state.

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use clawnet_crypto::{Hash32, OwnerId, SigningSecret, Timestamp};
use clawnet_protocol::audit::{AuditDraft, SealedEntry};
use redb::Database;

use crate::error::{DbResultExt, StoreError};
use crate::schema::AUDIT;
use crate::view::Txn;

/// Most changes committed in one transaction.
const MAX_BATCH: usize = 4096;

type Step = Box<dyn FnOnce(&mut Txn<'_>) -> Result<Box<dyn Any + Send>, StoreError> + Send>;

/// One atomic write: records (through `step`) and the audit entries that describe them.
pub struct Change<T = ()> {
    audit: Vec<AuditDraft>,
    step: Option<Step>,
    output: std::marker::PhantomData<fn() -> T>,
}

impl Change<()> {
    /// A change that only records `draft` in the audit chain.
    pub fn audit(draft: AuditDraft) -> Change<()> {
        Change { audit: vec![draft], step: None, output: std::marker::PhantomData }
    }
}

impl<T: Send + 'static> Change<T> {
    /// A change that runs `step` inside the transaction and returns its output. `step` must
    /// only write (see the module docs).
    pub fn new(step: impl FnOnce(&mut Txn<'_>) -> Result<T, StoreError> + Send + 'static) -> Change<T> {
        let step: Step = Box::new(move |txn| step(txn).map(|out| Box::new(out) as Box<dyn Any + Send>));
        Change { audit: Vec::new(), step: Some(step), output: std::marker::PhantomData }
    }

    /// Adds an audit entry, committed with the change.
    pub fn with_audit(mut self, draft: AuditDraft) -> Change<T> {
        self.audit.push(draft);
        self
    }
}

impl<T> fmt::Debug for Change<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Change").field("audit", &self.audit).field("has_step", &self.step.is_some()).finish()
    }
}

/// What a committed change added to the audit chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitReceipt {
    /// `(seq, link hash)` of each entry the change added, in order.
    pub entries: Vec<(u64, Hash32)>,
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
    id: u64,
    audit: Vec<AuditDraft>,
    step: Option<Step>,
}

type JobResult = Result<(Box<dyn Any + Send>, CommitReceipt), StoreError>;

/// A committed job: its id, its step's output and its receipt.
type Done = (u64, Box<dyn Any + Send>, CommitReceipt);

struct State {
    queue: VecDeque<Job>,
    next_job: u64,
    /// A caller is sealing a batch right now.
    sealing: bool,
    /// Where the next sealed entry goes (ahead of the disk while batches are in flight).
    head: ChainHead,
    /// Number given to the next sealed batch.
    next_batch: u64,
    /// Batches finished (committed or failed); batch `n` commits when this equals `n`.
    finished_batches: u64,
    results: HashMap<u64, JobResult>,
    poisoned: Option<String>,
    stats: WriterStats,
}

/// The group-commit writer of one database.
pub(crate) struct Writer {
    db: Arc<Database>,
    signer: SigningSecret,
    owner: OwnerId,
    state: Mutex<State>,
    changed: Condvar,
}

impl fmt::Debug for Writer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writer").field("owner", &self.owner).finish_non_exhaustive()
    }
}

impl Writer {
    pub(crate) fn new(db: Arc<Database>, signer: SigningSecret, owner: OwnerId, head: ChainHead) -> Writer {
        Writer {
            db,
            signer,
            owner,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                next_job: 0,
                sealing: false,
                head,
                next_batch: 0,
                finished_batches: 0,
                results: HashMap::new(),
                poisoned: None,
                stats: WriterStats::default(),
            }),
            changed: Condvar::new(),
        }
    }

    pub(crate) fn stats(&self) -> WriterStats {
        self.lock().stats
    }

    /// Submits `change` and blocks until it is durable (or failed).
    pub(crate) fn commit<T: Send + 'static>(&self, change: Change<T>) -> Result<(T, CommitReceipt), StoreError> {
        let mut state = self.lock();
        if let Some(reason) = &state.poisoned {
            return Err(StoreError::Poisoned(reason.clone()));
        }
        let id = state.next_job;
        state.next_job += 1;
        state.queue.push_back(Job { id, audit: change.audit, step: change.step });
        loop {
            if let Some(result) = state.results.remove(&id) {
                let (output, receipt) = result?;
                let output = match output.downcast::<T>() {
                    Ok(output) => *output,
                    // A job's output is always the T of its own Change: the box was made in
                    // `Change::new` for that T (or is () for audit-only changes, where T = ()).
                    Err(_) => unreachable!("change output has the type of its change"),
                };
                return Ok((output, receipt));
            }
            if !state.sealing && !state.queue.is_empty() {
                state = self.lead_batch(state);
                continue;
            }
            state = self.changed.wait(state).unwrap_or_else(|poison| poison.into_inner());
        }
    }

    /// Seals everything queued, then commits it in its turn. Called with the lock held and
    /// returns with it held.
    fn lead_batch<'a>(&'a self, mut state: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        state.sealing = true;
        let take = state.queue.len().min(MAX_BATCH);
        let jobs: Vec<Job> = state.queue.drain(..take).collect();
        let batch = state.next_batch;
        state.next_batch += 1;
        let head = state.head;
        drop(state);

        let mut jobs = jobs;
        let (sealed, head) = self.seal(&mut jobs, head);

        let mut state = self.lock();
        state.head = head;
        state.sealing = false;
        self.changed.notify_all();
        while state.finished_batches != batch {
            state = self.changed.wait(state).unwrap_or_else(|poison| poison.into_inner());
        }
        let poisoned = state.poisoned.clone();
        drop(state);

        let ids: Vec<u64> = jobs.iter().map(|job| job.id).collect();
        let outcome = match poisoned {
            Some(reason) => Err((ids, StoreError::Poisoned(reason))),
            // A panicking step must not leave the other callers waiting for this batch forever.
            None => match std::panic::catch_unwind(AssertUnwindSafe(|| self.write(jobs, &sealed))) {
                Ok(Ok(done)) => Ok(done),
                Ok(Err(err)) => Err((ids, err)),
                Err(_) => Err((ids, StoreError::Poisoned("a change panicked while being committed".into()))),
            },
        };

        let mut state = self.lock();
        match outcome {
            Ok(done) => {
                state.stats.batches += 1;
                state.stats.changes += done.len() as u64;
                state.stats.entries += sealed.iter().map(|entries| entries.len() as u64).sum::<u64>();
                for (id, output, receipt) in done {
                    state.results.insert(id, Ok((output, receipt)));
                }
            }
            Err((ids, err)) => {
                if state.poisoned.is_none() {
                    state.poisoned = Some(err.to_string());
                }
                for id in ids {
                    state.results.insert(id, Err(err.clone()));
                }
            }
        }
        state.finished_batches += 1;
        self.changed.notify_all();
        state
    }

    /// Numbers, links and signs the audit entries of `jobs`, starting at `head`.
    fn seal(&self, jobs: &mut [Job], mut head: ChainHead) -> (Vec<Vec<SealedEntry>>, ChainHead) {
        let now = Timestamp::now();
        let sealed = jobs
            .iter_mut()
            .map(|job| {
                std::mem::take(&mut job.audit)
                    .into_iter()
                    .map(|draft| {
                        let entry = draft.into_entry(head.next_seq, head.prev, now, self.owner);
                        let sealed = SealedEntry::seal(&entry, &self.signer);
                        head = ChainHead { next_seq: head.next_seq + 1, prev: sealed.link };
                        sealed
                    })
                    .collect()
            })
            .collect();
        (sealed, head)
    }

    /// Runs every job's step and inserts the sealed entries in one durable transaction.
    fn write(&self, jobs: Vec<Job>, sealed: &[Vec<SealedEntry>]) -> Result<Vec<Done>, StoreError> {
        let context = "committing a change";
        let tx = self.db.begin_write().ctx(context)?;
        let mut done = Vec::with_capacity(jobs.len());
        {
            let mut txn = Txn { tx: &tx };
            for (job, entries) in jobs.into_iter().zip(sealed) {
                let output = match job.step {
                    Some(step) => step(&mut txn)?,
                    None => Box::new(()) as Box<dyn Any + Send>,
                };
                let receipt = CommitReceipt { entries: entries.iter().map(|e| (e.seq, e.link)).collect() };
                done.push((job.id, output, receipt));
            }
            let mut audit = tx.open_table(AUDIT).ctx(context)?;
            for entry in sealed.iter().flatten() {
                audit.insert(entry.seq, entry.record.as_slice()).ctx(context)?;
            }
        }
        tx.commit().ctx(context)?;
        Ok(done)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves State consistent (every mutation is a single
        // assignment or insert), so a poisoned mutex is safe to keep using.
        self.state.lock().unwrap_or_else(|poison| poison.into_inner())
    }
}
