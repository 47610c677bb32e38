//! What callers of the writer wait on: a submitted change's result ([`Pending`]), and a batch
//! reaching the disk ([`WhenDurable`], for durable-later changes).

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};

use super::{CommitReceipt, Shared, lock};
use crate::error::StoreError;

/// A committed change: its step's output (typed by its `Pending`) and its receipt.
pub(super) type Committed = (Box<dyn Any + Send>, CommitReceipt);

pub(super) type JobResult = Result<Committed, StoreError>;

/// Where a submitted change's result is delivered.
pub(super) struct Slot {
    state: Mutex<SlotState>,
    ready: Condvar,
}

#[derive(Default)]
struct SlotState {
    result: Option<JobResult>,
    waker: Option<Waker>,
}

impl Slot {
    pub(super) fn new() -> Slot {
        Slot { state: Mutex::new(SlotState::default()), ready: Condvar::new() }
    }

    pub(super) fn finish(&self, result: JobResult) {
        let waker = {
            let mut state = lock(&self.state);
            state.result = Some(result);
            state.waker.take()
        };
        self.ready.notify_one();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// A submitted change: resolves to its step's output and receipt once it is durable (or to the
/// error that failed its batch). Block on it with [`Pending::wait`] or `.await` it.
#[must_use = "a change is only known to be durable once its Pending resolves"]
pub struct Pending<T> {
    pub(super) slot: Arc<Slot>,
    pub(super) output: PhantomData<fn() -> T>,
}

impl<T: 'static> Pending<T> {
    /// Blocks until the change is durable.
    pub fn wait(self) -> Result<(T, CommitReceipt), StoreError> {
        let mut state = lock(&self.slot.state);
        loop {
            if let Some(result) = state.result.take() {
                return typed(result);
            }
            state = self.slot.ready.wait(state).unwrap_or_else(|poison| poison.into_inner());
        }
    }
}

impl<T: 'static> Future for Pending<T> {
    type Output = Result<(T, CommitReceipt), StoreError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = lock(&self.slot.state);
        match state.result.take() {
            Some(result) => Poll::Ready(typed(result)),
            None => {
                state.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl<T> fmt::Debug for Pending<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pending")
    }
}

pub(super) fn typed<T: 'static>(result: JobResult) -> Result<(T, CommitReceipt), StoreError> {
    let (output, receipt) = result?;
    match output.downcast::<T>() {
        Ok(output) => Ok((*output, receipt)),
        // The box was made in `Change::new` for this very T (or is () for an audit-only
        // change, whose T is ()).
        Err(_) => unreachable!("change output has the type of its change"),
    }
}

/// The last batch on disk (the journal's count, kept apart so that waiters need not take the
/// journal's lock, which a sync holds), and the tasks waiting for a later one.
pub(super) struct Durable {
    state: Mutex<DurableState>,
}

struct DurableState {
    through: u64,
    waiting: Vec<(u64, Waker)>,
}

impl Durable {
    pub(super) fn new(through: u64) -> Durable {
        Durable { state: Mutex::new(DurableState { through, waiting: Vec::new() }) }
    }

    /// Batches up to `through` are on disk: wakes whoever waited for them.
    pub(super) fn reached(&self, through: u64) {
        let ready: Vec<Waker> = {
            let mut state = lock(&self.state);
            if through <= state.through {
                return;
            }
            state.through = through;
            let (ready, waiting) =
                std::mem::take(&mut state.waiting).into_iter().partition(|(batch, _)| *batch <= through);
            state.waiting = waiting;
            ready.into_iter().map(|(_, waker)| waker).collect()
        };
        ready.into_iter().for_each(Waker::wake);
    }

    /// Wakes every waiter (the writer was poisoned: none may wait forever).
    pub(super) fn wake_all(&self) {
        let waiting = std::mem::take(&mut lock(&self.state).waiting);
        waiting.into_iter().for_each(|(_, waker)| waker.wake());
    }
}

/// A wait for a batch to reach the disk ([`crate::NodeDb::when_durable`]).
#[must_use = "a future does nothing unless awaited"]
pub struct WhenDurable {
    pub(super) shared: Arc<Shared>,
    pub(super) batch: u64,
}

impl Future for WhenDurable {
    type Output = Result<(), StoreError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Checked under the lock `wake_all` takes after the flag is set, so no wake is lost.
        let mut durable = lock(&self.shared.durable.state);
        if let Some(reason) = self.shared.poisoned.get() {
            return Poll::Ready(Err(StoreError::Poisoned(reason.clone())));
        }
        if durable.through >= self.batch {
            return Poll::Ready(Ok(()));
        }
        // Polled again before its batch is on disk (a timeout around it fired), it is still
        // registered once.
        let batch = self.batch;
        if !durable.waiting.iter().any(|(waits_for, waker)| *waits_for == batch && waker.will_wake(cx.waker())) {
            durable.waiting.push((batch, cx.waker().clone()));
        }
        Poll::Pending
    }
}

impl fmt::Debug for WhenDurable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WhenDurable").field("batch", &self.batch).finish()
    }
}
