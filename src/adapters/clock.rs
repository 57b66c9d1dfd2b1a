//! The clock and randomness: the only places the Worker reads either. The
//! pure core takes both as arguments.

use crate::domain::error::{AppError, AppResult};
use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use worker::js_sys::Date;

thread_local! {
    /// The time read at the start of the request poll under way, if any.
    static POLL_TIME: Cell<Option<i64>> = const { Cell::new(None) };
    /// Bytes drawn from the CSPRNG and not yet handed out.
    static RANDOM_POOL: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// How many bytes one draw from the runtime's CSPRNG takes.
const POOL_BYTES: usize = 1024;

/// Unix milliseconds now (`Date.now()`; `std::time` panics in wasm).
pub fn now_ms() -> i64 {
    POLL_TIME.with(Cell::get).unwrap_or_else(|| Date::now() as i64)
}

/// Runs a request's future reading the clock once per poll. workerd's clock
/// does not move while code runs, only between I/O events, so every read in
/// one poll gives the same value; this makes them one JavaScript call.
pub fn read_once_per_poll<F: Future>(job: F) -> impl Future<Output = F::Output> {
    let mut job = Box::pin(job);
    poll_fn(move |cx| {
        let outer = POLL_TIME.with(|t| t.replace(Some(Date::now() as i64)));
        let polled = job.as_mut().poll(cx);
        POLL_TIME.with(|t| t.set(outer));
        polled
    })
}

/// `N` bytes from the runtime's CSPRNG (`crypto.getRandomValues`), drawn
/// [`POOL_BYTES`] at a time; no byte is handed out twice.
pub fn random_bytes<const N: usize>() -> AppResult<[u8; N]> {
    RANDOM_POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.len() < N {
            let mut fresh = vec![0u8; POOL_BYTES.max(N)];
            getrandom::getrandom(&mut fresh).map_err(|e| AppError::internal(format!("random: {e}")))?;
            *pool = fresh;
        }
        let rest = pool.len() - N;
        let mut buf = [0u8; N];
        buf.iter_mut().zip(pool.iter().skip(rest)).for_each(|(b, p)| *b = *p);
        pool.truncate(rest);
        Ok(buf)
    })
}
