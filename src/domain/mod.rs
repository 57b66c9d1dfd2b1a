//! The pure core: no I/O, no `worker` types; time and randomness come in as
//! arguments. Tested natively with `cargo test`.

pub mod account;
pub mod billing;
pub mod config;
pub mod error;
pub mod ids;
pub mod image;
pub mod jwt;
pub mod kie;
pub mod migrations;
pub mod model;
pub mod monitor;
pub mod oidc;
pub mod query;
pub mod session;
pub mod signature;
pub mod stripe;
pub mod task;
pub mod time;
pub mod turnstile;
pub mod urls;
