//! The generation pipeline: submit a paid task to Kie (or defer it), learn its
//! state (callback hint, poll, cron), copy results into R2, and finish it
//! exactly once. Used by create, status reads, the webhook, admin recheck and
//! the cron, which may all race: every step is a conditional write.

use crate::adapters::clock::now_ms;
use crate::adapters::d1::Db;
use crate::adapters::files::{Files, PutImageError};
use crate::adapters::kie::KieClient;
use crate::adapters::log::Log;
use crate::adapters::outbound;
use crate::adapters::store::tasks;
use crate::adapters::streams::StreamError;
use crate::domain::config::Config;
use crate::domain::error::AppResult;
use crate::domain::image::MIN_RESULT_BYTES;
use crate::domain::kie::{CreateOutcome, ProviderStatus, RecordOutcome};
use crate::domain::model::find_model;
use crate::domain::query::encode_query;
use crate::domain::task::{next_step, Step, StoredResult, Task, TaskFailure, TaskState, Transition};
use crate::domain::urls::check_public_url;
use serde_json::{json, Value};
use std::rc::Rc;
use worker::Env;

const SUBMIT_LEASE_MS: i64 = 60_000;
const MAX_RESULT_BYTES: u64 = 50 * 1024 * 1024;
/// Kie returns one image per task for these models; never copy more than this.
const MAX_RESULTS: usize = 10;
/// Waiting for a result's first bytes, and copying it whole.
const RESULT_FETCH_TIMEOUT_MS: u64 = 30_000;
const RESULT_COPY_MS: i64 = 120_000;
/// Our clock and Kie's differ by a request's flight time: keep a margin.
const KIE_WINDOW_MARGIN_MS: i64 = 1_000;
/// Work under a deadline stops this long before it.
const DEADLINE_MARGIN_MS: i64 = 1_000;

/// What a submission attempt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submission {
    Submitted,
    /// Kie cannot take it now; it stays queued until `next_attempt_at`.
    Deferred {
        next_attempt_at: i64,
    },
    Failed,
    /// Someone else holds the lease, or the task is no longer queued.
    Skipped,
}

#[derive(Clone)]
pub struct Pipeline {
    pub env: Env,
    pub db: Db,
    pub cfg: Rc<Config>,
    pub log: Log,
    /// When this invocation must be done (background work after a response
    /// has 30 s on Cloudflare); `None` while a client is waiting.
    pub deadline: Option<i64>,
}

enum CopyError {
    /// What Kie gave us is not an image we can keep: fail the task.
    Invalid(String),
    /// The file could not be fetched or stored now: try again later.
    Transient(String),
}

/// Exponential backoff for deferred submissions: 2 s, 4 s, … capped at 60 s.
pub fn backoff_ms(attempts: i64) -> i64 {
    let exp = attempts.clamp(0, 5) as u32;
    (2_000i64 << exp).min(60_000)
}

impl Pipeline {
    pub fn new(env: Env, db: Db, cfg: Rc<Config>, log: Log) -> Pipeline {
        Pipeline { env, db, cfg, log, deadline: None }
    }

    /// The same pipeline for work that must end by `deadline` (Unix ms).
    pub fn until(&self, deadline: i64) -> Pipeline {
        Pipeline { deadline: Some(deadline), ..self.clone() }
    }

    /// Milliseconds left before the deadline (plenty when there is none).
    pub fn time_left(&self) -> i64 {
        self.deadline.map_or(i64::MAX, |d| d - now_ms())
    }

    /// A Kie client whose calls end by the deadline.
    fn kie(&self) -> KieClient<'_> {
        let timeout_ms = (self.cfg.kie_timeout_ms as i64).min(self.time_left() - DEADLINE_MARGIN_MS).max(1) as u64;
        KieClient { base: &self.cfg.kie_api_base, api_key: &self.cfg.kie_api_key, timeout_ms, log: &self.log }
    }

    /// Whether a create call fits before the deadline with its full timeout:
    /// one cut short by us could not be told from Kie's silence, and would be
    /// failed and refunded while Kie might have taken it.
    pub fn has_time_to_submit(&self) -> bool {
        self.time_left() > self.cfg.kie_timeout_ms as i64 + DEADLINE_MARGIN_MS
    }

    fn callback_url(&self, task: &Task) -> Option<String> {
        self.cfg
            .public_base_url
            .as_ref()
            .map(|base| format!("{base}/api/webhooks/kie-image?task={}&token={}", task.id, encode_query(&task.callback_token)))
    }

    fn note_task(&self, task: &Task) {
        self.log.set("task_id", task.id.as_str());
        if let Some(p) = &task.provider_task_id {
            self.log.set("provider_task_id", p.as_str());
        }
    }

    /// The `task.state` line: every state change, from what to what and why.
    fn log_transition(&self, task: &Task, to: TaskState, extra: Value) {
        let mut fields = json!({ "task_id": task.id, "from": task.state.as_str(), "to": to.as_str() });
        if let (Some(obj), Value::Object(more)) = (fields.as_object_mut(), extra) {
            obj.extend(more);
        }
        self.log.info("task.state", &format!("task {} -> {}", task.state.as_str(), to.as_str()), fields);
    }

    /// Fails the task and refunds it, unless it already finished.
    pub async fn fail(&self, task: &Task, failure: TaskFailure, why: &str) -> AppResult<bool> {
        let won = tasks::finish_failure(&self.db, &task.id, failure, now_ms()).await?;
        if won {
            self.log_transition(task, Transition::FAIL.to, json!({ "error_code": failure.code(), "cause": why, "refunded": task.credits }));
        }
        Ok(won)
    }

    /// Tries to hand a queued task to Kie now, within the account's create window.
    pub async fn submit(&self, task: &Task) -> AppResult<Submission> {
        self.note_task(task);
        let now = now_ms();
        if task.state != TaskState::Queued {
            return Ok(Submission::Skipped);
        }
        if !self.has_time_to_submit() {
            return Ok(Submission::Deferred { next_attempt_at: now });
        }
        if task.is_overdue(now) {
            self.fail(task, TaskFailure::SubmissionFailed, "still queued at its deadline").await?;
            return Ok(Submission::Failed);
        }
        let window_ms = self.cfg.kie_window_s * 1000 + KIE_WINDOW_MARGIN_MS;
        let per_window = i64::from(self.cfg.kie_creates_per_window);
        let (lease, slot) = tasks::claim_submission(&self.db, &task.id, now, SUBMIT_LEASE_MS, window_ms, per_window).await?;
        if !lease {
            return Ok(Submission::Skipped);
        }
        if !slot {
            let next = tasks::next_slot_at(&self.db, now, window_ms, per_window).await?.unwrap_or(now + 1_000).max(now + 100);
            tasks::defer_submission(&self.db, &task.id, now, next, false).await?;
            self.log.info("task.deferred", "our Kie create window is full", json!({ "task_id": task.id, "next_attempt_at": next }));
            return Ok(Submission::Deferred { next_attempt_at: next });
        }

        let generation = match task.generation() {
            Ok(g) => g,
            Err(e) => {
                self.fail(task, TaskFailure::SubmissionFailed, &format!("stored task no longer valid: {}", e.message)).await?;
                return Ok(Submission::Failed);
            }
        };
        let body = generation.kie_create_body(&task.input_urls(), self.callback_url(task).as_deref());
        let outcome = self.kie().create(generation.model.family, &body).await;
        let now = now_ms();
        match outcome {
            CreateOutcome::Accepted { provider_task_id } => {
                self.log.set("provider_task_id", provider_task_id.as_str());
                let deadline = now + self.cfg.task_deadline_s * 1000;
                if tasks::mark_submitted(&self.db, &task.id, &provider_task_id, now, deadline).await? {
                    self.log_transition(
                        task,
                        Transition::SUBMIT.to,
                        json!({ "provider_task_id": provider_task_id, "callbacks": self.cfg.public_base_url.is_some() }),
                    );
                }
                Ok(Submission::Submitted)
            }
            CreateOutcome::RetryLater { reason } => {
                let next = now + backoff_ms(task.attempts);
                tasks::defer_submission(&self.db, &task.id, now, next, true).await?;
                self.log.warn(
                    "task.deferred",
                    "Kie cannot take the task now; it stays queued and is retried",
                    json!({ "task_id": task.id, "cause": reason, "attempt": task.attempts + 1, "next_attempt_at": next }),
                );
                Ok(Submission::Deferred { next_attempt_at: next })
            }
            CreateOutcome::Rejected { kie_code, reason } => {
                self.log.error(
                    "kie.rejected",
                    "Kie refused the task",
                    json!({ "task_id": task.id, "kie_code": kie_code, "cause": reason }),
                );
                self.fail(task, TaskFailure::SubmissionFailed, &format!("kie code {kie_code}: {reason}")).await?;
                Ok(Submission::Failed)
            }
            CreateOutcome::Ambiguous { reason } => {
                // Submitting again could create a second paid task at Kie: fail and refund.
                self.log.error(
                    "kie.ambiguous",
                    "Kie's answer to create was lost or unusable; not retrying to avoid a duplicate task",
                    json!({ "task_id": task.id, "cause": reason }),
                );
                self.fail(task, TaskFailure::SubmissionFailed, &reason).await?;
                Ok(Submission::Failed)
            }
        }
    }

    /// Asks Kie for the task's state and applies it. Queued tasks are submitted.
    pub async fn refresh(&self, task: &Task) -> AppResult<()> {
        self.note_task(task);
        if task.state.is_terminal() {
            return Ok(());
        }
        let Some(provider_id) = &task.provider_task_id else {
            self.submit(task).await?;
            return Ok(());
        };
        let Ok(model) = find_model(&task.model) else {
            self.fail(task, TaskFailure::ProviderFailed, "unknown model in stored task").await?;
            return Ok(());
        };
        let overdue = task.is_overdue(now_ms());
        match self.kie().record(model.family, provider_id).await {
            RecordOutcome::Status(status) => self.apply(task, &status).await?,
            RecordOutcome::UnknownTask => {
                self.log.warn("kie.unknown_task", "Kie does not know this task id", json!({ "task_id": task.id }));
            }
            RecordOutcome::Unavailable { reason } => {
                self.log.warn("kie.record_unavailable", "could not read the task from Kie", json!({ "task_id": task.id, "cause": reason }));
            }
        }
        if overdue {
            // Still not finished at its deadline (a no-op if it just finished).
            self.fail(task, TaskFailure::ProviderTimeout, "deadline passed").await?;
        }
        Ok(())
    }

    /// Applies a state confirmed by Kie.
    pub async fn apply(&self, task: &Task, status: &ProviderStatus) -> AppResult<()> {
        match next_step(task.state, status) {
            Step::Stay => {}
            Step::MarkGenerating => {
                if tasks::mark_generating(&self.db, &task.id, now_ms()).await? {
                    self.log_transition(task, Transition::START.to, json!({}));
                }
            }
            Step::Fail(failure) => {
                let (code, message) = match status {
                    ProviderStatus::Failed { code, message } => (code.as_str(), message.as_str()),
                    _ => ("", "no result urls"),
                };
                self.fail(task, failure, &format!("kie failCode {code:?}: {message}")).await?;
            }
            Step::CopyResults(urls) => match self.copy_results(task, &urls).await {
                Ok(results) => {
                    if tasks::finish_success(&self.db, &task.id, &results, now_ms()).await? {
                        self.log_transition(task, Transition::SUCCEED.to, json!({ "results": results.len(), "charged": task.credits }));
                    }
                }
                Err(CopyError::Invalid(why)) => {
                    self.fail(task, TaskFailure::ResultInvalid, &why).await?;
                }
                Err(CopyError::Transient(why)) => {
                    crate::adapters::metrics::event(crate::domain::monitor::alerts::event::COPY_RETRY);
                    self.log.warn(
                        "result.copy_retry",
                        "could not fetch the result yet; will retry",
                        json!({ "task_id": task.id, "cause": why }),
                    );
                }
            },
        }
        Ok(())
    }

    /// Where a result may be fetched from: Kie's own origin (the configured
    /// API base), or any public host, read as `fetch` will read it. Never our
    /// own network, never ourselves.
    fn check_result_url(&self, index: usize, url: &str) -> Result<(), CopyError> {
        let parsed = outbound::parse_url(url).ok_or_else(|| CopyError::Invalid(format!("result {index} is not a URL")))?;
        let kie_origin = outbound::parse_url(&self.cfg.kie_api_base).map(|k| k.origin);
        if kie_origin.as_deref() == Some(parsed.origin.as_str()) {
            return Ok(());
        }
        check_public_url("result", &parsed.protocol, &parsed.hostname, url.len())
            .map_err(|e| CopyError::Invalid(format!("result {index} URL refused: {}", e.internal.unwrap_or(e.message))))
    }

    /// Streams each result from Kie's URL into R2 after its first bytes prove
    /// it a real image; the bytes never pass through wasm memory.
    async fn copy_results(&self, task: &Task, urls: &[String]) -> Result<Vec<StoredResult>, CopyError> {
        let urls = urls.get(..urls.len().min(MAX_RESULTS)).unwrap_or_default();
        // Each result costs a fetch and a put; finishing the task one more write.
        let needed = 2 * urls.len() as u32 + 1;
        if self.log.subrequests_left() < needed {
            let left = self.log.subrequests_left();
            return Err(CopyError::Transient(format!("{needed} subrequests needed, {left} left in this invocation")));
        }
        let files = Files::from_env(&self.env, &self.log).map_err(|e| CopyError::Transient(e.internal.unwrap_or_default()))?;
        let mut stored = Vec::new();
        for (i, url) in urls.iter().enumerate() {
            stored.push(self.copy_result(&files, task, i, url).await?);
        }
        Ok(stored)
    }

    /// One result: its URL checked, its answer checked, its bytes piped into R2.
    async fn copy_result(&self, files: &Files, task: &Task, i: usize, url: &str) -> Result<StoredResult, CopyError> {
        self.check_result_url(i, url)?;
        let started = now_ms();
        let open_timeout = (RESULT_FETCH_TIMEOUT_MS as i64).min(self.time_left() - DEADLINE_MARGIN_MS);
        if open_timeout < 1_000 {
            return Err(CopyError::Transient(format!("result {i}: no time left in this invocation")));
        }
        let opened = match outbound::open(&self.log, url, "GET", outbound::headers(), None, open_timeout as u64).await {
            Ok(o) if o.status == 200 => o,
            Ok(o) if (400..500).contains(&o.status) && o.status != 429 => {
                return Err(CopyError::Invalid(format!("result {i} answered HTTP {}", o.status)))
            }
            Ok(o) => return Err(CopyError::Transient(format!("result {i}: HTTP {}", o.status))),
            Err(t) => return Err(CopyError::Transient(format!("result {i}: {t}"))),
        };
        if let Some(len) = opened.length.filter(|&n| n < MIN_RESULT_BYTES as u64 || n > MAX_RESULT_BYTES) {
            return Err(CopyError::Invalid(format!("result {i} has an implausible size ({len} bytes)")));
        }
        let Some(body) = &opened.body else { return Err(CopyError::Invalid(format!("result {i} has no body"))) };
        let deadline = now_ms() + RESULT_COPY_MS.min(self.time_left() - DEADLINE_MARGIN_MS);
        let copied =
            files.put_image_stream(body, opened.length, MAX_RESULT_BYTES, deadline, |kind| Files::result_key(&task.id, i, kind)).await;
        if copied.is_err() {
            opened.abort();
        }
        let image = match copied {
            Ok(image) if image.bytes < MIN_RESULT_BYTES as u64 => {
                return Err(CopyError::Invalid(format!("result {i} has an implausible size ({} bytes)", image.bytes)))
            }
            Ok(image) => image,
            Err(PutImageError::NotImage(why)) => return Err(CopyError::Invalid(format!("result {i} is not an image: {why}"))),
            Err(PutImageError::Stream(StreamError::TooLarge { cap })) => {
                return Err(CopyError::Invalid(format!("result {i} is larger than {cap} bytes")))
            }
            Err(PutImageError::Stream(e)) => return Err(CopyError::Transient(format!("result {i}: {e}"))),
            Err(PutImageError::Storage(e)) => return Err(CopyError::Transient(e.internal.unwrap_or(e.message))),
        };
        let content_type = image.info.kind.content_type();
        self.log.info(
            "result.stored",
            "result streamed into storage",
            json!({ "task_id": task.id, "index": i, "bytes": image.bytes, "content_type": content_type,
                    "width": image.info.width, "height": image.info.height, "fetch_ms": now_ms() - started }),
        );
        Ok(StoredResult { key: image.key, content_type: content_type.into(), bytes: image.bytes })
    }
}
