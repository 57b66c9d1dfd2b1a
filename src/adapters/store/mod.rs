//! Every SQL statement of the service, next to the rows it reads. Writes that
//! move money or state are single conditional statements or D1 batches (one
//! transaction each), so concurrent requests, callbacks and cron runs cannot
//! double-spend, double-refund or move a terminal task.

pub mod accounts;
pub mod monitoring;
pub mod ops;
pub mod orders;
pub mod tasks;
pub mod users;

use super::d1::text;
use crate::domain::task::TaskState;
use wasm_bindgen::JsValue;

/// `<column> IN (?a, ?b, …)` for `states`, their values appended to `args`:
/// task states reach SQL only through the domain's `TaskState`.
fn states_in(column: &str, states: &[TaskState], args: &mut Vec<JsValue>) -> String {
    let placeholders: Vec<String> = states
        .iter()
        .map(|s| {
            args.push(text(s.as_str()));
            format!("?{}", args.len())
        })
        .collect();
    format!("{column} IN ({})", placeholders.join(", "))
}
