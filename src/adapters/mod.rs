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
