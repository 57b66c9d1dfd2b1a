//! `GET /api/models`: every model with this deployment's price and limits, so
//! clients (the page included) never carry a copy that can drift.

use super::ctx::Ctx;
use super::json_response;
use super::request::Request;
use crate::domain::error::AppResult;
use crate::domain::model::MODELS;
use serde_json::{json, Value};
use worker::Response;

pub async fn list(ctx: &Ctx, _req: Request) -> AppResult<Response> {
    let cfg = ctx.config()?;
    let models: Vec<Value> = MODELS
        .iter()
        .map(|m| {
            json!({ "name": m.name, "price": cfg.price(m.name), "max_prompt_chars": m.max_prompt_chars,
                    "min_images": m.min_images, "max_images": m.max_images,
                    "max_image_bytes": m.max_image_bytes.min(cfg.max_upload_bytes),
                    "aspect_ratios": m.aspect_ratios, "default_aspect_ratio": m.default_aspect_ratio,
                    "resolutions": m.resolutions, "output_formats": m.formats, "default_output_format": m.default_format,
                    "image_types": ["image/jpeg", "image/png", "image/webp"] })
        })
        .collect();
    let resp = json_response(200, &json!({ "models": models, "max_body_bytes": cfg.max_body_bytes }))?;
    let _ = resp.headers().set("Cache-Control", "public, max-age=60");
    Ok(resp)
}
