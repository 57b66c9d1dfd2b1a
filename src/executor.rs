//! How a request's future starts: polled at once, inside the call that
//! brought the request. One that needs no I/O (a page, a refusal) is answered
//! there, with no microtask, no promise and no closure for the runtime. One
//! that waits is parked until its first wake-up and only then handed to
//! wasm-bindgen's executor. (`future_to_promise` queues a microtask through
//! JavaScript before the first poll, and builds a promise and two closures
//! around the future.)
//!
//! Wake-ups always go through that executor, never poll inline: some futures
//! (workers-rs' `Delay`) call `wake` before they record why they woke.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

pub type Job = Pin<Box<dyn Future<Output = ()>>>;

thread_local! {
    /// Jobs that wait for their first wake-up, by id.
    static PARKED: RefCell<BTreeMap<u64, Job>> = const { RefCell::new(BTreeMap::new()) };
    static NEXT_ID: Cell<u64> = const { Cell::new(0) };
}

/// The waker of the first poll. A future may keep it (`Delay` does): its
/// first wake-up hands the parked job to the executor, later ones are passed
/// on to the executor's waker.
struct Forward {
    id: u64,
    hand_over: fn(Job),
    /// Woken before the first poll returned (nothing was parked yet).
    early: AtomicBool,
    executor: Mutex<Option<Waker>>,
}

impl Forward {
    fn wrap(self: Arc<Self>, mut job: Job) -> Job {
        Box::pin(async move {
            poll_fn(|cx: &mut Context<'_>| -> Poll<()> {
                if let Ok(mut slot) = self.executor.lock() {
                    *slot = Some(cx.waker().clone());
                }
                job.as_mut().poll(cx)
            })
            .await
        })
    }
}

impl Wake for Forward {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(job) = PARKED.with(|p| p.borrow_mut().remove(&self.id)) {
            (self.hand_over)(self.clone().wrap(job));
            return;
        }
        let executor = self.executor.lock().ok().and_then(|slot| slot.clone());
        match executor {
            Some(waker) => waker.wake(),
            None => self.early.store(true, Ordering::Relaxed),
        }
    }
}

/// Polls `job` once now; if it waits, parks it until its first wake-up, which
/// gives it to `hand_over` (an executor's spawn).
pub fn start(job: impl Future<Output = ()> + 'static, hand_over: fn(Job)) {
    let id = NEXT_ID.with(|n| n.replace(n.get() + 1));
    let forward = Arc::new(Forward { id, hand_over, early: AtomicBool::new(false), executor: Mutex::new(None) });
    let first = Waker::from(forward.clone());
    let mut job: Job = Box::pin(job);
    if job.as_mut().poll(&mut Context::from_waker(&first)).is_ready() {
        return;
    }
    if forward.early.load(Ordering::Relaxed) {
        hand_over(forward.wrap(job));
    } else {
        PARKED.with(|p| p.borrow_mut().insert(id, job));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;

    /// A future that is pending until `open`, keeping the waker of its
    /// first poll only, like workers-rs' `Delay`.
    #[derive(Default)]
    struct Gate {
        open: Cell<bool>,
        first_waker: RefCell<Option<Waker>>,
        polls: Cell<u32>,
    }

    struct Wait(Rc<Gate>);

    impl Future for Wait {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.0.polls.set(self.0.polls.get() + 1);
            if self.0.open.get() {
                return Poll::Ready(());
            }
            self.0.first_waker.borrow_mut().get_or_insert_with(|| cx.waker().clone());
            Poll::Pending
        }
    }

    /// Counts wake-ups of the executor's waker.
    #[derive(Default)]
    struct Count(Mutex<u32>);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            if let Ok(mut n) = self.0.lock() {
                *n += 1;
            }
        }
    }

    fn wakes(c: &Count) -> u32 {
        c.0.lock().map(|n| *n).unwrap_or(0)
    }

    thread_local! {
        static HANDED: RefCell<Vec<Job>> = const { RefCell::new(Vec::new()) };
    }

    fn keep(job: Job) {
        HANDED.with(|h| h.borrow_mut().push(job));
    }

    fn handed() -> Vec<Job> {
        HANDED.with(|h| h.take())
    }

    fn parked() -> usize {
        PARKED.with(|p| p.borrow().len())
    }

    #[test]
    fn a_job_that_needs_nothing_is_done_before_start_returns_and_is_never_handed_over() {
        let done = Rc::new(Cell::new(false));
        let flag = done.clone();
        start(async move { flag.set(true) }, keep);
        assert!(done.get());
        assert!(handed().is_empty());
        assert_eq!(parked(), 0);
    }

    #[test]
    fn a_waiting_job_is_parked_and_handed_over_at_its_first_wake_up_never_polled_inline() {
        let gate = Rc::new(Gate::default());
        let done = Rc::new(Cell::new(false));
        let (g, flag) = (gate.clone(), done.clone());
        start(
            async move {
                Wait(g).await;
                flag.set(true);
            },
            keep,
        );
        assert_eq!(gate.polls.get(), 1, "polled once, inside start");
        assert_eq!(parked(), 1);
        assert!(handed().is_empty(), "nothing handed over before a wake-up");

        let first = gate.first_waker.borrow().clone().expect("the job kept the first waker");
        first.wake_by_ref();
        assert_eq!(gate.polls.get(), 1, "the wake-up did not poll");
        assert_eq!(parked(), 0);
        let mut jobs = handed();
        assert_eq!(jobs.len(), 1);
        let mut job = jobs.pop().expect("handed over");

        // The executor polls: still waiting. The first waker now reaches the executor.
        let executor = Arc::new(Count::default());
        let waker = Waker::from(executor.clone());
        assert!(job.as_mut().poll(&mut Context::from_waker(&waker)).is_pending());
        gate.open.set(true);
        first.wake_by_ref();
        assert_eq!(wakes(&executor), 1);
        assert!(handed().is_empty(), "handed over once");
        assert!(!done.get());
        assert!(job.as_mut().poll(&mut Context::from_waker(&waker)).is_ready());
        assert!(done.get());
    }

    /// Wakes itself during its first poll, then waits.
    struct WakesItself(Rc<Cell<u32>>);

    impl Future for WakesItself {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.0.set(self.0.get() + 1);
            if self.0.get() == 1 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            Poll::Ready(())
        }
    }

    #[test]
    fn a_wake_up_during_the_first_poll_hands_the_job_over_at_once() {
        let polls = Rc::new(Cell::new(0));
        start(WakesItself(polls.clone()), keep);
        assert_eq!(parked(), 0);
        let mut jobs = handed();
        assert_eq!(jobs.len(), 1);
        let waker = Waker::from(Arc::new(Count::default()));
        assert!(jobs[0].as_mut().poll(&mut Context::from_waker(&waker)).is_ready());
        assert_eq!(polls.get(), 2);
    }
}
