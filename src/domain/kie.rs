//! Kie's wire formats, parsed without I/O: the `{code,msg,data}` envelope, the
//! outcome of a create call, task status from `recordInfo`/`record-info`, and
//! every callback shape we have seen. All parsers are tolerant of missing,
//! null and string-encoded fields, as Kie sends them.

use super::ids::ProviderTaskId;
use super::model::Family;
use serde_json::Value;

/// What came back from one HTTP exchange with Kie, as seen by the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// An HTTP response (any status) with its body.
    Response { status: u16, body: Vec<u8> },
    /// The connection was refused or broke before a request could be sent.
    Unreachable(String),
    /// We sent the request but gave up waiting for the answer.
    TimedOut,
}

impl std::fmt::Display for Transport {
    /// How an exchange went, for logs and hints (never the body).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::Response { status, .. } => write!(f, "HTTP {status}"),
            Transport::Unreachable(why) => write!(f, "unreachable: {why}"),
            Transport::TimedOut => f.write_str("timed out"),
        }
    }
}

/// The `{code,msg,data}` envelope that every Kie JSON reply uses.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub code: i64,
    pub msg: String,
    pub data: Value,
}

/// Reads an envelope whatever the HTTP status; `None` when the body is not one.
pub fn parse_envelope(body: &[u8]) -> Option<Envelope> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let code = match v.get("code")? {
        Value::Number(n) => n.as_i64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    let msg = v.get("msg").or_else(|| v.get("message")).and_then(Value::as_str).unwrap_or("").to_string();
    Some(Envelope { code, msg, data: v.get("data").cloned().unwrap_or(Value::Null) })
}

/// What a create call means for our task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOutcome {
    /// Kie created the task and gave us its id.
    Accepted { provider_task_id: ProviderTaskId },
    /// Kie surely did not take the task (rate limit, maintenance, never reached):
    /// safe to submit again later.
    RetryLater { reason: String },
    /// Kie refused the task for good.
    Rejected { kie_code: i64, reason: String },
    /// We cannot know whether Kie created the task (5xx, garbage, timeout):
    /// submitting again could create a second paid task.
    Ambiguous { reason: String },
}

fn short(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    let s: String = s.chars().take(120).collect();
    s.replace(['\n', '\r'], " ")
}

pub fn classify_create(t: &Transport) -> CreateOutcome {
    match t {
        Transport::Unreachable(_) => CreateOutcome::RetryLater { reason: format!("kie {t}") },
        Transport::TimedOut => CreateOutcome::Ambiguous { reason: format!("kie {t}") },
        Transport::Response { status, body } => {
            let env = parse_envelope(body);
            match (status, env) {
                (_, Some(env)) if env.code == 200 && *status < 300 => {
                    match env.data.get("taskId").or_else(|| env.data.get("task_id")).and_then(Value::as_str).and_then(ProviderTaskId::parse)
                    {
                        Some(provider_task_id) => CreateOutcome::Accepted { provider_task_id },
                        None => CreateOutcome::Ambiguous { reason: "kie said success without a usable taskId".into() },
                    }
                }
                (429, _) => CreateOutcome::RetryLater { reason: "kie http 429".into() },
                (403, None) => CreateOutcome::RetryLater { reason: format!("kie http 403 before the API ({})", short(body)) },
                (_, Some(env)) => match env.code {
                    // 429 rate limit, 455 maintenance, 433 sub-key cap, 550 4o queue full:
                    // the task was not created and nothing was charged.
                    429 | 455 | 433 | 550 => CreateOutcome::RetryLater { reason: format!("kie code {}: {}", env.code, env.msg) },
                    // 501 "generation failed" and 505 "feature or model disabled" are
                    // Kie's definite refusals (kie-api.md §1): nothing was created.
                    501 | 505 => CreateOutcome::Rejected { kie_code: env.code, reason: env.msg },
                    500..=599 => CreateOutcome::Ambiguous { reason: format!("kie code {}: {}", env.code, env.msg) },
                    code => CreateOutcome::Rejected { kie_code: code, reason: env.msg },
                },
                (s, None) if *s >= 500 => CreateOutcome::Ambiguous { reason: format!("kie http {s}") },
                (s, None) => CreateOutcome::Ambiguous { reason: format!("kie http {s} with a non-JSON body ({})", short(body)) },
            }
        }
    }
}

/// A task's state at Kie, normalised over the three families.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderStatus {
    /// Accepted, waiting in Kie's queue.
    Waiting,
    Generating,
    Succeeded {
        urls: Vec<String>,
    },
    Failed {
        code: String,
        message: String,
    },
}

impl ProviderStatus {
    /// Kie's word for it, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            ProviderStatus::Waiting => "waiting",
            ProviderStatus::Generating => "generating",
            ProviderStatus::Succeeded { .. } => "success",
            ProviderStatus::Failed { .. } => "fail",
        }
    }
}

/// What a record call told us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOutcome {
    Status(ProviderStatus),
    /// Kie does not know this task id (`recordInfo is null`, 404).
    UnknownTask,
    /// No usable answer (transport problem, garbage, 5xx, rate limit): try later.
    Unavailable {
        reason: String,
    },
}

fn str_field(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// `resultJson` is a JSON string (sometimes an object, sometimes null or "").
fn result_urls_from_result_json(v: Option<&Value>) -> Vec<String> {
    let parsed = match v {
        Some(Value::String(s)) if !s.trim().is_empty() => serde_json::from_str::<Value>(s).unwrap_or(Value::Null),
        Some(other @ Value::Object(_)) => other.clone(),
        _ => Value::Null,
    };
    urls_in(&parsed, &["resultUrls", "result_urls"])
}

fn urls_in(v: &Value, keys: &[&str]) -> Vec<String> {
    for key in keys {
        match v.get(*key) {
            Some(Value::Array(items)) => {
                return items.iter().filter_map(Value::as_str).filter(|s| !s.is_empty()).map(String::from).collect()
            }
            Some(Value::String(s)) if !s.is_empty() => return vec![s.clone()],
            _ => {}
        }
    }
    Vec::new()
}

fn jobs_status(data: &Value) -> Option<ProviderStatus> {
    let state = data.get("state")?.as_str()?.to_ascii_lowercase();
    Some(match state.as_str() {
        "waiting" | "queuing" | "queued" | "pending" => ProviderStatus::Waiting,
        "generating" | "processing" | "running" => ProviderStatus::Generating,
        "success" | "succeeded" | "completed" => ProviderStatus::Succeeded { urls: result_urls_from_result_json(data.get("resultJson")) },
        "fail" | "failed" | "error" => ProviderStatus::Failed { code: str_field(data, "failCode"), message: str_field(data, "failMsg") },
        _ => return None,
    })
}

fn flag(data: &Value) -> Option<i64> {
    match data.get("successFlag")? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn gpt4o_status(data: &Value) -> Option<ProviderStatus> {
    let response = data.get("response").cloned().unwrap_or(Value::Null);
    let status = data.get("status").and_then(Value::as_str).unwrap_or("");
    Some(match (flag(data), status) {
        (Some(1), _) | (_, "SUCCESS") => ProviderStatus::Succeeded { urls: urls_in(&response, &["resultUrls", "result_urls"]) },
        (Some(2) | Some(3), _) | (_, "CREATE_TASK_FAILED" | "GENERATE_FAILED") => {
            ProviderStatus::Failed { code: str_field(data, "errorCode"), message: str_field(data, "errorMessage") }
        }
        (Some(0), _) | (_, "GENERATING") => ProviderStatus::Generating,
        _ => return None,
    })
}

fn flux_status(data: &Value) -> Option<ProviderStatus> {
    let response = data.get("response").cloned().unwrap_or(Value::Null);
    Some(match flag(data)? {
        0 => ProviderStatus::Generating,
        1 => ProviderStatus::Succeeded { urls: urls_in(&response, &["resultImageUrl"]) },
        2 | 3 => ProviderStatus::Failed { code: str_field(data, "errorCode"), message: str_field(data, "errorMessage") },
        _ => return None,
    })
}

pub fn classify_record(family: Family, t: &Transport) -> RecordOutcome {
    let (status, body) = match t {
        Transport::Response { status, body } => (*status, body),
        Transport::Unreachable(_) | Transport::TimedOut => return RecordOutcome::Unavailable { reason: format!("kie {t}") },
    };
    let Some(env) = parse_envelope(body) else {
        return RecordOutcome::Unavailable { reason: format!("kie http {status} with a non-JSON body ({})", short(body)) };
    };
    match env.code {
        200 => {}
        404 => return RecordOutcome::UnknownTask,
        422 if env.data.is_null() => return RecordOutcome::UnknownTask,
        code => return RecordOutcome::Unavailable { reason: format!("kie code {code}: {}", env.msg) },
    }
    let parsed = match family {
        Family::Jobs => jobs_status(&env.data),
        Family::Gpt4o => gpt4o_status(&env.data),
        Family::FluxKontext => flux_status(&env.data),
    };
    match parsed {
        Some(s) => RecordOutcome::Status(s),
        None => RecordOutcome::Unavailable { reason: "kie record had no recognisable state".into() },
    }
}

/// What a callback body told us. It is unsigned, so it is only a hint: the state
/// we apply is the one Kie confirms when we ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KieCallback {
    pub provider_task_id: Option<ProviderTaskId>,
    pub hint: Option<ProviderStatus>,
    pub shape: &'static str,
}

/// Reads any callback shape: jobs `{code,msg,data:{taskId,state,resultJson}}`,
/// 4o `{code,msg,data:{taskId,info:{result_urls}}}`, Kontext
/// `{code,msg,data:{taskId,info:{resultImageUrl}}}`, the generic
/// `{taskId,data:{task_id}}` and the flat `{taskId,state,...}`.
pub fn parse_callback(body: &[u8]) -> Option<KieCallback> {
    let v: Value = serde_json::from_slice(body).ok()?;
    if !v.is_object() {
        return None;
    }
    let data = v.get("data").filter(|d| d.is_object());
    let id_of = |o: &Value| o.get("taskId").or_else(|| o.get("task_id")).and_then(Value::as_str).and_then(ProviderTaskId::parse);
    let provider_task_id = data.and_then(id_of).or_else(|| id_of(&v));
    let code = v.get("code").and_then(Value::as_i64);

    let (shape, hint) = match data {
        Some(d) if d.get("state").is_some() => ("jobs", jobs_status(d)),
        Some(d) if d.get("info").is_some() || d.get("successFlag").is_some() => {
            let info = d.get("info").cloned().unwrap_or(Value::Null);
            let urls = urls_in(&info, &["result_urls", "resultUrls", "resultImageUrl"]);
            let hint = match code {
                Some(200) if !urls.is_empty() => Some(ProviderStatus::Succeeded { urls }),
                Some(200) => None,
                Some(c) => Some(ProviderStatus::Failed {
                    code: c.to_string(),
                    message: v.get("msg").and_then(Value::as_str).unwrap_or("").to_string(),
                }),
                None => None,
            };
            let shape = if info.get("resultImageUrl").is_some() { "flux" } else { "gpt4o" };
            (shape, hint)
        }
        Some(_) => ("generic", None),
        None => ("flat", jobs_status(&v)),
    };
    Some(KieCallback { provider_task_id, hint, shape })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn resp(v: Value) -> Transport {
        Transport::Response { status: 200, body: v.to_string().into_bytes() }
    }

    #[test]
    fn errors_inside_http_200_are_not_success() {
        let t = resp(json!({"code": 402, "msg": "Insufficient credits", "data": null}));
        assert_eq!(classify_create(&t), CreateOutcome::Rejected { kie_code: 402, reason: "Insufficient credits".into() });
        let t = resp(json!({"code": 429, "msg": "Too many requests", "data": null}));
        assert!(matches!(classify_create(&t), CreateOutcome::RetryLater { .. }));
        let t = resp(json!({"code": 455, "msg": "maintenance", "data": null}));
        assert!(matches!(classify_create(&t), CreateOutcome::RetryLater { .. }));
        let t = resp(json!({"code": 500, "msg": "Server Error", "data": null}));
        assert!(matches!(classify_create(&t), CreateOutcome::Ambiguous { .. }));
        for refusal in [501, 505] {
            let t = resp(json!({"code": refusal, "msg": "disabled", "data": null}));
            assert_eq!(classify_create(&t), CreateOutcome::Rejected { kie_code: refusal, reason: "disabled".into() });
        }
        assert_eq!(Transport::TimedOut.to_string(), "timed out");
        assert_eq!(Transport::Response { status: 502, body: vec![] }.to_string(), "HTTP 502");
    }

    #[test]
    fn create_success_and_transport_failures() {
        let t = resp(json!({"code": 200, "msg": "success", "data": {"taskId": "b31f0a77d507765367dc8f5868ba3ceb"}}));
        assert_eq!(
            classify_create(&t),
            CreateOutcome::Accepted { provider_task_id: ProviderTaskId::parse("b31f0a77d507765367dc8f5868ba3ceb").unwrap() }
        );
        assert!(matches!(classify_create(&Transport::Unreachable("refused".into())), CreateOutcome::RetryLater { .. }));
        assert!(matches!(classify_create(&Transport::TimedOut), CreateOutcome::Ambiguous { .. }));
        let garbage = Transport::Response { status: 200, body: b"<html>oops".to_vec() };
        assert!(matches!(classify_create(&garbage), CreateOutcome::Ambiguous { .. }));
        let cf = Transport::Response { status: 403, body: b"error code: 1010".to_vec() };
        assert!(matches!(classify_create(&cf), CreateOutcome::RetryLater { .. }));
        let http429 = Transport::Response { status: 429, body: b"".to_vec() };
        assert!(matches!(classify_create(&http429), CreateOutcome::RetryLater { .. }));
        let http502 = Transport::Response { status: 502, body: b"bad gateway".to_vec() };
        assert!(matches!(classify_create(&http502), CreateOutcome::Ambiguous { .. }));
    }

    #[test]
    fn record_info_with_string_encoded_result_json() {
        let t = resp(json!({"code":200,"msg":"success","data":{
            "taskId":"b31f","model":"google/nano-banana","state":"success",
            "param":"{\"model\":\"google/nano-banana\"}",
            "resultJson":"{\"resultUrls\":[\"https://tempfile.aiquickdraw.com/as/b31f_1.png\"]}",
            "failCode":"","failMsg":"","costTime":11,"creditsConsumed":4}}));
        assert_eq!(
            classify_record(Family::Jobs, &t),
            RecordOutcome::Status(ProviderStatus::Succeeded { urls: vec!["https://tempfile.aiquickdraw.com/as/b31f_1.png".into()] })
        );
    }

    #[test]
    fn record_info_running_failed_and_unknown() {
        let running = resp(
            json!({"code":200,"msg":"success","data":{"taskId":"x","state":"waiting","resultJson":"","failCode":"","failMsg":"","costTime":null,"creditsConsumed":null}}),
        );
        assert_eq!(classify_record(Family::Jobs, &running), RecordOutcome::Status(ProviderStatus::Waiting));
        let failed = resp(
            json!({"code":200,"msg":"success","data":{"taskId":"x","state":"fail","resultJson":"","failCode":"422","failMsg":"Your media file is unavailable, please replace it."}}),
        );
        assert_eq!(
            classify_record(Family::Jobs, &failed),
            RecordOutcome::Status(ProviderStatus::Failed {
                code: "422".into(),
                message: "Your media file is unavailable, please replace it.".into()
            })
        );
        let unknown = resp(json!({"code":422,"msg":"recordInfo is null","data":null}));
        assert_eq!(classify_record(Family::Jobs, &unknown), RecordOutcome::UnknownTask);
        let limited = resp(json!({"code":429,"msg":"Rate limit exceeded","data":null}));
        assert!(matches!(classify_record(Family::Jobs, &limited), RecordOutcome::Unavailable { .. }));
    }

    #[test]
    fn gpt4o_and_flux_records() {
        let t = resp(json!({"code":200,"msg":"success","data":{"taskId":"t","successFlag":1,"status":"SUCCESS",
            "response":{"resultUrls":["https://x/1.png"]},"errorCode":null,"errorMessage":"","progress":"1.00"}}));
        assert_eq!(
            classify_record(Family::Gpt4o, &t),
            RecordOutcome::Status(ProviderStatus::Succeeded { urls: vec!["https://x/1.png".into()] })
        );
        let t = resp(
            json!({"code":200,"msg":"success","data":{"taskId":"t","successFlag":0,"status":"GENERATING","response":null,"progress":"0.40"}}),
        );
        assert_eq!(classify_record(Family::Gpt4o, &t), RecordOutcome::Status(ProviderStatus::Generating));
        let t = resp(json!({"code":200,"msg":"success","data":{"taskId":"t","successFlag":3,"errorCode":400,"errorMessage":"flagged"}}));
        assert_eq!(
            classify_record(Family::FluxKontext, &t),
            RecordOutcome::Status(ProviderStatus::Failed { code: "400".into(), message: "flagged".into() })
        );
        let t = resp(
            json!({"code":200,"msg":"success","data":{"taskId":"t","successFlag":1,"response":{"originImageUrl":"","resultImageUrl":"https://x/k.jpg"}}}),
        );
        assert_eq!(
            classify_record(Family::FluxKontext, &t),
            RecordOutcome::Status(ProviderStatus::Succeeded { urls: vec!["https://x/k.jpg".into()] })
        );
    }

    #[test]
    fn every_callback_shape_yields_the_task_id() {
        let jobs = json!({"code":200,"msg":"Playground task completed successfully.","data":{"taskId":"b31f","state":"success",
            "resultJson":"{\"resultUrls\":[\"https://t/a.png\"]}","creditsConsumed":3}});
        let cb = parse_callback(jobs.to_string().as_bytes()).unwrap();
        assert_eq!(cb.provider_task_id.as_ref().map(ProviderTaskId::as_str), Some("b31f"));
        assert_eq!(cb.shape, "jobs");
        assert_eq!(cb.hint, Some(ProviderStatus::Succeeded { urls: vec!["https://t/a.png".into()] }));

        let failed = json!({"code":501,"msg":"Playground task failed.","data":{"taskId":"bd3a","state":"fail","failCode":"500","failMsg":"Internal server error","resultJson":null}});
        let cb = parse_callback(failed.to_string().as_bytes()).unwrap();
        assert_eq!(cb.hint, Some(ProviderStatus::Failed { code: "500".into(), message: "Internal server error".into() }));

        let gpt = json!({"code":200,"msg":"success","data":{"taskId":"task12345","info":{"result_urls":["https://t/1.png"]}}});
        let cb = parse_callback(gpt.to_string().as_bytes()).unwrap();
        assert_eq!((cb.provider_task_id.as_ref().map(ProviderTaskId::as_str), cb.shape), (Some("task12345"), "gpt4o"));
        let gpt_fail = json!({"code":400,"msg":"Your content was flagged","data":{"taskId":"task12345","info":null}});
        assert!(matches!(parse_callback(gpt_fail.to_string().as_bytes()).unwrap().hint, Some(ProviderStatus::Failed { .. })));

        let flux = json!({"code":200,"msg":"BFL image generated successfully.","data":{"taskId":"f1","info":{"originImageUrl":"","resultImageUrl":"https://t/k.jpg"}}});
        let cb = parse_callback(flux.to_string().as_bytes()).unwrap();
        assert_eq!((cb.provider_task_id.as_ref().map(ProviderTaskId::as_str), cb.shape), (Some("f1"), "flux"));

        let generic = json!({"taskId":"ee9c","code":200,"msg":"Success","data":{"task_id":"ee9c","callbackType":"task_completed"}});
        assert_eq!(
            parse_callback(generic.to_string().as_bytes()).unwrap().provider_task_id.as_ref().map(ProviderTaskId::as_str),
            Some("ee9c")
        );

        let flat = json!({"taskId":"abc","state":"success","resultJson":"{\"resultUrls\":[]}"});
        let cb = parse_callback(flat.to_string().as_bytes()).unwrap();
        assert_eq!((cb.provider_task_id.as_ref().map(ProviderTaskId::as_str), cb.shape), (Some("abc"), "flat"));

        assert!(parse_callback(b"not json").is_none());
        assert!(parse_callback(b"[1,2]").is_none());
        assert_eq!(parse_callback(b"{}").unwrap().provider_task_id, None);
    }
}
