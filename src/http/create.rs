//! `POST /api/create/ai-image`: validate everything, store uploads, reserve the
//! price together with the task, then hand it to Kie (or queue it).

use super::files::{signed_url, store_input};
use super::{authenticate, check_length, json_response, read_json, Ctx};
use crate::domain::error::{AppError, AppResult, ErrorCode};
use crate::domain::image::ImageKind;
use crate::domain::model::{Generation, GenerationRequest};
use crate::domain::signature::{base32, new_id, sha256_hex, verify_file_signature};
use crate::domain::task::{StoredInput, TaskRecord};
use crate::domain::urls::check_image_url;
use crate::edge::store::{self, NewTask, Reservation};
use crate::pipeline::{now_ms, Submission};
use serde_json::{json, Value};
use std::time::Duration;
use worker::{Delay, FormEntry, Request, Response};

const MAX_JSON_BYTES: u64 = 256 * 1024;

struct Upload {
    bytes: Vec<u8>,
    kind: ImageKind,
}

struct Parsed {
    request: GenerationRequest,
    image_urls: Vec<String>,
    uploads: Vec<Upload>,
}

fn string_field(body: &Value, name: &str) -> AppResult<Option<String>> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(AppError::invalid_request(format!("'{name}' must be a string.")).with_details(json!({ "field": name }))),
    }
}

fn parse_json(body: &Value) -> AppResult<Parsed> {
    let image_urls = match body.get("image_urls") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str().map(|s| s.trim().to_string()).ok_or_else(|| {
                    AppError::invalid_request(format!("image_urls[{i}] must be a string.")).with_details(json!({ "field": format!("image_urls[{i}]") }))
                })
            })
            .collect::<AppResult<_>>()?,
        Some(_) => return Err(AppError::invalid_request("'image_urls' must be an array of URLs.").with_details(json!({ "field": "image_urls" }))),
    };
    if image_urls.len() > 20 {
        return Err(AppError::validation("image_urls", "Too many image URLs."));
    }
    let request = GenerationRequest {
        model: string_field(body, "model")?.or(string_field(body, "type")?),
        prompt: string_field(body, "prompt")?,
        mode: string_field(body, "mode")?,
        aspect_ratio: string_field(body, "aspect_ratio")?,
        resolution: string_field(body, "resolution")?,
        output_format: string_field(body, "output_format")?,
        image_count: image_urls.len(),
    };
    Ok(Parsed { request, image_urls, uploads: Vec::new() })
}

async fn parse_multipart(req: &mut Request, max_body: u64, max_image: u64) -> AppResult<Parsed> {
    check_length(req, max_body)?;
    let form = req
        .form_data()
        .await
        .map_err(|e| AppError::invalid_request("The multipart body could not be read.").with_internal(e.to_string()))?;
    let field = |name: &str| form.get_field(name);
    let mut files = Vec::new();
    for name in ["image", "images", "image[]"] {
        for entry in form.get_all(name).unwrap_or_default() {
            match entry {
                FormEntry::File(f) => files.push(f),
                FormEntry::Field(s) if s.is_empty() => {}
                FormEntry::Field(_) => {
                    return Err(AppError::invalid_request("'image' parts must be files.").with_details(json!({ "field": "image" })))
                }
            }
        }
    }
    let request = GenerationRequest {
        model: field("model").or_else(|| field("type")),
        prompt: field("prompt"),
        mode: field("mode"),
        aspect_ratio: field("aspect_ratio"),
        resolution: field("resolution"),
        output_format: field("output_format"),
        image_count: files.len(),
    };
    // Validate the model's limits (count included) before reading any image.
    let generation = request.validate()?;
    let limit = max_image.min(generation.model.max_image_bytes);
    let mut uploads = Vec::new();
    for (i, file) in files.iter().enumerate() {
        if file.size() as u64 > limit {
            return Err(AppError::new(ErrorCode::PayloadTooLarge, format!("Image {} is larger than {} MB.", i + 1, limit / (1024 * 1024)))
                .with_details(json!({ "field": "image", "index": i, "max_bytes": limit, "bytes": file.size() })));
        }
        let bytes = file.bytes().await.map_err(|e| AppError::invalid_request("An image could not be read.").with_internal(e.to_string()))?;
        let kind = ImageKind::sniff(&bytes).ok_or_else(|| {
            AppError::new(ErrorCode::UnsupportedMediaType, format!("Image {} is not a JPEG, PNG or WebP file.", i + 1))
                .with_details(json!({ "field": "image", "index": i, "allowed": ["image/jpeg", "image/png", "image/webp"] }))
        })?;
        uploads.push(Upload { bytes, kind });
    }
    Ok(Parsed { request, image_urls: Vec::new(), uploads })
}

fn idempotency_key(req: &Request) -> AppResult<Option<String>> {
    let Some(key) = req.headers().get("Idempotency-Key").ok().flatten() else { return Ok(None) };
    let ok = (1..=128).contains(&key.len()) && key.bytes().all(|b| (0x21..=0x7e).contains(&b));
    if !ok {
        return Err(AppError::invalid_request("Idempotency-Key must be 1 to 128 printable characters without spaces.")
            .with_details(json!({ "field": "Idempotency-Key" })));
    }
    Ok(Some(key))
}

/// A fingerprint of what was asked, to tell a replay from a different request.
fn request_hash(g: &Generation, urls: &[String], uploads: &[Upload]) -> String {
    let files: Vec<String> = uploads.iter().map(|u| sha256_hex(&u.bytes)).collect();
    let canonical = json!([g.model.name, g.prompt, g.aspect_ratio, g.resolution, g.output_format, urls, files]);
    sha256_hex(canonical.to_string().as_bytes())
}

/// Our own `/files/` URLs must carry a valid signature; others must be public.
fn check_urls(ctx: &Ctx, urls: &[String], secret: &str, public_origin: &str) -> AppResult<()> {
    let now_s = now_ms() / 1000;
    for (i, url) in urls.iter().enumerate() {
        let ours = [public_origin, ctx.origin.as_str()]
            .iter()
            .find_map(|o| url.strip_prefix(&format!("{o}/files/")));
        if let Some(rest) = ours {
            let (key, query) = rest.split_once('?').unwrap_or((rest, ""));
            let q = super::parse_query(query);
            let get = |n: &str| q.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
            if verify_file_signature(secret, &super::percent_decode(key), get("exp"), get("sig"), now_s).is_err() {
                return Err(AppError::validation(&format!("image_urls[{i}]"), "This link to our storage is not signed or has expired; upload the image instead."));
            }
            continue;
        }
        check_image_url(i, url)?;
    }
    Ok(())
}

fn replay_or_conflict(existing: TaskRecord, hash: &str, ctx: &Ctx, file_url: &dyn Fn(&str) -> String) -> AppResult<Response> {
    if existing.request_hash.as_deref() == Some(hash) {
        ctx.log.set("task_id", &existing.id);
        ctx.log.info("create.replay", "Idempotency-Key replay: returning the existing task", json!({ "task_id": existing.id }));
        json_response(200, &json!({ "task": existing.view(file_url) }))
    } else {
        Err(AppError::new(ErrorCode::IdempotencyConflict, "This Idempotency-Key was already used with a different request.")
            .with_details(json!({ "task_id": existing.id })))
    }
}

pub async fn create(ctx: &Ctx, mut req: Request) -> AppResult<Response> {
    let cfg = ctx.config()?;
    let pipeline = ctx.pipeline()?;
    let db = &pipeline.db;
    let user = authenticate(ctx, &req, db).await?;
    let idem = idempotency_key(&req)?;

    let now = now_ms();
    let minute = now / 60_000;
    let count = store::hit_rate_window(db, &user.id, minute * 60_000).await?;
    if count > i64::from(cfg.rate_limit_per_minute) {
        let retry = (60 - (now / 1000) % 60).max(1) as u32;
        return Err(AppError::new(ErrorCode::RateLimited, format!("You can create {} tasks a minute; try again shortly.", cfg.rate_limit_per_minute))
            .retry_after(retry)
            .with_details(json!({ "limit": "per_minute", "limit_per_minute": cfg.rate_limit_per_minute })));
    }

    let content_type = req.headers().get("Content-Type").ok().flatten().unwrap_or_default().to_ascii_lowercase();
    let parsed = if content_type.starts_with("multipart/form-data") {
        parse_multipart(&mut req, cfg.max_body_bytes, cfg.max_upload_bytes).await?
    } else if content_type.starts_with("application/json") {
        parse_json(&read_json(&mut req, MAX_JSON_BYTES).await?)?
    } else {
        return Err(AppError::new(ErrorCode::UnsupportedMediaType, "Send application/json or multipart/form-data."));
    };
    let generation = parsed.request.validate()?;
    let origin = ctx.public_origin(&cfg);
    check_urls(ctx, &parsed.image_urls, &cfg.file_url_secret, &origin)?;

    let file_url = ctx.result_url(&cfg);

    let hash = request_hash(&generation, &parsed.image_urls, &parsed.uploads);
    if let Some(key) = &idem {
        if let Some(existing) = store::task_by_idempotency_key(db, &user.id, key).await? {
            return replay_or_conflict(existing, &hash, ctx, &file_url);
        }
    }

    let price = i64::from(cfg.price(generation.model.name));
    if user.credits < price {
        return Err(insufficient(price, user.credits));
    }

    let mut inputs = Vec::new();
    for upload in &parsed.uploads {
        let key = store_input(&ctx.env, &upload.bytes, upload.kind).await?;
        let url = signed_url(&origin, &cfg.file_url_secret, &key, cfg.input_url_ttl_s, now);
        inputs.push(StoredInput { key: Some(key), url: Some(url) });
    }
    inputs.extend(parsed.image_urls.iter().map(|u| StoredInput { key: None, url: Some(u.clone()) }));
    let inputs_json = serde_json::to_string(&inputs).map_err(|e| AppError::internal(e.to_string()))?;

    let id = new_id("tsk", &super::random_bytes::<16>()?);
    let token = base32(&super::random_bytes::<20>()?);
    ctx.log.set("task_id", &id);
    let new_task = NewTask {
        id: &id,
        user_id: &user.id,
        model: generation.model.name,
        prompt: &generation.prompt,
        aspect_ratio: &generation.aspect_ratio,
        resolution: generation.resolution.as_deref(),
        output_format: &generation.output_format,
        inputs_json: &inputs_json,
        credits: price,
        callback_token: &token,
        idempotency_key: idem.as_deref(),
        request_hash: &hash,
        now,
        deadline_at: now + cfg.task_deadline_s * 1000,
    };
    match store::reserve_task(db, &new_task, i64::from(cfg.max_active_tasks)).await? {
        Reservation::Reserved => {}
        Reservation::DuplicateKey => {
            let key = idem.as_deref().unwrap_or_default();
            return match store::task_by_idempotency_key(db, &user.id, key).await? {
                Some(existing) => replay_or_conflict(existing, &hash, ctx, &file_url),
                None => Err(AppError::internal("idempotency constraint without a task")),
            };
        }
        Reservation::Refused { balance, active } => {
            if balance < price {
                return Err(insufficient(price, balance));
            }
            return Err(AppError::new(
                ErrorCode::RateLimited,
                format!("You already have {active} unfinished tasks; wait for one to finish."),
            )
            .retry_after(5)
            .with_details(json!({ "limit": "active_tasks", "active_tasks": active, "max_active_tasks": cfg.max_active_tasks })));
        }
    }
    ctx.log.info(
        "task.created",
        "task created and its price reserved",
        json!({ "task_id": id, "model": generation.model.name, "credits": price, "inputs": inputs.len() }),
    );

    let task = new_task.record();
    let submission = pipeline.submit(&task).await?;
    if let Submission::Deferred { next_attempt_at, .. } = submission {
        let p = pipeline.clone();
        let task_id = id.clone();
        ctx.in_background(async move { retry_submission(p, task_id, next_attempt_at).await });
    }
    let task = store::task_by_id(db, &id).await?.ok_or_else(|| AppError::internal("task vanished after submit"))?;
    let body = json!({ "task": task.view(&file_url) });
    if submission == Submission::Failed {
        return Err(AppError::new(ErrorCode::UpstreamError, "The image service refused the task. Your credits were returned.")
            .with_details(body));
    }
    json_response(202, &body)
}

fn insufficient(needed: i64, balance: i64) -> AppError {
    AppError::new(ErrorCode::InsufficientCredits, format!("You need {needed} credits, you have {balance}."))
        .with_details(json!({ "needed": needed, "balance": balance }))
}

/// Keeps trying a deferred submission for a little while after the response;
/// the cron picks up whatever is still queued after that.
async fn retry_submission(p: crate::pipeline::Pipeline, task_id: String, mut next_at: i64) {
    let give_up = now_ms() + 25_000;
    while next_at < give_up {
        let wait = (next_at - now_ms()).clamp(50, 10_000) as u64;
        Delay::from(Duration::from_millis(wait)).await;
        let Ok(Some(task)) = store::task_by_id(&p.db, &task_id).await else { return };
        match p.submit(&task).await {
            Ok(Submission::Deferred { next_attempt_at, .. }) => next_at = next_attempt_at,
            _ => return,
        }
    }
}
