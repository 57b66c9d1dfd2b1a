//! The task state machine, the user-facing causes of failure, and the task as
//! the API shows it.

use super::kie::ProviderStatus;
use super::time::rfc3339;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    Queued,
    Submitted,
    Generating,
    Succeeded,
    Failed,
}

/// The states a task can still leave (SQL: `state IN (…)`).
pub const ACTIVE_STATES_SQL: &str = "('queued','submitted','generating')";

impl TaskState {
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
        Some(match s {
            "queued" => TaskState::Queued,
            "submitted" => TaskState::Submitted,
            "generating" => TaskState::Generating,
            "succeeded" => TaskState::Succeeded,
            "failed" => TaskState::Failed,
            _ => return None,
        })
    }
    pub fn is_terminal(self) -> bool {
        matches!(self, TaskState::Succeeded | TaskState::Failed)
    }
}

/// Why a task failed, in words a user can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
        let policy = ["prohibited", "content polic", "flagged", "safety", "sensitive", "nsfw", "violat"]
            .iter()
            .any(|w| m.contains(w));
        let unreachable = ["unavailable", "download", "fetch", "replace it", "could not access", "not accessible"]
            .iter()
            .any(|w| m.contains(w));
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

/// A task row as stored in D1.
#[derive(Debug, Clone, Deserialize)]
pub struct TaskRecord {
    pub id: String,
    pub user_id: String,
    pub model: String,
    pub prompt: String,
    pub aspect_ratio: Option<String>,
    pub resolution: Option<String>,
    pub output_format: Option<String>,
    pub inputs: String,
    pub results: String,
    pub state: String,
    pub credits: i64,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub provider_task_id: Option<String>,
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

impl TaskRecord {
    pub fn state(&self) -> TaskState {
        TaskState::parse(&self.state).unwrap_or(TaskState::Failed)
    }
    pub fn inputs(&self) -> Vec<StoredInput> {
        serde_json::from_str(&self.inputs).unwrap_or_default()
    }
    pub fn results(&self) -> Vec<StoredResult> {
        serde_json::from_str(&self.results).unwrap_or_default()
    }

    /// The task as the API shows it; `file_url` turns a storage key into a signed URL.
    pub fn view(&self, file_url: &dyn Fn(&str) -> String) -> Value {
        let inputs: Vec<Value> = self
            .inputs()
            .iter()
            .map(|i| match (&i.key, &i.url) {
                (Some(k), _) => json!({ "url": file_url(k) }),
                (None, Some(u)) => json!({ "url": u }),
                (None, None) => json!({ "url": null }),
            })
            .collect();
        let results: Vec<Value> = self
            .results()
            .iter()
            .map(|r| json!({ "url": file_url(&r.key), "content_type": r.content_type, "bytes": r.bytes }))
            .collect();
        let error = match (&self.error_code, &self.error_message) {
            (Some(code), message) => json!({ "code": code, "message": message }),
            _ => Value::Null,
        };
        json!({
            "id": self.id,
            "state": self.state,
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
        assert_eq!(
            next_step(TaskState::Submitted, &ProviderStatus::Succeeded { urls: vec![] }),
            Step::Fail(TaskFailure::ResultInvalid)
        );
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
        let rec = TaskRecord {
            id: "tsk_1".into(),
            user_id: "usr_1".into(),
            model: "nano-banana-edit".into(),
            prompt: "p".into(),
            aspect_ratio: Some("1:1".into()),
            resolution: None,
            output_format: Some("png".into()),
            inputs: r#"[{"key":"in/a.png"},{"url":"https://img.example/b.jpg"}]"#.into(),
            results: r#"[{"key":"out/tsk_1/0.png","content_type":"image/png","bytes":10}]"#.into(),
            state: "succeeded".into(),
            credits: 2,
            error_code: None,
            error_message: None,
            provider_task_id: Some("abc".into()),
            callback_token: "secret".into(),
            request_hash: None,
            attempts: 1,
            checked_at: None,
            submitted_at: None,
            deadline_at: None,
            created_at: 0,
            updated_at: 1000,
            completed_at: Some(1000),
        };
        let v = rec.view(&|k| format!("https://w/files/{k}?sig=x"));
        assert_eq!(v["inputs"][0]["url"], "https://w/files/in/a.png?sig=x");
        assert_eq!(v["inputs"][1]["url"], "https://img.example/b.jpg");
        assert_eq!(v["results"][0]["url"], "https://w/files/out/tsk_1/0.png?sig=x");
        assert_eq!(v["created_at"], "1970-01-01T00:00:00.000Z");
        assert_eq!(v["completed_at"], "1970-01-01T00:00:01.000Z");
        assert!(!v.to_string().contains("secret"), "the callback token never leaves the server");
    }
}
