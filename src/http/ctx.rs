//! Everything a handler needs about the current request: its id, log, route
//! parameters and query, the configuration (read once), and the adapters.

use crate::adapters::clock::now_ms;
use crate::adapters::d1::Db;
use crate::adapters::files::Files;
use crate::adapters::log::Log;
use crate::adapters::metrics;
use crate::adapters::settings;
use crate::domain::config::{Config, ConfigProblem};
use crate::domain::error::{AppError, AppResult, ErrorCode};
use crate::domain::query::parse_query;
use crate::domain::signature::signed_file_url;
use crate::pipeline::Pipeline;
use serde_json::json;
use std::cell::{Cell, OnceCell, RefCell};
use std::future::Future;
use std::rc::Rc;
use worker::{Context, Env};

/// How long work may run after the response: Cloudflare allows 30 s for
/// `waitUntil`; we stop short of that.
pub const BACKGROUND_WINDOW_MS: i64 = 28_000;

pub struct Ctx {
    pub env: Env,
    worker: Rc<Context>,
    pub log: Log,
    pub request_id: String,
    /// `scheme://host[:port]` of this request.
    pub origin: String,
    pub path: String,
    query: Vec<(String, String)>,
    params: Vec<(&'static str, String)>,
    config: OnceCell<Result<Rc<Config>, AppError>>,
    /// `Set-Cookie` values for the response, whatever it turns out to be.
    cookies: RefCell<Vec<String>>,
    /// Errors become an HTML page (a browser navigating through sign-in).
    html_errors: Cell<bool>,
}

/// `503 config_error` naming each missing or invalid setting (never its value).
pub fn config_error(problems: &[ConfigProblem]) -> AppError {
    let names: Vec<&str> = problems.iter().map(|p| p.name.as_str()).collect();
    AppError::new(ErrorCode::ConfigError, format!("This deployment is missing or has invalid settings: {}.", names.join(", ")))
        .with_details(json!({ "settings": problems }))
}

/// `(scheme://host, path, query)` of a URL, without parsing it as a `Url`
/// (the `url` crate would add ~80 KB to the bundle).
fn split_url(url: &str) -> (String, String, String) {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let (host, path_q) = rest.find('/').map(|i| rest.split_at(i)).unwrap_or((rest, "/"));
    let path_q = path_q.split('#').next().unwrap_or("/");
    let (path, query) = path_q.split_once('?').unwrap_or((path_q, ""));
    (format!("{scheme}://{host}"), path.to_string(), query.to_string())
}

impl Ctx {
    pub fn new(env: Env, worker: Context, log: Log, request_id: String, url: &str) -> Ctx {
        let (origin, path, query) = split_url(url);
        let query = parse_query(&query);
        Ctx {
            env,
            worker: Rc::new(worker),
            log,
            request_id,
            origin,
            path,
            query,
            params: Vec::new(),
            config: OnceCell::new(),
            cookies: RefCell::new(Vec::new()),
            html_errors: Cell::new(false),
        }
    }

    pub fn set_params(&mut self, params: Vec<(&'static str, String)>) {
        self.params = params;
    }

    /// A route parameter (`:id`, `*key`) as it appeared in the path.
    pub fn param(&self, name: &str) -> &str {
        self.params.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str()).unwrap_or("")
    }

    pub fn query(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn config(&self) -> AppResult<Rc<Config>> {
        self.config
            .get_or_init(|| {
                let cfg = settings::config(&self.env).map_err(|problems| config_error(&problems))?;
                self.log.set_subrequest_budget(cfg.subrequest_budget);
                Ok(cfg)
            })
            .clone()
    }

    pub fn db(&self) -> AppResult<Db> {
        Db::from_env(&self.env, &self.log).map_err(|_| {
            AppError::new(ErrorCode::ConfigError, "This deployment has no D1 binding named DB.")
                .with_details(json!({ "settings": [{ "name": "DB", "problem": "binding missing" }] }))
        })
    }

    pub fn files(&self) -> AppResult<Files> {
        Files::from_env(&self.env, &self.log)
    }

    /// When background work started now must be done.
    pub fn background_deadline(&self) -> i64 {
        now_ms() + BACKGROUND_WINDOW_MS
    }

    pub fn pipeline(&self) -> AppResult<Pipeline> {
        Ok(Pipeline::new(self.env.clone(), self.db()?, self.config()?, self.log.clone()))
    }

    /// The public origin: `PUBLIC_BASE_URL` when set, else this request's origin.
    pub fn public_origin(&self, cfg: &Config) -> String {
        cfg.public_base_url.clone().unwrap_or_else(|| self.origin.clone())
    }

    /// Adds a `Set-Cookie` line to the response (error responses included).
    pub fn set_cookie(&self, line: String) {
        self.cookies.borrow_mut().push(line);
    }

    pub fn take_cookies(&self) -> Vec<String> {
        self.cookies.take()
    }

    /// Errors of this request are shown as an HTML page unless it asks for JSON.
    pub fn html_errors_unless_json(&self, req: &super::request::Request) {
        let accept = req.header("Accept").unwrap_or_default();
        self.html_errors.set(!accept.to_ascii_lowercase().contains("application/json"));
    }

    pub fn wants_html_errors(&self) -> bool {
        self.html_errors.get()
    }

    /// Cookies are `Secure` with `__Host-` names when the public origin is https.
    pub fn secure_cookies(&self, cfg: &Config) -> bool {
        crate::domain::session::secure_origin(&self.public_origin(cfg))
    }

    /// The origins this site's pages are served from: `PUBLIC_BASE_URL` and
    /// the origin this request was sent to.
    pub fn own_origins<'a>(&'a self, cfg: &'a Config) -> Vec<&'a str> {
        let mut ours = vec![self.origin.as_str()];
        if let Some(p) = cfg.public_base_url.as_deref() {
            ours.push(p);
        }
        ours
    }

    /// Signs storage keys into `/files/` URLs on this request's origin, valid for
    /// the result lifetime: what task views show.
    pub fn result_url<'a>(&'a self, cfg: &'a Config) -> impl Fn(&str) -> String + 'a {
        let now = now_ms();
        move |key| signed_file_url(&self.origin, &cfg.file_url_secret, key, cfg.result_url_ttl_s, now)
    }

    /// Writes the isolate's monitoring counters after the response (when the
    /// job ends, like after every background job), when they are due.
    pub fn flush_metrics(&self) {
        if metrics::due() {
            self.in_background("metrics.flush", async { Ok(()) });
        }
    }

    /// Runs `work` after the response is sent. Its end is one log line with
    /// the invocation's cost; an error is logged with its cause, never dropped.
    /// Work started here must end within [`BACKGROUND_WINDOW_MS`] (give it a
    /// pipeline `until(background_deadline())`).
    pub fn in_background<F: Future<Output = AppResult<()>> + 'static>(&self, job: &'static str, work: F) {
        let log = self.log.clone();
        let db = self.db().ok();
        self.worker.wait_until(async move {
            let started = now_ms();
            let outcome = work.await;
            if let Err(e) = &outcome {
                metrics::note_error(e);
            }
            if let (Some(db), true) = (&db, metrics::due()) {
                metrics::flush(db, &log).await;
            }
            let mut fields = log.cost_fields();
            if let Some(o) = fields.as_object_mut() {
                o.insert("job".into(), json!(job));
                o.insert("duration_ms".into(), json!(now_ms() - started));
            }
            match outcome {
                Ok(()) => log.info("background.done", "background work finished", fields),
                Err(e) => {
                    if let Some(o) = fields.as_object_mut() {
                        o.insert("cause".into(), json!(e.internal.unwrap_or(e.message)));
                    }
                    log.error("background.failed", "background work failed", fields)
                }
            }
        });
    }
}
