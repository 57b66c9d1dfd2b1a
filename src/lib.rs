#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]
//! An image-generation backend on Cloudflare Workers that sells Kie AI's image
//! models for credits. See README.md for the map of this crate.

pub mod build_info;
pub mod domain;

#[cfg(target_arch = "wasm32")]
mod adapters;
#[cfg(target_arch = "wasm32")]
mod cron;
#[cfg(target_arch = "wasm32")]
mod http;
#[cfg(target_arch = "wasm32")]
mod monitoring;
#[cfg(target_arch = "wasm32")]
mod pipeline;

#[cfg(target_arch = "wasm32")]
mod entry {
    use worker::{event, web_sys, Context, Env, Response, Result, ScheduleContext, ScheduledEvent};

    #[event(start)]
    fn start() {
        console_error_panic_hook::set_once();
    }

    #[event(fetch)]
    async fn fetch(req: web_sys::Request, env: Env, ctx: Context) -> Result<Response> {
        Ok(crate::http::handle(req, env, ctx).await)
    }

    #[event(scheduled)]
    async fn scheduled(event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
        crate::cron::run(env, event.cron()).await;
    }
}
