//! What this build is: the version, the commit and the time `build.rs`
//! stamped into it (`/api/health` and diagnose report them).

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const COMMIT: &str = env!("BUILD_GIT_COMMIT");
pub const BUILT_AT: &str = env!("BUILD_TIME");
