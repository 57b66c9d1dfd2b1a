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
use crate::domain::billing::OrderState;
use crate::domain::task::TaskState;
use wasm_bindgen::JsValue;

/// A state column's value: task and order states reach SQL only through the
/// domain's types.
trait SqlState: Copy {
    fn sql(self) -> &'static str;
}

impl SqlState for TaskState {
    fn sql(self) -> &'static str {
        self.as_str()
    }
}

impl SqlState for OrderState {
    fn sql(self) -> &'static str {
        self.as_str()
    }
}

/// `<column> IN (?a, ?b, …)` for `states`, their values appended to `args`.
fn states_in<S: SqlState>(column: &str, states: &[S], args: &mut Vec<JsValue>) -> String {
    let placeholders: Vec<String> = states
        .iter()
        .map(|s| {
            args.push(text(s.sql()));
            format!("?{}", args.len())
        })
        .collect();
    format!("{column} IN ({})", placeholders.join(", "))
}
