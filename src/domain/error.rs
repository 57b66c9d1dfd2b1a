//! The one error type. Everything that can go wrong in a request ends up as an
//! [`AppError`]; `http::error_response` is the only place that turns it into a
//! response.

use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidJson,
    InvalidRequest,
    Unauthorized,
    InsufficientCredits,
    CreditsOwed,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    IdempotencyConflict,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationFailed,
    RateLimited,
    UpstreamError,
    ConfigError,
    UpstreamUnavailable,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::InsufficientCredits => "insufficient_credits",
            ErrorCode::CreditsOwed => "credits_owed",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::IdempotencyConflict => "idempotency_conflict",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::ValidationFailed => "validation_failed",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::UpstreamError => "upstream_error",
            ErrorCode::ConfigError => "config_error",
            ErrorCode::UpstreamUnavailable => "upstream_unavailable",
            ErrorCode::Internal => "internal_error",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            ErrorCode::InvalidJson | ErrorCode::InvalidRequest => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::InsufficientCredits | ErrorCode::CreditsOwed => 402,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::IdempotencyConflict => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::ValidationFailed => 422,
            ErrorCode::RateLimited => 429,
            ErrorCode::UpstreamError => 502,
            ErrorCode::ConfigError | ErrorCode::UpstreamUnavailable => 503,
            ErrorCode::Internal => 500,
        }
    }

    pub fn retryable(self) -> bool {
        matches!(self, ErrorCode::RateLimited | ErrorCode::UpstreamUnavailable | ErrorCode::Internal)
    }
}

/// An error with a person-readable message, optional structured details, and an
/// optional internal cause that is logged but never sent to the client.
#[derive(Debug, Clone)]
pub struct AppError {
    pub code: ErrorCode,
    pub message: String,
    pub details: Option<Value>,
    pub retry_after_s: Option<u32>,
    pub internal: Option<String>,
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        AppError { code, message: message.into(), details: None, retry_after_s: None, internal: None }
    }
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }
    pub fn with_internal(mut self, cause: impl Into<String>) -> Self {
        self.internal = Some(cause.into());
        self
    }
    pub fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after_s = Some(seconds);
        self
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }
    pub fn not_found() -> Self {
        Self::new(ErrorCode::NotFound, "Nothing here.")
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }
    /// A value outside what is allowed; `details.field` names it.
    pub fn validation(field: &str, message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ValidationFailed, message).with_details(json!({ "field": field }))
    }
    pub fn validation_allowed(field: &str, message: impl Into<String>, allowed: &[&str]) -> Self {
        Self::new(ErrorCode::ValidationFailed, message).with_details(json!({ "field": field, "allowed": allowed }))
    }
    /// Something broke inside; the cause goes to the log only.
    pub fn internal(cause: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, "Something went wrong on our side. Quote the request id if you contact us.").with_internal(cause)
    }

    pub fn status(&self) -> u16 {
        self.code.status()
    }

    /// The `api.md` error body.
    pub fn body(&self, request_id: &str) -> Value {
        let mut error = json!({
            "code": self.code.as_str(),
            "message": self.message,
            "request_id": request_id,
            "retryable": self.code.retryable(),
        });
        if let (Some(details), Some(obj)) = (&self.details, error.as_object_mut()) {
            obj.insert("details".into(), details.clone());
        }
        json!({ "error": error })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_the_contract_shape_and_hides_internal_cause() {
        let e = AppError::internal("D1_ERROR: no such table: users");
        let body = e.body("req-1");
        assert_eq!(body["error"]["code"], "internal_error");
        assert_eq!(body["error"]["request_id"], "req-1");
        assert_eq!(body["error"]["retryable"], true);
        assert!(!body.to_string().contains("no such table"));
        assert_eq!(e.status(), 500);
    }

    #[test]
    fn validation_names_the_field() {
        let e = AppError::validation_allowed("aspect_ratio", "bad", &["1:1", "3:2"]);
        let body = e.body("r");
        assert_eq!(e.status(), 422);
        assert_eq!(body["error"]["details"]["field"], "aspect_ratio");
        assert_eq!(body["error"]["details"]["allowed"][1], "3:2");
    }
}
