//! Adapters to the platform: D1, the Kie HTTP API, and the log.

pub mod db;
pub mod kie_client;
pub mod log;
pub mod store;
