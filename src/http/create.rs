//! `POST /api/create/ai-image`: authenticate, read and check the request,
//! replay an Idempotency-Key, store the uploads, reserve the price together
//! with the task, then hand it to Kie (or queue it).

use super::ctx::Ctx;
use super::extract::{read_form, read_json};
use super::request::Request;
use super::response::Response;
use super::{auth, json_response};
use crate::adapters::clock::{now_ms, random_bytes};
use crate::adapters::d1::Db;
use crate::adapters::files::Files;
use crate::adapters::outbound;
use crate::adapters::store::tasks::{self, Reservation};
use crate::adapters::store::users::{self, User};
use crate::adapters::streams::{settle, sha256_hex_of};
use crate::domain::config::Config;
use crate::domain::error::{AppError, AppResult, ErrorCode};
use crate::domain::ids::{IdempotencyKey, TaskId};
use crate::domain::image::{ImageKind, ImageProbe, Probe, PROBE_LIMIT};
use crate::domain::model::{Generation, GenerationRequest};
use crate::domain::query::{parse_query, percent_decode};
use crate::domain::signature::{base32, sha256_hex, signed_file_url, verify_file_signature};
use crate::domain::task::{NewTask, StoredInput, Task};
use crate::domain::urls::check_public_url;
use crate::pipeline::{Pipeline, Submission};
use serde_json::{json, Value};
use std::time::Duration;
use wasm_bindgen::JsCast;
use worker::js_sys::Uint8Array;
use worker::web_sys::File;
use worker::Delay;

const MAX_JSON_BYTES: u64 = 256 * 1024;

/// An uploaded image: still a JavaScript File (its bytes never enter wasm),
/// checked by its header and fingerprinted.
struct Upload {
    file: File,
    kind: ImageKind,
    sha256: String,
}

/// What the client asked for, checked against its model.
struct Intake {
    generation: Generation,
    image_urls: Vec<String>,
    uploads: Vec<Upload>,
}

impl Intake {
    /// A fingerprint of what was asked, to tell a replay from a different request.
    fn fingerprint(&self) -> String {
        let g = &self.generation;
        let files: Vec<&str> = self.uploads.iter().map(|u| u.sha256.as_str()).collect();
        let canonical = json!([g.model.name, g.prompt, g.aspect_ratio, g.resolution, g.output_format, self.image_urls, files]);
        sha256_hex(canonical.to_string().as_bytes())
    }
}

pub async fn create(ctx: &Ctx, req: Request) -> AppResult<Response> {
    let cfg = ctx.config()?;
    let pipeline = ctx.pipeline()?;
    let db = &pipeline.db;
    let user = auth::user(ctx, &req, db).await?;
    super::billing::ensure_not_owing(&user)?;
    let idempotency_key = req.header("Idempotency-Key").map(|k| IdempotencyKey::parse(&k)).transpose()?;
    count_against_rate_limit(db, &user, &cfg).await?;
    let intake = read_intake(ctx, &req, &cfg).await?;
    let fingerprint = intake.fingerprint();
    let price = i64::from(cfg.price(intake.generation.model.name));
    // Everything that can refuse is decided before anything is stored.
    let standing = tasks::standing(db, &user.id, idempotency_key.as_ref()).await?;
    if let (true, Some(key)) = (standing.duplicate, &idempotency_key) {
        return replay(ctx, &cfg, db, &user, key, &fingerprint).await;
    }
    if standing.credits < price || standing.active >= i64::from(cfg.max_active_tasks) {
        return Err(refusal(&cfg, price, standing.credits, standing.active));
    }
    let inputs = store_inputs(ctx, &cfg, &intake).await?;
    let task = new_task(&cfg, &user, intake.generation, inputs, price, fingerprint.clone())?;
    ctx.log.set("task_id", task.id.as_str());
    let reservation = tasks::reserve(db, &task, idempotency_key.as_ref(), i64::from(cfg.max_active_tasks)).await?;
    if !matches!(reservation, Reservation::Reserved) {
        // Lost a race since the check above: nothing is kept of this request.
        forget_inputs(ctx, &task.inputs).await;
    }
    match (reservation, &idempotency_key) {
        (Reservation::Reserved, _) => {}
        (Reservation::DuplicateKey, Some(key)) => return replay(ctx, &cfg, db, &user, key, &fingerprint).await,
        (Reservation::DuplicateKey, None) => return Err(AppError::internal("duplicate key without a key")),
        (Reservation::Refused { balance, active }, _) => return Err(refusal(&cfg, price, balance, active)),
    }
    ctx.log.info(
        "task.created",
        "task created and its price reserved",
        json!({ "task_id": task.id, "model": task.model, "credits": price, "inputs": task.inputs.len() }),
    );
    submit_and_respond(ctx, &cfg, &pipeline, task).await
}

/// Counts this create in the user's minute; over the limit is 429.
async fn count_against_rate_limit(db: &Db, user: &User, cfg: &Config) -> AppResult<()> {
    let now = now_ms();
    let count = users::hit_rate_window(db, &user.id, now / 60_000 * 60_000).await?;
    if count <= i64::from(cfg.rate_limit_per_minute) {
        return Ok(());
    }
    let retry = (60 - (now / 1000) % 60).max(1) as u32;
    Err(AppError::new(ErrorCode::RateLimited, format!("You can create {} tasks a minute; try again shortly.", cfg.rate_limit_per_minute))
        .retry_after(retry)
        .with_details(json!({ "limit": "per_minute", "limit_per_minute": cfg.rate_limit_per_minute })))
}

/// Reads the JSON or multipart body and checks everything that can be checked
/// before money moves.
async fn read_intake(ctx: &Ctx, req: &Request, cfg: &Config) -> AppResult<Intake> {
    let content_type = req.header("Content-Type").unwrap_or_default().to_ascii_lowercase();
    let intake = if content_type.starts_with("multipart/form-data") {
        read_multipart(req, cfg.max_body_bytes, cfg.max_upload_bytes).await?
    } else if content_type.starts_with("application/json") {
        read_json_intake(&read_json(req, MAX_JSON_BYTES).await?)?
    } else {
        return Err(AppError::new(ErrorCode::UnsupportedMediaType, "Send application/json or multipart/form-data."));
    };
    check_image_urls(ctx, cfg, &intake.image_urls)?;
    Ok(intake)
}

fn string_field(body: &Value, name: &str) -> AppResult<Option<String>> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(AppError::invalid_request(format!("'{name}' must be a string.")).with_details(json!({ "field": name }))),
    }
}

fn read_json_intake(body: &Value) -> AppResult<Intake> {
    let image_urls: Vec<String> = match body.get("image_urls") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str().map(|s| s.trim().to_string()).ok_or_else(|| {
                    AppError::invalid_request(format!("image_urls[{i}] must be a string."))
                        .with_details(json!({ "field": format!("image_urls[{i}]") }))
                })
            })
            .collect::<AppResult<_>>()?,
        Some(_) => {
            return Err(AppError::invalid_request("'image_urls' must be an array of URLs.").with_details(json!({ "field": "image_urls" })))
        }
    };
    if image_urls.len() > 20 {
        return Err(AppError::validation("image_urls", "Too many image URLs."));
    }
    let generation = GenerationRequest {
        model: string_field(body, "model")?.or(string_field(body, "type")?),
        prompt: string_field(body, "prompt")?,
        mode: string_field(body, "mode")?,
        aspect_ratio: string_field(body, "aspect_ratio")?,
        resolution: string_field(body, "resolution")?,
        output_format: string_field(body, "output_format")?,
        image_count: image_urls.len(),
    }
    .validate()?;
    Ok(Intake { generation, image_urls, uploads: Vec::new() })
}

/// Multipart: the body is parsed under its cap without entering wasm; the
/// model's limits (image count included) are checked before any image is
/// looked at; each image is checked by size, then by its header.
async fn read_multipart(req: &Request, max_body: u64, max_image: u64) -> AppResult<Intake> {
    let form = read_form(req, max_body).await?;
    let mut files = Vec::new();
    for name in ["image", "images", "image[]"] {
        for entry in form.get_all(name).iter() {
            if let Some(file) = entry.dyn_ref::<File>() {
                files.push(file.clone());
            } else if entry.as_string().is_some_and(|s| !s.is_empty()) {
                return Err(AppError::invalid_request("'image' parts must be files.").with_details(json!({ "field": "image" })));
            }
        }
    }
    let field = |name: &str| form.get(name).as_string();
    let generation = GenerationRequest {
        model: field("model").or_else(|| field("type")),
        prompt: field("prompt"),
        mode: field("mode"),
        aspect_ratio: field("aspect_ratio"),
        resolution: field("resolution"),
        output_format: field("output_format"),
        image_count: files.len(),
    }
    .validate()?;
    let limit = max_image.min(generation.model.max_image_bytes);
    let mut uploads = Vec::new();
    for (i, file) in files.into_iter().enumerate() {
        let size = file.size() as u64;
        if size > limit {
            return Err(AppError::new(ErrorCode::PayloadTooLarge, format!("Image {} is larger than {} MB.", i + 1, limit / (1024 * 1024)))
                .with_details(json!({ "field": "image", "index": i, "max_bytes": limit, "bytes": size })));
        }
        let kind = probe_upload(&file).await?.ok_or_else(|| {
            AppError::new(ErrorCode::UnsupportedMediaType, format!("Image {} is not a JPEG, PNG or WebP image.", i + 1))
                .with_details(json!({ "field": "image", "index": i, "allowed": ["image/jpeg", "image/png", "image/webp"] }))
        })?;
        let sha256 = sha256_hex_of(&file).await?;
        uploads.push(Upload { file, kind, sha256 });
    }
    Ok(Intake { generation, image_urls: Vec::new(), uploads })
}

/// Reads an upload's header, slice by slice, until it is proven an image
/// (or not): at most the probe's limit of bytes enters wasm.
async fn probe_upload(file: &File) -> AppResult<Option<ImageKind>> {
    const SLICE: f64 = 64.0 * 1024.0;
    let mut probe = ImageProbe::new();
    let mut offset = 0.0;
    let size = file.size();
    loop {
        if offset >= size || offset > PROBE_LIMIT as f64 {
            return Ok(match probe.finish() {
                Probe::Valid(info) => Some(info.kind),
                _ => None,
            });
        }
        let slice =
            file.slice_with_f64_and_f64(offset, (offset + SLICE).min(size)).map_err(|e| AppError::internal(format!("slice: {e:?}")))?;
        let bytes = settle(slice.array_buffer(), None)
            .await
            .map_err(|e| AppError::invalid_request("An image could not be read.").with_internal(e.to_string()))?;
        offset += SLICE;
        match probe.feed(&Uint8Array::new(&bytes).to_vec()) {
            Probe::NeedMore => {}
            Probe::Valid(info) => return Ok(Some(info.kind)),
            Probe::Invalid(_) => return Ok(None),
        }
    }
}

/// Image URLs are read as `fetch` (ours and Kie's) will read them: our own
/// `/files/` links must carry a valid signature; every other URL must name a
/// public host (no loopback, private, link-local or other special address,
/// however it is spelled).
fn check_image_urls(ctx: &Ctx, cfg: &Config, urls: &[String]) -> AppResult<()> {
    let now_s = now_ms() / 1000;
    let ours = [outbound::parse_url(&ctx.public_origin(cfg)).map(|u| u.origin), outbound::parse_url(&ctx.origin).map(|u| u.origin)];
    for (i, url) in urls.iter().enumerate() {
        let field = format!("image_urls[{i}]");
        let parsed = outbound::parse_url(url).ok_or_else(|| AppError::validation(&field, "This is not a URL."))?;
        let key = parsed.path.strip_prefix("/files/").filter(|_| ours.iter().flatten().any(|o| *o == parsed.origin));
        let Some(key) = key else {
            check_public_url(&field, &parsed.protocol, &parsed.hostname, url.len())?;
            continue;
        };
        let q = parse_query(&parsed.query);
        let get = |n: &str| q.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        if verify_file_signature(&cfg.file_url_secret, &percent_decode(key), get("exp"), get("sig"), now_s).is_err() {
            return Err(AppError::validation(&field, "This link to our storage is not signed or has expired; upload the image instead."));
        }
    }
    Ok(())
}

/// The same key with the same request returns the same task (200); with a
/// different request it is 409.
async fn replay(ctx: &Ctx, cfg: &Config, db: &Db, user: &User, key: &IdempotencyKey, fingerprint: &str) -> AppResult<Response> {
    let existing = tasks::by_idempotency_key(db, &user.id, key).await?.ok_or_else(|| AppError::internal("duplicate key without a task"))?;
    if existing.request_hash.as_deref() != Some(fingerprint) {
        return Err(AppError::new(ErrorCode::IdempotencyConflict, "This Idempotency-Key was already used with a different request.")
            .with_details(json!({ "task_id": existing.id })));
    }
    ctx.log.set("task_id", existing.id.as_str());
    ctx.log.info("create.replay", "Idempotency-Key replay: returning the existing task", json!({ "task_id": existing.id }));
    json_response(200, &json!({ "task": existing.view(&ctx.result_url(cfg)) }))
}

/// Stores the uploads under unguessable keys, signed for Kie to fetch.
async fn store_inputs(ctx: &Ctx, cfg: &Config, intake: &Intake) -> AppResult<Vec<StoredInput>> {
    let origin = ctx.public_origin(cfg);
    let now = now_ms();
    let mut inputs = Vec::new();
    if !intake.uploads.is_empty() {
        let files = ctx.files()?;
        for upload in &intake.uploads {
            let key = Files::new_input_key(upload.kind)?;
            files.put_blob(&key, &upload.file, upload.kind.content_type()).await?;
            let url = signed_file_url(&origin, &cfg.file_url_secret, &key, cfg.input_url_ttl_s, now);
            inputs.push(StoredInput { key: Some(key), url: Some(url) });
        }
    }
    inputs.extend(intake.image_urls.iter().map(|u| StoredInput { key: None, url: Some(u.clone()) }));
    Ok(inputs)
}

/// Deletes inputs stored for a create that was then refused (best effort,
/// logged: an orphan is an R2 object that a lifecycle rule also removes).
async fn forget_inputs(ctx: &Ctx, inputs: &[StoredInput]) {
    let Ok(files) = ctx.files() else { return };
    for key in inputs.iter().filter_map(|i| i.key.as_deref()) {
        if let Err(e) = files.delete(key).await {
            ctx.log.warn("create.orphan", "could not delete the input of a refused create", json!({ "key": key, "cause": e.internal }));
        }
    }
}

fn new_task(
    cfg: &Config,
    user: &User,
    generation: Generation,
    inputs: Vec<StoredInput>,
    price: i64,
    request_hash: String,
) -> AppResult<Task> {
    let now = now_ms();
    Ok(NewTask {
        id: TaskId::new(&random_bytes::<16>()?),
        user_id: user.id.clone(),
        generation,
        inputs,
        credits: price,
        callback_token: base32(&random_bytes::<20>()?),
        request_hash,
        now,
        deadline_at: now + cfg.task_deadline_s * 1000,
    }
    .into_task())
}

fn insufficient(needed: i64, balance: i64) -> AppError {
    AppError::new(ErrorCode::InsufficientCredits, format!("You need {needed} credits, you have {balance}."))
        .with_details(json!({ "needed": needed, "balance": balance }))
}

/// Why the reservation was refused: the balance (402) or the cap of unfinished tasks (429).
fn refusal(cfg: &Config, price: i64, balance: i64, active: i64) -> AppError {
    if balance < price {
        return insufficient(price, balance);
    }
    AppError::new(ErrorCode::RateLimited, format!("You already have {active} unfinished tasks; wait for one to finish."))
        .retry_after(5)
        .with_details(json!({ "limit": "active_tasks", "active_tasks": active, "max_active_tasks": cfg.max_active_tasks }))
}

/// Hands the task to Kie now; a deferred one keeps being retried in the
/// background. A refused one is 502 carrying the failed, refunded task.
async fn submit_and_respond(ctx: &Ctx, cfg: &Config, pipeline: &Pipeline, task: Task) -> AppResult<Response> {
    let submission = pipeline.submit(&task).await?;
    if let Submission::Deferred { next_attempt_at } = submission {
        let background = pipeline.until(ctx.background_deadline());
        ctx.in_background("retry_submission", retry_submission(background, task.id.clone(), next_attempt_at));
    }
    let task = tasks::existing(&pipeline.db, &task.id).await?;
    let body = json!({ "task": task.view(&ctx.result_url(cfg)) });
    if submission == Submission::Failed {
        return Err(
            AppError::new(ErrorCode::UpstreamError, "The image service refused the task. Your credits were returned.").with_details(body)
        );
    }
    json_response(202, &body)
}

/// Keeps trying a deferred submission while the background window allows a
/// whole create call; the cron picks up whatever is still queued after that.
async fn retry_submission(p: Pipeline, task_id: TaskId, mut next_at: i64) -> AppResult<()> {
    loop {
        let starts_in = next_at - now_ms();
        if p.time_left() - starts_in.max(0) <= p.cfg.kie_timeout_ms as i64 + 1_000 {
            return Ok(());
        }
        let wait = (next_at - now_ms()).clamp(50, 10_000) as u64;
        Delay::from(Duration::from_millis(wait)).await;
        let Some(task) = tasks::by_id(&p.db, &task_id).await? else { return Ok(()) };
        match p.submit(&task).await? {
            Submission::Deferred { next_attempt_at } => next_at = next_attempt_at,
            _ => return Ok(()),
        }
    }
}
