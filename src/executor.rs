//! How a request's future starts: polled at once, inside the call that
//! brought the request. One that needs no I/O (a page, a refusal) is answered
//! there, with no microtask, no promise and no closure for the runtime. One
//! that waits is handed to wasm-bindgen's executor from where it stands.
//! (`future_to_promise` queues a microtask through JavaScript before the
//! first poll, and builds a promise and two closures around the future.)
//!
//! Nothing is kept here: a waiting job belongs to the executor, so a request
//! the runtime abandons (its promises never settle) is freed with it.
//! Wake-ups always go through that executor, never poll inline: some futures
//! (workers-rs' `Delay`) call `wake` before they record why they woke.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

pub type Job = Pin<Box<dyn Future<Output = ()>>>;

/// The waker of the first poll. A future may keep it (`Delay` does), so it
/// passes wake-ups on to the executor's waker once the executor has polled.
#[derive(Default)]
struct Forward(Mutex<Option<Waker>>);

impl Wake for Forward {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    /// Before the executor's first poll there is no one to tell: that poll
    /// comes anyway.
    fn wake_by_ref(self: &Arc<Self>) {
        let target = self.0.lock().ok().and_then(|slot| slot.clone());
        if let Some(waker) = target {
            waker.wake();
        }
    }
}

/// Polls `job` once now; if it waits, gives it to `hand_over` (an executor's
/// spawn), wrapped so that it keeps answering to the first waker.
pub fn start(job: impl Future<Output = ()> + 'static, hand_over: fn(Job)) {
    let forward = Arc::new(Forward::default());
    let first = Waker::from(forward.clone());
    let mut job: Job = Box::pin(job);
    if job.as_mut().poll(&mut Context::from_waker(&first)).is_ready() {
        return;
    }
    hand_over(Box::pin(async move {
        poll_fn(|cx: &mut Context<'_>| -> Poll<()> {
            if let Ok(mut slot) = forward.0.lock() {
                *slot = Some(cx.waker().clone());
            }
            job.as_mut().poll(cx)
        })
        .await
    }));
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

    #[test]
    fn a_job_that_needs_nothing_is_done_before_start_returns_and_is_never_handed_over() {
        let done = Rc::new(Cell::new(false));
        let flag = done.clone();
        start(async move { flag.set(true) }, keep);
        assert!(done.get());
        assert!(handed().is_empty());
    }

    #[test]
    fn a_waiting_job_is_handed_over_once_and_its_first_waker_reaches_the_executor() {
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
        let mut jobs = handed();
        assert_eq!(jobs.len(), 1);
        let mut job = jobs.pop().expect("handed over");
        let first = gate.first_waker.borrow().clone().expect("the job kept the first waker");
        first.wake_by_ref();
        assert_eq!(gate.polls.get(), 1, "a wake-up polls nothing itself");

        // The executor polls: still waiting. The first waker now reaches the executor.
        let executor = Arc::new(Count::default());
        let waker = Waker::from(executor.clone());
        assert!(job.as_mut().poll(&mut Context::from_waker(&waker)).is_pending());
        gate.open.set(true);
        first.wake_by_ref();
        assert_eq!(wakes(&executor), 1);
        assert_eq!(gate.polls.get(), 2, "nothing was polled inline");
        assert!(!done.get());
        assert!(job.as_mut().poll(&mut Context::from_waker(&waker)).is_ready());
        assert!(done.get());
    }
}
