#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]
//! An image-generation backend on Cloudflare Workers that sells Kie AI's image
//! models for credits. See README.md for the map of this crate.

pub mod build_info;
pub mod domain;
pub mod executor;

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
    use wasm_bindgen::prelude::wasm_bindgen;
    use wasm_bindgen::JsValue;
    use worker::js_sys::Function;
    use worker::worker_sys::Context as JsContext;
    use worker::{event, web_sys, Context, Env, ScheduleContext, ScheduledEvent};

    #[event(start)]
    fn start() {
        console_error_panic_hook::set_once();
    }

    /// Called by `src/entry.mjs` for each request, with the function that
    /// settles the request's promise. The request runs up to its first await
    /// before this returns (see `executor`).
    #[wasm_bindgen]
    pub fn fetch(req: web_sys::Request, env: Env, ctx: JsContext, respond: Function) {
        let answer = crate::adapters::clock::read_once_per_poll(async move {
            let response = crate::http::handle(req, env, Context::new(ctx)).await;
            let _ = respond.call1(&JsValue::UNDEFINED, &response.map(JsValue::from).unwrap_or(JsValue::UNDEFINED));
        });
        crate::executor::start(answer, worker::wasm_bindgen_futures::spawn_local);
    }

    #[event(scheduled)]
    async fn scheduled(event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
        crate::cron::run(env, event.cron()).await;
    }
}
