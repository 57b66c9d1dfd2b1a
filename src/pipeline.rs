//! The generation pipeline: submit a paid task to Kie (or defer it), learn its
//! state (callback hint, poll, cron), copy results into R2, and finish it
//! exactly once. Used by create, status reads, the webhook, admin recheck and
//! the cron, which may all race: every step is a conditional write.

use crate::adapters::clock::now_ms;
use crate::adapters::d1::Db;
use crate::adapters::files::Files;
use crate::adapters::kie::KieClient;
use crate::adapters::log::Log;
use crate::adapters::outbound;
use crate::adapters::store::tasks;
use crate::domain::config::Config;
use crate::domain::error::AppResult;
use crate::domain::image::{ImageKind, MIN_RESULT_BYTES};
use crate::domain::kie::{CreateOutcome, ProviderStatus, RecordOutcome, Transport};
use crate::domain::model::find_model;
use crate::domain::query::encode_query;
use crate::domain::task::{next_step, Step, StoredResult, Task, TaskFailure, TaskState, Transition};
use serde_json::{json, Value};
use std::rc::Rc;
use worker::{Env, Method};

const SUBMIT_LEASE_MS: i64 = 60_000;
const MAX_RESULT_BYTES: usize = 50 * 1024 * 1024;
const RESULT_FETCH_TIMEOUT_MS: u64 = 30_000;
/// Our clock and Kie's differ by a request's flight time: keep a margin.
const KIE_WINDOW_MARGIN_MS: i64 = 1_000;

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
    fn kie(&self) -> KieClient<'_> {
        KieClient { base: &self.cfg.kie_api_base, api_key: &self.cfg.kie_api_key, timeout_ms: self.cfg.kie_timeout_ms, log: &self.log }
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

    /// Fetches each result, checks it is a real image, and stores it in R2.
    async fn copy_results(&self, task: &Task, urls: &[String]) -> Result<Vec<StoredResult>, CopyError> {
        let files = Files::from_env(&self.env).map_err(|e| CopyError::Transient(e.internal.unwrap_or_default()))?;
        let mut stored = Vec::new();
        for (i, url) in urls.iter().take(10).enumerate() {
            let started = now_ms();
            let bytes = match outbound::fetch(url, Method::Get, outbound::headers(), None, RESULT_FETCH_TIMEOUT_MS).await {
                Transport::Response { status: 200, body } => body,
                Transport::Response { status, .. } if (400..500).contains(&status) && status != 429 => {
                    return Err(CopyError::Invalid(format!("result {i} answered HTTP {status}")))
                }
                other => return Err(CopyError::Transient(format!("result {i}: {other}"))),
            };
            let Some(kind) = ImageKind::sniff(&bytes) else {
                return Err(CopyError::Invalid(format!("result {i} is not a jpeg/png/webp ({} bytes)", bytes.len())));
            };
            if bytes.len() < MIN_RESULT_BYTES || bytes.len() > MAX_RESULT_BYTES {
                return Err(CopyError::Invalid(format!("result {i} has an implausible size ({} bytes)", bytes.len())));
            }
            let key = Files::result_key(&task.id, i, kind);
            let size = bytes.len() as u64;
            files.put(&key, bytes, kind.content_type()).await.map_err(|e| CopyError::Transient(e.internal.unwrap_or_default()))?;
            self.log.info(
                "result.stored",
                "result copied into storage",
                json!({ "task_id": task.id, "index": i, "bytes": size, "content_type": kind.content_type(), "fetch_ms": now_ms() - started }),
            );
            stored.push(StoredResult { key, content_type: kind.content_type().into(), bytes: size });
        }
        Ok(stored)
    }
}
