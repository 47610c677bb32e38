//! Settling a change after its reply: the directory syncs that make its renames durable, the
//! commit of its journal entry and audit entry, and the next write's spare file.
//!
//! A change's decision (its journal entry) is durable before its steps apply, and recovery
//! copies it into the journal and rolls a decided move, delete, mkdir, copy or undo forward.
//! So once a change's renames are made, the caller can have its reply: the syncs of the
//! directories they touched and the journal commit can finish on this thread while the caller
//! goes on. Writes sync their directory before their reply (recovery abandons a write whose
//! install it finds undone, as its staged content may never have reached the disk), so a write
//! leaves only its journal commit to settle.
//!
//! One change at most is unsettled: the next change waits for this one to settle before it is
//! numbered ([`Settler::wait`]), and its own commit implies this one settled, so recovery only
//! ever has the last entry to check (and none after a clean stop, which marks the last one). A
//! failure is sticky, like the database writer's failed commit: nothing can be built on a
//! change whose durability is unknown, so every later change fails until the node is restarted
//! and its recovery has compared that entry with the folders.

use std::os::fd::OwnedFd;
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use clawnet_storage::{Change, NodeDb};

use super::super::FileError;
use super::super::spare::Spares;
use super::sync_dirs;

/// The thread that settles changes, and what it is doing.
#[derive(Debug)]
pub(super) struct Settler {
    work: Option<Sender<Unsettled>>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// A change whose reply may have left before it is settled.
#[derive(Debug)]
struct Unsettled {
    op: u64,
    /// The directories its steps changed and did not sync.
    dirs: Vec<OwnedFd>,
    /// Its journal entry and audit entry.
    journal: Change,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    settled: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// The change being settled.
    pending: Option<u64>,
    /// The last change settled.
    last: Option<u64>,
    /// The first failure, kept for every later change.
    failed: Option<FileError>,
}

impl Settler {
    /// Starts the settling thread, which commits journal entries to `db`; when the endpoint
    /// closes, it marks the last change settled.
    pub(super) fn start(db: NodeDb, spares: Arc<Spares>) -> Result<Settler, FileError> {
        let (work, queue) = channel::<Unsettled>();
        let shared = Arc::new(Shared::default());
        let worker = shared.clone();
        let thread = std::thread::Builder::new()
            .name("clawnet-files-settle".into())
            .spawn(move || {
                for Unsettled { op, dirs, journal } in queue {
                    {
                        let mut state = lock(&worker.state);
                        if state.failed.is_some() {
                            // Nothing is built on a change whose durability is unknown.
                            state.pending = None;
                            worker.settled.notify_all();
                            continue;
                        }
                    }
                    let settled = sync_dirs(&dirs).and_then(|()| db.commit(journal).map(drop).map_err(FileError::from));
                    match settled {
                        Ok(()) => {
                            let mut state = lock(&worker.state);
                            state.pending = None;
                            state.last = Some(op);
                        }
                        Err(err) => fail(&worker, op, err),
                    }
                    // The next write's spare is made before the next change may begin.
                    spares.refill();
                    worker.settled.notify_all();
                }
                // The endpoint is closing with every change settled: saying so spares the next
                // start checking the last one (which, if the owner edited its files meanwhile,
                // would no longer match its entry).
                let state = lock(&worker.state);
                if state.failed.is_none()
                    && let Some(op) = state.last
                    && let Err(err) = mark_settled(&db, op)
                {
                    tracing::warn!(op, %err, "the file journal's settled mark was not written; the next start checks the last change again");
                }
            })
            .map_err(|err| FileError::Config(format!("starting the file endpoint's settling thread: {err}")))?;
        Ok(Settler { work: Some(work), shared, thread: Some(thread) })
    }

    /// Hands over change `op`, whose steps applied, with the directories still to sync and its
    /// journal entry to commit. The caller waits ([`Settler::wait`]) before handing over another.
    pub(super) fn hand_over(&self, op: u64, dirs: Vec<OwnedFd>, journal: Change) {
        lock(&self.shared.state).pending = Some(op);
        let sent = self.work.as_ref().is_some_and(|work| work.send(Unsettled { op, dirs, journal }).is_ok());
        if !sent {
            // Only when the thread is gone (it panicked): the change stays unsettled, which
            // recovery handles, and later changes are refused.
            self.fail(
                op,
                FileError::Io { context: "settling a file change", detail: "the settling thread stopped".into() },
            );
        }
    }

    /// Records that change `op` could not be made durable: later changes are refused.
    pub(super) fn fail(&self, op: u64, err: FileError) {
        fail(&self.shared, op, err);
    }

    /// Waits until the last change handed over is settled. An error means one could not be,
    /// ever since: restarting the node lets recovery compare it with the folders.
    pub(super) fn wait(&self) -> Result<(), FileError> {
        let mut state = lock(&self.shared.state);
        while state.pending.is_some() {
            state = self.shared.settled.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        match &state.failed {
            None => Ok(()),
            Some(err) => Err(FileError::Io {
                context: "an earlier file change could not be made durable; restart the node so its recovery checks it",
                detail: err.to_string(),
            }),
        }
    }
}

impl Drop for Settler {
    fn drop(&mut self) {
        // The last change settles, and is marked, before the endpoint is gone.
        drop(self.work.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn fail(shared: &Shared, op: u64, err: FileError) {
    tracing::error!(op, %err, "a file change could not be made durable; later changes are refused until a restart");
    let mut state = lock(&shared.state);
    state.pending = None;
    state.failed.get_or_insert(err);
}

/// Marks `op` settled, unless a later change already is (an abandoned change marks itself).
fn mark_settled(db: &NodeDb, op: u64) -> Result<(), FileError> {
    if db.read()?.file_ops_settled()? < op {
        db.commit(Change::new(move |txn| txn.set_file_ops_settled(op)))?;
    }
    Ok(())
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use rustix::fs::{Mode, OFlags};

    use super::*;
    use crate::home::{KeyProtection, NodeHome};

    #[test]
    fn a_failed_sync_refuses_every_later_change_and_marks_nothing() {
        let temp = tempfile::tempdir().unwrap();
        let home = NodeHome::init(&temp.path().join("node"), "Ada", KeyProtection::None).unwrap();
        let spares = Arc::new(Spares::open(&temp.path().join("staging")).unwrap());
        let settler = Settler::start(home.db().clone(), spares).unwrap();
        let good = rustix::fs::open(temp.path(), OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).unwrap();
        settler.hand_over(1, vec![good], Change::new(|_| Ok(())));
        settler.wait().unwrap();
        // A handle that cannot be synced (opened only as a path) stands for a disk that fails.
        let unsyncable = rustix::fs::open(temp.path(), OFlags::PATH | OFlags::CLOEXEC, Mode::empty()).unwrap();
        settler.hand_over(2, vec![unsyncable], Change::new(|_| Ok(())));
        for _ in 0..2 {
            let err = settler.wait().unwrap_err();
            assert!(err.to_string().contains("restart the node"), "{err}");
        }
        // Nothing more is settled, and closing does not claim otherwise.
        settler.hand_over(3, Vec::new(), Change::new(|_| Ok(())));
        assert!(settler.wait().is_err());
        drop(settler);
        assert_eq!(home.db().read().unwrap().file_ops_settled().unwrap(), 0);
    }
}
