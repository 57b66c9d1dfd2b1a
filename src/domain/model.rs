//! The image models we sell, each one's limits, and how a validated request
//! becomes the body of the right Kie endpoint (field names differ per family).

use super::error::{AppError, AppResult};
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// The "Market" jobs API: `jobs/createTask` + `jobs/recordInfo`.
    Jobs,
    /// `gpt4o-image/generate` + `gpt4o-image/record-info`.
    Gpt4o,
    /// `flux/kontext/generate` + `flux/kontext/record-info`.
    FluxKontext,
}

impl Family {
    pub fn create_path(self) -> &'static str {
        match self {
            Family::Jobs => "/api/v1/jobs/createTask",
            Family::Gpt4o => "/api/v1/gpt4o-image/generate",
            Family::FluxKontext => "/api/v1/flux/kontext/generate",
        }
    }
    pub fn record_path(self) -> &'static str {
        match self {
            Family::Jobs => "/api/v1/jobs/recordInfo",
            Family::Gpt4o => "/api/v1/gpt4o-image/record-info",
            Family::FluxKontext => "/api/v1/flux/kontext/record-info",
        }
    }
}

/// Everything we know about one model: its Kie identity and its limits.
#[derive(Debug, PartialEq, Eq)]
pub struct ModelSpec {
    pub name: &'static str,
    pub family: Family,
    /// `model` sent to Kie (jobs and flux); `None` for 4o.
    pub kie_model: Option<&'static str>,
    pub max_prompt_chars: usize,
    pub min_images: usize,
    pub max_images: usize,
    /// The Kie field that carries input image URLs.
    pub image_field: &'static str,
    pub max_image_bytes: u64,
    pub aspect_ratios: &'static [&'static str],
    /// What we send when the client chose none; `None`: send nothing and let
    /// Kie decide (Flux Kontext keeps an edited image's ratio, else 16:9).
    pub default_aspect_ratio: Option<&'static str>,
    pub resolutions: &'static [&'static str],
    /// Our spelling (`png`, `jpeg`).
    pub formats: &'static [&'static str],
    pub default_format: &'static str,
    /// Kie's spelling of `jpeg` for this model (`jpeg` or `jpg`).
    pub kie_jpeg: &'static str,
    pub default_price: u32,
}

const MB: u64 = 1024 * 1024;
const BANANA_RATIOS: &[&str] = &["1:1", "9:16", "16:9", "3:4", "4:3", "3:2", "2:3", "5:4", "4:5", "21:9", "auto"];
const PRO_RATIOS: &[&str] = &["1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9", "auto"];
const BANANA2_RATIOS: &[&str] =
    &["1:1", "1:4", "1:8", "2:3", "3:2", "3:4", "4:1", "4:3", "4:5", "5:4", "8:1", "9:16", "16:9", "21:9", "auto"];
const GPT4O_RATIOS: &[&str] = &["1:1", "3:2", "2:3"];
const FLUX_RATIOS: &[&str] = &["21:9", "16:9", "4:3", "1:1", "3:4", "9:16"];
const RESOLUTIONS: &[&str] = &["1K", "2K", "4K"];
const PNG_JPEG: &[&str] = &["png", "jpeg"];

pub static MODELS: &[ModelSpec] = &[
    ModelSpec {
        name: "nano-banana",
        family: Family::Jobs,
        kie_model: Some("google/nano-banana"),
        max_prompt_chars: 5000,
        min_images: 0,
        max_images: 0,
        image_field: "image_urls",
        max_image_bytes: 10 * MB,
        aspect_ratios: BANANA_RATIOS,
        default_aspect_ratio: Some("1:1"),
        resolutions: &[],
        formats: PNG_JPEG,
        default_format: "png",
        kie_jpeg: "jpeg",
        default_price: 2,
    },
    ModelSpec {
        name: "nano-banana-edit",
        family: Family::Jobs,
        kie_model: Some("google/nano-banana-edit"),
        max_prompt_chars: 5000,
        min_images: 1,
        max_images: 10,
        image_field: "image_urls",
        max_image_bytes: 10 * MB,
        aspect_ratios: BANANA_RATIOS,
        default_aspect_ratio: Some("1:1"),
        resolutions: &[],
        formats: PNG_JPEG,
        default_format: "png",
        kie_jpeg: "jpeg",
        default_price: 2,
    },
    ModelSpec {
        name: "nano-banana-pro",
        family: Family::Jobs,
        kie_model: Some("nano-banana-pro"),
        max_prompt_chars: 10000,
        min_images: 0,
        max_images: 8,
        image_field: "image_input",
        max_image_bytes: 30 * MB,
        aspect_ratios: PRO_RATIOS,
        default_aspect_ratio: Some("1:1"),
        resolutions: RESOLUTIONS,
        formats: PNG_JPEG,
        default_format: "png",
        kie_jpeg: "jpg",
        default_price: 6,
    },
    ModelSpec {
        name: "nano-banana-2",
        family: Family::Jobs,
        kie_model: Some("nano-banana-2"),
        max_prompt_chars: 20000,
        min_images: 0,
        max_images: 14,
        image_field: "image_input",
        max_image_bytes: 30 * MB,
        aspect_ratios: BANANA2_RATIOS,
        default_aspect_ratio: Some("auto"),
        resolutions: RESOLUTIONS,
        formats: PNG_JPEG,
        default_format: "jpeg",
        kie_jpeg: "jpg",
        default_price: 4,
    },
    ModelSpec {
        name: "gpt-4o",
        family: Family::Gpt4o,
        kie_model: None,
        max_prompt_chars: 5000,
        min_images: 0,
        max_images: 5,
        image_field: "filesUrl",
        max_image_bytes: 25 * MB,
        aspect_ratios: GPT4O_RATIOS,
        default_aspect_ratio: Some("1:1"),
        resolutions: &[],
        formats: &["png"],
        default_format: "png",
        kie_jpeg: "jpeg",
        default_price: 3,
    },
    ModelSpec {
        name: "flux-kontext-pro",
        family: Family::FluxKontext,
        kie_model: Some("flux-kontext-pro"),
        max_prompt_chars: 5000,
        min_images: 0,
        max_images: 1,
        image_field: "inputImage",
        max_image_bytes: 10 * MB,
        aspect_ratios: FLUX_RATIOS,
        default_aspect_ratio: None,
        resolutions: &[],
        formats: PNG_JPEG,
        default_format: "jpeg",
        kie_jpeg: "jpeg",
        default_price: 2,
    },
    ModelSpec {
        name: "flux-kontext-max",
        family: Family::FluxKontext,
        kie_model: Some("flux-kontext-max"),
        max_prompt_chars: 5000,
        min_images: 0,
        max_images: 1,
        image_field: "inputImage",
        max_image_bytes: 10 * MB,
        aspect_ratios: FLUX_RATIOS,
        default_aspect_ratio: None,
        resolutions: &[],
        formats: PNG_JPEG,
        default_format: "jpeg",
        kie_jpeg: "jpeg",
        default_price: 4,
    },
];

pub fn model_names() -> Vec<&'static str> {
    MODELS.iter().map(|m| m.name).collect()
}

/// Finds a model by our name; a wrong name is a 422 listing the valid ones.
pub fn find_model(name: &str) -> AppResult<&'static ModelSpec> {
    MODELS
        .iter()
        .find(|m| m.name == name)
        .ok_or_else(|| AppError::validation_allowed("model", format!("Unknown model '{}'.", truncate(name, 64)), &model_names()))
}

impl ModelSpec {
    /// The environment variable that overrides this model's price.
    pub fn price_var(&self) -> String {
        format!("PRICE_{}", self.name.to_ascii_uppercase().replace('-', "_"))
    }
}

/// What a client asked for, before validation (fields as strings, as received).
#[derive(Debug, Default, Clone)]
pub struct GenerationRequest {
    pub model: Option<String>,
    pub prompt: Option<String>,
    pub mode: Option<String>,
    pub aspect_ratio: Option<String>,
    pub resolution: Option<String>,
    pub output_format: Option<String>,
    /// How many images the client sends (uploads plus URLs).
    pub image_count: usize,
}

/// A request that passed every check for its model, with defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    pub model: &'static ModelSpec,
    pub prompt: String,
    /// `None` only where the model has no default we send (see `ModelSpec`).
    pub aspect_ratio: Option<String>,
    pub resolution: Option<String>,
    pub output_format: String,
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

impl GenerationRequest {
    /// Checks everything that can be checked before money moves.
    pub fn validate(&self) -> AppResult<Generation> {
        let model_name = non_empty(&self.model).ok_or_else(|| AppError::validation_allowed("model", "Choose a model.", &model_names()))?;
        let model = find_model(model_name)?;

        let prompt = non_empty(&self.prompt).ok_or_else(|| AppError::validation("prompt", "Write a prompt describing the image."))?;
        let chars = prompt.chars().count();
        if chars > model.max_prompt_chars {
            return Err(AppError::validation(
                "prompt",
                format!("The prompt has {chars} characters; {} accepts at most {}.", model.name, model.max_prompt_chars),
            )
            .with_details(json!({"field": "prompt", "max_chars": model.max_prompt_chars, "chars": chars})));
        }

        if let Some(mode) = non_empty(&self.mode) {
            match mode {
                "text-to-image" if self.image_count > 0 => return Err(AppError::validation("mode", "Mode text-to-image takes no images.")),
                "image-to-image" if self.image_count == 0 => {
                    return Err(AppError::validation("image", "Mode image-to-image needs at least one image."))
                }
                "text-to-image" | "image-to-image" => {}
                _ => return Err(AppError::validation_allowed("mode", "Unknown mode.", &["text-to-image", "image-to-image"])),
            }
        }

        if self.image_count < model.min_images || self.image_count > model.max_images {
            let message = match (model.min_images, model.max_images) {
                (_, 0) => format!("{} generates from text only; remove the images.", model.name),
                (min, max) if min == max => format!("{} needs exactly {min} image(s).", model.name),
                (min, max) => format!("{} takes {min} to {max} images; you sent {}.", model.name, self.image_count),
            };
            return Err(AppError::validation("image", message).with_details(json!({
                "field": "image", "min": model.min_images, "max": model.max_images, "count": self.image_count
            })));
        }

        let aspect_ratio = match non_empty(&self.aspect_ratio) {
            None => model.default_aspect_ratio.map(str::to_string),
            Some(r) if model.aspect_ratios.contains(&r) => Some(r.to_string()),
            Some(r) => {
                return Err(AppError::validation_allowed(
                    "aspect_ratio",
                    format!("{} does not support aspect ratio '{}'.", model.name, truncate(r, 16)),
                    model.aspect_ratios,
                ))
            }
        };

        let resolution = match non_empty(&self.resolution) {
            None if model.resolutions.is_empty() => None,
            None => model.resolutions.first().map(|r| r.to_string()),
            Some(r) => {
                let upper = r.to_ascii_uppercase();
                if model.resolutions.contains(&upper.as_str()) {
                    Some(upper)
                } else if model.resolutions.is_empty() {
                    return Err(AppError::validation_allowed("resolution", format!("{} has no resolution setting.", model.name), &[]));
                } else {
                    return Err(AppError::validation_allowed(
                        "resolution",
                        format!("{} does not support resolution '{}'.", model.name, truncate(r, 16)),
                        model.resolutions,
                    ));
                }
            }
        };

        let output_format = match non_empty(&self.output_format).map(str::to_ascii_lowercase) {
            None => model.default_format.to_string(),
            Some(f) => {
                let f = if f == "jpg" { "jpeg".to_string() } else { f };
                if model.formats.contains(&f.as_str()) {
                    f
                } else {
                    return Err(AppError::validation_allowed(
                        "output_format",
                        format!("{} does not produce '{}'.", model.name, truncate(&f, 16)),
                        model.formats,
                    ));
                }
            }
        };

        Ok(Generation { model, prompt: prompt.to_string(), aspect_ratio, resolution, output_format })
    }
}

impl Generation {
    /// The JSON body of the create call for this model's Kie family.
    pub fn kie_create_body(&self, image_urls: &[String], callback_url: Option<&str>) -> Value {
        let m = self.model;
        let kie_format = if self.output_format == "jpeg" { m.kie_jpeg } else { "png" };
        let mut body = Map::new();
        match m.family {
            Family::Jobs => {
                let mut input = Map::new();
                input.insert("prompt".into(), json!(self.prompt));
                if m.max_images > 0 && !image_urls.is_empty() {
                    input.insert(m.image_field.into(), json!(image_urls));
                }
                if let Some(ratio) = &self.aspect_ratio {
                    input.insert("aspect_ratio".into(), json!(ratio));
                }
                if let Some(r) = &self.resolution {
                    input.insert("resolution".into(), json!(r));
                }
                input.insert("output_format".into(), json!(kie_format));
                body.insert("model".into(), json!(m.kie_model));
                body.insert("input".into(), Value::Object(input));
            }
            Family::Gpt4o => {
                body.insert("prompt".into(), json!(self.prompt));
                if let Some(ratio) = &self.aspect_ratio {
                    body.insert("size".into(), json!(ratio));
                }
                if !image_urls.is_empty() {
                    body.insert("filesUrl".into(), json!(image_urls));
                }
            }
            Family::FluxKontext => {
                body.insert("prompt".into(), json!(self.prompt));
                if let Some(first) = image_urls.first() {
                    body.insert("inputImage".into(), json!(first));
                }
                // Kie: without aspectRatio an edit keeps its input's ratio.
                if let Some(ratio) = &self.aspect_ratio {
                    body.insert("aspectRatio".into(), json!(ratio));
                }
                body.insert("outputFormat".into(), json!(kie_format));
                body.insert("model".into(), json!(m.kie_model));
            }
        }
        if let Some(cb) = callback_url {
            body.insert("callBackUrl".into(), json!(cb));
        }
        Value::Object(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(model: &str, prompt: &str, images: usize) -> GenerationRequest {
        GenerationRequest { model: Some(model.into()), prompt: Some(prompt.into()), image_count: images, ..Default::default() }
    }

    #[test]
    fn unknown_model_lists_the_valid_ones() {
        let e = req("dall-e", "x", 0).validate().unwrap_err();
        assert_eq!(e.status(), 422);
        let allowed = e.details.unwrap()["allowed"].clone();
        assert_eq!(allowed.as_array().unwrap().len(), MODELS.len());
    }

    #[test]
    fn missing_prompt_is_422_on_prompt() {
        let e = req("nano-banana", "   ", 0).validate().unwrap_err();
        assert_eq!(e.details.unwrap()["field"], "prompt");
    }

    #[test]
    fn prompt_length_is_per_model_and_counts_characters() {
        let long = "é".repeat(5001);
        assert!(req("nano-banana", &long, 0).validate().is_err());
        assert!(req("nano-banana-pro", &long, 0).validate().is_ok());
        assert!(req("nano-banana-2", &"a".repeat(20001), 0).validate().is_err());
    }

    #[test]
    fn image_counts_follow_the_model() {
        assert!(req("nano-banana", "x", 1).validate().is_err());
        assert!(req("nano-banana-edit", "x", 0).validate().is_err());
        assert!(req("nano-banana-edit", "x", 10).validate().is_ok());
        assert!(req("nano-banana-edit", "x", 11).validate().is_err());
        assert!(req("nano-banana-2", "x", 14).validate().is_ok());
        assert!(req("gpt-4o", "x", 6).validate().is_err());
        assert!(req("flux-kontext-max", "x", 2).validate().is_err());
    }

    #[test]
    fn aspect_ratio_resolution_and_format_are_checked_per_model() {
        let mut r = req("gpt-4o", "x", 0);
        r.aspect_ratio = Some("16:9".into());
        let e = r.validate().unwrap_err();
        assert_eq!(e.details.clone().unwrap()["field"], "aspect_ratio");
        assert_eq!(e.details.unwrap()["allowed"], json!(["1:1", "3:2", "2:3"]));

        let mut r = req("nano-banana", "x", 0);
        r.resolution = Some("4K".into());
        assert_eq!(r.validate().unwrap_err().details.unwrap()["field"], "resolution");

        let mut r = req("nano-banana-pro", "x", 0);
        r.resolution = Some("2k".into());
        r.output_format = Some("jpg".into());
        let g = r.validate().unwrap();
        assert_eq!(g.resolution.as_deref(), Some("2K"));
        assert_eq!(g.output_format, "jpeg");

        let mut r = req("gpt-4o", "x", 0);
        r.output_format = Some("jpeg".into());
        assert_eq!(r.validate().unwrap_err().details.unwrap()["field"], "output_format");
    }

    #[test]
    fn mode_must_agree_with_images() {
        let mut r = req("nano-banana-pro", "x", 0);
        r.mode = Some("image-to-image".into());
        assert!(r.validate().is_err());
        r.mode = Some("paint".into());
        assert!(r.validate().is_err());
        r.mode = Some("text-to-image".into());
        assert!(r.validate().is_ok());
    }

    #[test]
    fn defaults_follow_kie_docs() {
        let g = req("nano-banana-2", "x", 0).validate().unwrap();
        assert_eq!((g.aspect_ratio.as_deref(), g.resolution.as_deref(), g.output_format.as_str()), (Some("auto"), Some("1K"), "jpeg"));
        // Flux Kontext: no ratio chosen, none sent (an edit keeps its input's ratio; text defaults to 16:9 at Kie).
        let g = req("flux-kontext-pro", "x", 1).validate().unwrap();
        assert_eq!(g.aspect_ratio, None);
        assert!(g.kie_create_body(&["https://w.example/in.png".into()], None).get("aspectRatio").is_none());
        let mut r = req("flux-kontext-pro", "x", 1);
        r.aspect_ratio = Some("3:4".into());
        assert_eq!(r.validate().unwrap().kie_create_body(&[], None)["aspectRatio"], "3:4");
    }

    #[test]
    fn kie_bodies_use_each_family_field_names() {
        let urls = vec!["https://w.example/files/in/a.png".to_string()];
        let mut r = req("nano-banana-pro", "cat", 1);
        r.output_format = Some("jpeg".into());
        let b = r.validate().unwrap().kie_create_body(&urls, Some("https://w.example/cb"));
        assert_eq!(b["model"], "nano-banana-pro");
        assert_eq!(b["input"]["image_input"], json!(urls));
        assert_eq!(b["input"]["output_format"], "jpg");
        assert_eq!(b["input"]["resolution"], "1K");
        assert_eq!(b["callBackUrl"], "https://w.example/cb");

        let mut r = req("nano-banana-edit", "cat", 1);
        r.output_format = Some("jpeg".into());
        let b = r.validate().unwrap().kie_create_body(&urls, None);
        assert_eq!(b["model"], "google/nano-banana-edit");
        assert_eq!(b["input"]["image_urls"], json!(urls));
        assert_eq!(b["input"]["output_format"], "jpeg");
        assert!(b.get("callBackUrl").is_none());
        assert!(b["input"].get("resolution").is_none());

        let b = req("gpt-4o", "cat", 1).validate().unwrap().kie_create_body(&urls, None);
        assert_eq!(b["size"], "1:1");
        assert_eq!(b["filesUrl"], json!(urls));
        assert!(b.get("model").is_none());

        let b = req("flux-kontext-max", "cat", 1).validate().unwrap().kie_create_body(&urls, None);
        assert_eq!(b["inputImage"], urls[0]);
        assert!(b.get("aspectRatio").is_none());
        assert_eq!(b["outputFormat"], "jpeg");
        assert_eq!(b["model"], "flux-kontext-max");
    }

    #[test]
    fn price_vars_are_derived_from_names() {
        assert_eq!(find_model("nano-banana-2").unwrap().price_var(), "PRICE_NANO_BANANA_2");
        assert_eq!(find_model("gpt-4o").unwrap().price_var(), "PRICE_GPT_4O");
    }
}
