//! The task state machine, the user-facing causes of failure, and the task as
//! the API shows it.

use super::error::{AppError, AppResult};
use super::ids::{ProviderTaskId, TaskId, UserId};
use super::kie::ProviderStatus;
use super::model::{Generation, GenerationRequest};
use super::time::rfc3339;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    Queued,
    Submitted,
    Generating,
    Succeeded,
    Failed,
}

impl TaskState {
    pub const ALL: [TaskState; 5] =
        [TaskState::Queued, TaskState::Submitted, TaskState::Generating, TaskState::Succeeded, TaskState::Failed];
    /// The states a task can still leave.
    pub const ACTIVE: [TaskState; 3] = [TaskState::Queued, TaskState::Submitted, TaskState::Generating];
    /// Handed to Kie and not finished: what a refresh asks Kie about.
    pub const AT_KIE: [TaskState; 2] = [TaskState::Submitted, TaskState::Generating];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Queued => "queued",
            TaskState::Submitted => "submitted",
            TaskState::Generating => "generating",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
        }
    }
    pub fn parse(s: &str) -> Option<TaskState> {
        TaskState::ALL.into_iter().find(|state| state.as_str() == s)
    }
    /// The `state=` filter of task lists: absent or empty means every state.
    pub fn parse_filter(value: Option<&str>) -> AppResult<Option<TaskState>> {
        match value.filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(s) => TaskState::parse(s)
                .map(Some)
                .ok_or_else(|| AppError::validation_allowed("state", "Unknown state.", &TaskState::ALL.map(TaskState::as_str))),
        }
    }
    pub fn is_terminal(self) -> bool {
        matches!(self, TaskState::Succeeded | TaskState::Failed)
    }
}

/// A state change, applied only to a task that is in one of `from` (a
/// conditional write: whoever applies it first wins, the others change nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: &'static [TaskState],
    pub to: TaskState,
}

impl Transition {
    /// Kie accepted the task.
    pub const SUBMIT: Transition = Transition { from: &[TaskState::Queued], to: TaskState::Submitted };
    /// Kie reports work in progress.
    pub const START: Transition = Transition { from: &[TaskState::Submitted], to: TaskState::Generating };
    /// The results are stored: capture the reservation.
    pub const SUCCEED: Transition = Transition { from: &TaskState::ACTIVE, to: TaskState::Succeeded };
    /// Anything that ends the task without a result: release the reservation.
    pub const FAIL: Transition = Transition { from: &TaskState::ACTIVE, to: TaskState::Failed };
}

/// Why a task failed, in words a user can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskFailure {
    ContentPolicy,
    InputUnreachable,
    InputInvalid,
    ProviderFailed,
    ProviderTimeout,
    SubmissionFailed,
    ResultInvalid,
}

impl TaskFailure {
    pub fn code(self) -> &'static str {
        match self {
            TaskFailure::ContentPolicy => "content_policy",
            TaskFailure::InputUnreachable => "input_unreachable",
            TaskFailure::InputInvalid => "input_invalid",
            TaskFailure::ProviderFailed => "provider_failed",
            TaskFailure::ProviderTimeout => "provider_timeout",
            TaskFailure::SubmissionFailed => "submission_failed",
            TaskFailure::ResultInvalid => "result_invalid",
        }
    }
    pub fn message(self) -> &'static str {
        match self {
            TaskFailure::ContentPolicy => "The model refused this request under its content policy. Try rewording the prompt or using other images. Your credits were returned.",
            TaskFailure::InputUnreachable => "The image service could not download one of your input images. Upload the file again or use a public image URL. Your credits were returned.",
            TaskFailure::InputInvalid => "The image service could not use one of your input images (too large or an unsupported format). Your credits were returned.",
            TaskFailure::ProviderFailed => "The image service failed to generate this image. Your credits were returned; please try again.",
            TaskFailure::ProviderTimeout => "The image service did not finish in time. Your credits were returned; please try again.",
            TaskFailure::SubmissionFailed => "We could not hand this task to the image service. Your credits were returned; please try again.",
            TaskFailure::ResultInvalid => "The image service returned no usable image. Your credits were returned; please try again.",
        }
    }

    /// Maps a Kie failure (any family) to the cause we show.
    pub fn from_provider(code: &str, message: &str) -> TaskFailure {
        let m = message.to_ascii_lowercase();
        let policy = ["prohibited", "content polic", "flagged", "safety", "sensitive", "nsfw", "violat"].iter().any(|w| m.contains(w));
        let unreachable =
            ["unavailable", "download", "fetch", "replace it", "could not access", "not accessible"].iter().any(|w| m.contains(w));
        match code.trim() {
            _ if policy => TaskFailure::ContentPolicy,
            "451" => TaskFailure::InputUnreachable,
            _ if unreachable => TaskFailure::InputUnreachable,
            "400" if m.contains("image") || m.contains("format") || m.contains("size") => TaskFailure::InputInvalid,
            "400" => TaskFailure::ContentPolicy,
            "408" => TaskFailure::ProviderTimeout,
            _ if m.contains("timed out") || m.contains("timeout") => TaskFailure::ProviderTimeout,
            _ => TaskFailure::ProviderFailed,
        }
    }
}

/// What to do with a task given what Kie says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing changes (terminal already, or no news).
    Stay,
    /// Kie is working on it: `submitted` → `generating`.
    MarkGenerating,
    /// Kie finished: copy these results into storage, then succeed.
    CopyResults(Vec<String>),
    /// Kie failed the task: fail it and give the credits back.
    Fail(TaskFailure),
}

pub fn next_step(current: TaskState, status: &ProviderStatus) -> Step {
    if current.is_terminal() {
        return Step::Stay;
    }
    match status {
        ProviderStatus::Waiting => Step::Stay,
        ProviderStatus::Generating if current == TaskState::Generating => Step::Stay,
        ProviderStatus::Generating => Step::MarkGenerating,
        ProviderStatus::Succeeded { urls } if urls.is_empty() => Step::Fail(TaskFailure::ResultInvalid),
        ProviderStatus::Succeeded { urls } => Step::CopyResults(urls.clone()),
        ProviderStatus::Failed { code, message } => Step::Fail(TaskFailure::from_provider(code, message)),
    }
}

/// One input image: an object in our storage, or a URL the client gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredInput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// One result image copied into our storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResult {
    pub key: String,
    pub content_type: String,
    pub bytes: u64,
}

/// A JSON document stored in a TEXT column (inputs, results).
fn json_text<'de, D: Deserializer<'de>, T: serde::de::DeserializeOwned>(d: D) -> Result<T, D::Error> {
    let text = String::deserialize(d)?;
    serde_json::from_str(&text).map_err(serde::de::Error::custom)
}

/// A task as stored. Every field is parsed when the row is read: a row that
/// does not fit (an unknown state, a malformed id) is an error, never a guess.
#[derive(Debug, Clone, Deserialize)]
pub struct Task {
    pub id: TaskId,
    pub user_id: UserId,
    pub model: String,
    pub prompt: String,
    pub aspect_ratio: Option<String>,
    pub resolution: Option<String>,
    pub output_format: Option<String>,
    #[serde(deserialize_with = "json_text")]
    pub inputs: Vec<StoredInput>,
    #[serde(deserialize_with = "json_text")]
    pub results: Vec<StoredResult>,
    pub state: TaskState,
    pub credits: i64,
    pub error_code: Option<TaskFailure>,
    pub error_message: Option<String>,
    pub provider_task_id: Option<ProviderTaskId>,
    pub callback_token: String,
    pub request_hash: Option<String>,
    pub attempts: i64,
    pub checked_at: Option<i64>,
    pub submitted_at: Option<i64>,
    pub deadline_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub completed_at: Option<i64>,
}

/// What a new task is made of, once the request passed every check.
pub struct NewTask {
    pub id: TaskId,
    pub user_id: UserId,
    pub generation: Generation,
    pub inputs: Vec<StoredInput>,
    pub credits: i64,
    pub callback_token: String,
    pub request_hash: String,
    pub now: i64,
    pub deadline_at: i64,
}

impl NewTask {
    /// The task as it is inserted: queued, paid for, not yet at Kie.
    pub fn into_task(self) -> Task {
        let g = self.generation;
        Task {
            id: self.id,
            user_id: self.user_id,
            model: g.model.name.to_string(),
            prompt: g.prompt,
            aspect_ratio: g.aspect_ratio,
            resolution: g.resolution,
            output_format: Some(g.output_format),
            inputs: self.inputs,
            results: Vec::new(),
            state: TaskState::Queued,
            credits: self.credits,
            error_code: None,
            error_message: None,
            provider_task_id: None,
            callback_token: self.callback_token,
            request_hash: Some(self.request_hash),
            attempts: 0,
            checked_at: None,
            submitted_at: None,
            deadline_at: Some(self.deadline_at),
            created_at: self.now,
            updated_at: self.now,
            completed_at: None,
        }
    }
}

impl Task {
    pub fn is_overdue(&self, now: i64) -> bool {
        self.deadline_at.is_some_and(|d| d < now)
    }

    /// The generation as it was accepted, checked again against today's models.
    pub fn generation(&self) -> AppResult<Generation> {
        GenerationRequest {
            model: Some(self.model.clone()),
            prompt: Some(self.prompt.clone()),
            mode: None,
            aspect_ratio: self.aspect_ratio.clone(),
            resolution: self.resolution.clone(),
            output_format: self.output_format.clone(),
            image_count: self.inputs.len(),
        }
        .validate()
    }

    /// The URLs Kie fetches the inputs from.
    pub fn input_urls(&self) -> Vec<String> {
        self.inputs.iter().filter_map(|i| i.url.clone()).collect()
    }

    /// The task as the API shows it; `file_url` turns a storage key into a signed URL.
    pub fn view(&self, file_url: &dyn Fn(&str) -> String) -> Value {
        let inputs: Vec<Value> = self
            .inputs
            .iter()
            .map(|i| match (&i.key, &i.url) {
                (Some(k), _) => json!({ "url": file_url(k) }),
                (None, Some(u)) => json!({ "url": u }),
                (None, None) => json!({ "url": null }),
            })
            .collect();
        let results: Vec<Value> =
            self.results.iter().map(|r| json!({ "url": file_url(&r.key), "content_type": r.content_type, "bytes": r.bytes })).collect();
        let error = match (&self.error_code, &self.error_message) {
            (Some(code), message) => json!({ "code": code.code(), "message": message }),
            _ => Value::Null,
        };
        json!({
            "id": self.id,
            "state": self.state.as_str(),
            "model": self.model,
            "prompt": self.prompt,
            "aspect_ratio": self.aspect_ratio,
            "resolution": self.resolution,
            "output_format": self.output_format,
            "inputs": inputs,
            "results": results,
            "credits": self.credits,
            "error": error,
            "provider_task_id": self.provider_task_id,
            "created_at": rfc3339(self.created_at),
            "updated_at": rfc3339(self.updated_at),
            "completed_at": self.completed_at.map(rfc3339),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_states_never_move() {
        for s in [TaskState::Succeeded, TaskState::Failed] {
            for p in [
                ProviderStatus::Generating,
                ProviderStatus::Succeeded { urls: vec!["u".into()] },
                ProviderStatus::Failed { code: "500".into(), message: "x".into() },
            ] {
                assert_eq!(next_step(s, &p), Step::Stay);
            }
        }
    }

    #[test]
    fn active_states_follow_kie() {
        assert_eq!(next_step(TaskState::Submitted, &ProviderStatus::Waiting), Step::Stay);
        assert_eq!(next_step(TaskState::Submitted, &ProviderStatus::Generating), Step::MarkGenerating);
        assert_eq!(next_step(TaskState::Generating, &ProviderStatus::Generating), Step::Stay);
        assert_eq!(
            next_step(TaskState::Generating, &ProviderStatus::Succeeded { urls: vec!["a".into()] }),
            Step::CopyResults(vec!["a".into()])
        );
        assert_eq!(next_step(TaskState::Submitted, &ProviderStatus::Succeeded { urls: vec![] }), Step::Fail(TaskFailure::ResultInvalid));
    }

    #[test]
    fn kie_failures_map_to_user_causes() {
        let f = TaskFailure::from_provider;
        assert_eq!(f("422", "Invalid prompt: prompt contains prohibited content"), TaskFailure::ContentPolicy);
        assert_eq!(f("422", "Your media file is unavailable, please replace it."), TaskFailure::InputUnreachable);
        assert_eq!(f("400", "Your content was flagged by OpenAI as violating content policies"), TaskFailure::ContentPolicy);
        assert_eq!(f("451", "Failed to download"), TaskFailure::InputUnreachable);
        assert_eq!(f("400", "invalid_image_format"), TaskFailure::InputInvalid);
        assert_eq!(f("500", "Internal Error"), TaskFailure::ProviderFailed);
        assert_eq!(f("500", "upstream API service timed out"), TaskFailure::ProviderTimeout);
        assert_eq!(f("", ""), TaskFailure::ProviderFailed);
    }

    #[test]
    fn view_signs_stored_files_and_keeps_external_urls() {
        let row = json!({
            "id": "tsk_aaaaaaaaaaaaaaaaaaaaaaaaaa", "user_id": "usr_aaaaaaaaaaaaaaaaaaaaaaaaaa", "model": "nano-banana-edit",
            "prompt": "p", "aspect_ratio": "1:1", "resolution": null, "output_format": "png",
            "inputs": r#"[{"key":"in/a.png"},{"url":"https://img.example/b.jpg"}]"#,
            "results": r#"[{"key":"out/tsk_1/0.png","content_type":"image/png","bytes":10}]"#,
            "state": "succeeded", "credits": 2, "error_code": null, "error_message": null, "provider_task_id": "abc",
            "callback_token": "secret", "request_hash": null, "attempts": 1, "checked_at": null, "submitted_at": null,
            "deadline_at": null, "created_at": 0, "updated_at": 1000, "completed_at": 1000
        });
        let rec: Task = serde_json::from_value(row.clone()).unwrap();
        let v = rec.view(&|k| format!("https://w/files/{k}?sig=x"));
        assert_eq!(v["inputs"][0]["url"], "https://w/files/in/a.png?sig=x");
        assert_eq!(v["inputs"][1]["url"], "https://img.example/b.jpg");
        assert_eq!(v["results"][0]["url"], "https://w/files/out/tsk_1/0.png?sig=x");
        assert_eq!(v["created_at"], "1970-01-01T00:00:00.000Z");
        assert_eq!(v["completed_at"], "1970-01-01T00:00:01.000Z");
        assert!(!v.to_string().contains("secret"), "the callback token never leaves the server");

        // A row that does not fit is an error, not a guess.
        let mut unknown_state = row.clone();
        unknown_state["state"] = json!("paused");
        assert!(serde_json::from_value::<Task>(unknown_state).is_err());
        let mut broken_inputs = row;
        broken_inputs["inputs"] = json!("[{");
        assert!(serde_json::from_value::<Task>(broken_inputs).is_err());
    }

    #[test]
    fn state_filter_lists_the_states_when_unknown() {
        assert_eq!(TaskState::parse_filter(None).unwrap(), None);
        assert_eq!(TaskState::parse_filter(Some("")).unwrap(), None);
        assert_eq!(TaskState::parse_filter(Some("failed")).unwrap(), Some(TaskState::Failed));
        let e = TaskState::parse_filter(Some("done")).unwrap_err();
        assert_eq!(e.details.unwrap()["allowed"].as_array().unwrap().len(), 5);
    }

    #[test]
    fn transitions_start_only_from_their_states() {
        assert!(Transition::SUCCEED.from.iter().all(|s| !s.is_terminal()));
        assert!(Transition::FAIL.from.iter().all(|s| !s.is_terminal()));
        assert_eq!(Transition::SUBMIT.from, &[TaskState::Queued]);
    }
}
