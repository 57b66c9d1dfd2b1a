//! The pure core: no I/O, no `worker` types; time and randomness come in as
//! arguments. Tested natively with `cargo test`.

pub mod config;
pub mod error;
pub mod ids;
pub mod image;
pub mod kie;
pub mod migrations;
pub mod model;
pub mod monitor;
pub mod query;
pub mod signature;
pub mod task;
pub mod time;
pub mod urls;
