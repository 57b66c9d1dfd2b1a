//! The clock and randomness: the only places the Worker reads either. The
//! pure core takes both as arguments.

use crate::domain::error::{AppError, AppResult};

/// Unix milliseconds now (`Date.now()`, no `Date` object; `std::time` panics in wasm).
pub fn now_ms() -> i64 {
    worker::js_sys::Date::now() as i64
}

/// `N` bytes from the runtime's CSPRNG (`crypto.getRandomValues`).
pub fn random_bytes<const N: usize>() -> AppResult<[u8; N]> {
    let mut buf = [0u8; N];
    getrandom::getrandom(&mut buf).map_err(|e| AppError::internal(format!("random: {e}")))?;
    Ok(buf)
}
