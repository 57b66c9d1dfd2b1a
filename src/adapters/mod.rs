//! Adapters to the platform, one per resource: the clock and randomness,
//! outbound HTTP, Kie, D1 (and every SQL statement, in `store`), R2, KV,
//! settings, and the log. Everything else reaches the platform through these.

pub mod cache;
pub mod clock;
pub mod d1;
pub mod files;
pub mod kie;
pub mod log;
pub mod metrics;
pub mod oidc;
pub mod outbound;
pub mod settings;
pub mod store;
pub mod streams;
pub mod stripe;
pub mod turnstile;
pub mod webcrypto;

use wasm_bindgen::{JsCast, JsValue};

/// The message of a JavaScript exception or rejection (an `Error`'s message,
/// or the value itself when it is a string), for logs and internal causes.
pub fn js_message(e: &JsValue) -> String {
    e.dyn_ref::<worker::js_sys::Error>()
        .map(|err| String::from(err.message()))
        .or_else(|| e.as_string())
        .unwrap_or_else(|| "unknown error".into())
}
