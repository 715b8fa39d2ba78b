//! Polling a future only when it asked to be: a session's loop waits on its socket, its
//! mailbox and its timer at once, and is woken for one of them at a time, most often for a
//! delivery. Polling all of them on every wake costs a read attempt (a buffer made ready, a
//! readiness check, wakers registered) and a timer check per delivery for nothing. A [`Gate`]
//! gives the future behind it a waker of its own and polls it again only once that waker was
//! woken, or once it was ready (a stream may hold more).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

/// A flag and the waker of the one task that waits on it: ringing it and waiting on it take
/// no lock, and a wait costs nothing to set up or give up. A session's mailbox and each
/// [`Gate`] are one.
#[derive(Debug)]
pub(crate) struct Doorbell {
    rung: AtomicBool,
    waiter: AtomicWaker,
}

impl Doorbell {
    /// A doorbell, already rung or not.
    pub(crate) fn new(rung: bool) -> Self {
        Self {
            rung: AtomicBool::new(rung),
            waiter: AtomicWaker::new(),
        }
    }

    /// Rings it and wakes the task waiting, if any.
    pub(crate) fn ring(&self) {
        self.set();
        self.waiter.wake();
    }

    /// Marks it rung without waking anyone: for the waiting task itself.
    pub(crate) fn set(&self) {
        self.rung.store(true, Ordering::Release);
    }

    /// Ready (and no longer rung) if it was rung since the last ready poll; otherwise the task
    /// of `cx` is woken by the next ring.
    pub(crate) fn poll_rung(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.waiter.register(cx.waker());
        if self.rung.swap(false, Ordering::AcqRel) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// A future's own waker and whether it was woken since the future was last polled.
#[derive(Debug)]
pub(crate) struct Gate {
    signal: Arc<Signal>,
    waker: Waker,
}

/// What the gate's waker rings: woken by the future, it wakes the task that polls the gate.
#[derive(Debug)]
struct Signal(Doorbell);

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.ring();
    }
}

impl Gate {
    /// An open gate: the first [`poll`](Self::poll) goes through.
    pub(crate) fn new() -> Self {
        let signal = Arc::new(Signal(Doorbell::new(true)));
        let waker = Waker::from(Arc::clone(&signal));
        Self { signal, waker }
    }

    /// Opens the gate: the next [`poll`](Self::poll) goes through whether or not the future
    /// woke (after the caller changed it, say a timer's deadline).
    pub(crate) fn open(&self) {
        self.signal.0.set();
    }

    /// Polls `inner` with the gate's own waker if it was woken since its last poll, or was
    /// ready then; otherwise answers `Pending` without polling it. Either way the task of
    /// `cx` is woken when `inner` wakes.
    pub(crate) fn poll<T>(
        &self,
        cx: &mut Context<'_>,
        inner: impl FnOnce(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        if self.signal.0.poll_rung(cx).is_pending() {
            return Poll::Pending;
        }
        let polled = inner(&mut Context::from_waker(&self.waker));
        if polled.is_ready() {
            self.open();
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    /// A context whose waker counts its wakes.
    struct Counter(std::sync::atomic::AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counter() -> (Arc<Counter>, Waker) {
        let counter = Arc::new(Counter(0.into()));
        let waker = Waker::from(Arc::clone(&counter));
        (counter, waker)
    }

    #[test]
    fn a_pending_future_is_polled_again_only_after_it_wakes() {
        let gate = Gate::new();
        let (task, waker) = counter();
        let mut cx = Context::from_waker(&waker);
        let polls = Cell::new(0);
        let stored: Cell<Option<Waker>> = Cell::new(None);
        let poll = |cx: &mut Context<'_>| {
            gate.poll(cx, |inner| {
                polls.set(polls.get() + 1);
                stored.set(Some(inner.waker().clone()));
                Poll::<()>::Pending
            })
        };
        assert!(poll(&mut cx).is_pending());
        assert!(poll(&mut cx).is_pending());
        assert_eq!(polls.get(), 1, "not woken: not polled again");
        stored.take().expect("the future kept its waker").wake();
        assert_eq!(
            task.0.load(Ordering::SeqCst),
            1,
            "the task is woken in turn"
        );
        assert!(poll(&mut cx).is_pending());
        assert_eq!(polls.get(), 2, "woken: polled again");
    }

    #[test]
    fn a_ready_future_is_polled_again_and_an_opened_gate_lets_the_next_poll_through() {
        let gate = Gate::new();
        let (_task, waker) = counter();
        let mut cx = Context::from_waker(&waker);
        let polls = Cell::new(0);
        let poll = |cx: &mut Context<'_>, ready: bool| {
            gate.poll(cx, |_| {
                polls.set(polls.get() + 1);
                if ready {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            })
        };
        assert!(poll(&mut cx, true).is_ready());
        assert!(poll(&mut cx, false).is_pending());
        assert_eq!(
            polls.get(),
            2,
            "after a ready poll the next one goes through"
        );
        assert!(poll(&mut cx, false).is_pending());
        assert_eq!(polls.get(), 2);
        gate.open();
        assert!(poll(&mut cx, false).is_pending());
        assert_eq!(polls.get(), 3, "an opened gate lets one poll through");
    }
}
