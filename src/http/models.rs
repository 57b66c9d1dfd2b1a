//! `GET /api/models`: every model with this deployment's price and limits, so
//! clients (the page included) never carry a copy that can drift.

use super::ctx::Ctx;
use super::request::Request;
use super::response::Response;
use crate::domain::error::AppResult;
use crate::domain::model::MODELS;
use serde_json::{json, Value};

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
    Ok(Response::json(200, &json!({ "models": models, "max_body_bytes": cfg.max_body_bytes }))
        .with_header("Cache-Control", "public, max-age=60"))
}
