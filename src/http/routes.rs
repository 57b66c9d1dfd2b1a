//! Every route of the Worker, one line each: method, path, the name its log
//! lines carry, and the handler. `:name` matches one path segment, `*name`
//! the rest of the path.

use super::ctx::Ctx;
use super::request::Request;
use super::response::Response;
use super::{account, admin, billing, client_errors, create, files, health, keys, models, page, signin, stripe_webhook, tasks, webhook};
use crate::domain::error::AppResult;
use std::future::Future;
use std::pin::Pin;
use worker::Method;

pub type Reply<'a> = Pin<Box<dyn Future<Output = AppResult<Response>> + 'a>>;
pub type Handler = for<'a> fn(&'a Ctx, Request) -> Reply<'a>;

pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub name: &'static str,
    pub handler: Handler,
}

macro_rules! route {
    ($method:ident $path:literal, $name:literal, $handler:path) => {
        Route {
            method: Method::$method,
            path: $path,
            name: $name,
            handler: {
                fn handle(ctx: &Ctx, req: Request) -> Reply<'_> {
                    Box::pin($handler(ctx, req))
                }
                handle
            },
        }
    };
}

pub static ROUTES: &[Route] = &[
    route!(Get "/", "page", page::serve),
    route!(Get "/index.html", "page", page::serve),
    route!(Get "/app.js", "page", page::serve),
    route!(Get "/app.css", "page", page::serve),
    route!(Get "/errors.js", "page", page::serve),
    route!(Get "/admin", "admin.page", page::serve),
    route!(Get "/admin.js", "admin.page", page::serve),
    route!(Get "/admin.css", "admin.page", page::serve),
    route!(Post "/api/client-errors", "client_errors", client_errors::report),
    route!(Get "/billing.js", "page", page::serve),
    route!(Get "/billing.css", "page", page::serve),
    route!(Get "/api/health", "health", health::get),
    route!(Get "/api/models", "models", models::list),
    route!(Post "/api/create/ai-image", "create", create::create),
    route!(Get "/api/tasks", "tasks.list", tasks::list),
    route!(Get "/api/tasks/:id", "tasks.get", tasks::get),
    route!(Get "/api/me", "me", account::me),
    route!(Get "/api/me/ledger", "me.ledger", account::ledger),
    route!(Get "/api/me/keys", "me.keys.list", keys::list),
    route!(Post "/api/me/keys", "me.keys.create", keys::create),
    route!(Delete "/api/me/keys/:id", "me.keys.revoke", keys::revoke),
    route!(Delete "/api/me/sessions", "me.sessions.end", keys::end_sessions),
    route!(Get "/auth/login", "auth.login", signin::login),
    route!(Get "/auth/callback", "auth.callback", signin::callback),
    route!(Post "/auth/signup", "auth.signup", signin::signup),
    route!(Post "/auth/logout", "auth.logout", signin::logout),
    route!(Get "/auth/status", "auth.status", signin::status),
    route!(Post "/api/webhooks/kie-image", "webhook", webhook::receive),
    route!(Post "/webhooks/kie-image", "webhook", webhook::receive),
    route!(Get "/api/billing/packs", "billing.packs", billing::packs),
    route!(Post "/api/billing/checkout", "billing.checkout", billing::checkout),
    route!(Get "/api/billing/orders", "billing.orders", billing::list),
    route!(Post "/api/webhooks/stripe", "webhook.stripe", stripe_webhook::receive),
    route!(Get "/files/*key", "files", files::serve),
    route!(Head "/files/*key", "files", files::serve),
    route!(Post "/api/admin/users", "admin.users.create", admin::users::create),
    route!(Get "/api/admin/users", "admin.users.list", admin::users::list),
    route!(Get "/api/admin/users/:id", "admin.users.get", admin::users::get),
    route!(Get "/api/admin/users/:id/ledger", "admin.users.ledger", admin::users::ledger),
    route!(Post "/api/admin/users/:id/credits", "admin.users.credits", admin::users::credits),
    route!(Post "/api/admin/users/:id/keys", "admin.users.keys", admin::users::rotate_key),
    route!(Get "/api/admin/tasks", "admin.tasks.list", admin::tasks::list),
    route!(Post "/api/admin/tasks/:id/recheck", "admin.tasks.recheck", admin::tasks::recheck),
    route!(Get "/api/admin/orders", "admin.orders.list", admin::orders::list),
    route!(Post "/api/admin/users/:id/clear-owed", "admin.users.clear_owed", admin::orders::clear_owed),
    route!(Get "/api/admin/diagnose", "admin.diagnose", admin::diagnose::run),
    route!(Get "/api/admin/audit", "admin.audit", admin::audit::list),
    route!(Get "/api/admin/alerts", "admin.alerts", admin::monitoring::alerts),
    route!(Get "/api/admin/metrics", "admin.metrics", admin::monitoring::metrics),
];

/// What a request's method and path lead to.
pub enum Lookup {
    Route(&'static Route, Vec<(&'static str, String)>),
    /// The path exists, but not for this method: the methods it allows.
    WrongMethod(String),
    Nothing,
}

/// Whether `path` may match `pattern`: their bytes agree up to the pattern's
/// first parameter (and, for a pattern without one, so do their lengths).
/// Most routes are ruled out here, before `captures` splits anything.
fn may_match(pattern: &str, path: &str) -> bool {
    let have = path.as_bytes();
    for (i, &c) in pattern.as_bytes().iter().enumerate() {
        if c == b':' || c == b'*' {
            return true;
        }
        if have.get(i) != Some(&c) {
            return false;
        }
    }
    pattern.len() == path.len()
}

/// The parameters `pattern` captures from `path`, if it matches.
fn captures(pattern: &'static str, path: &str) -> Option<Vec<(&'static str, String)>> {
    let mut params = Vec::new();
    let mut want = pattern.split('/');
    let mut have = path.split('/');
    loop {
        match (want.next(), have.next()) {
            (None, None) => return Some(params),
            (Some(w), Some(h)) if w.starts_with('*') => {
                let rest: Vec<&str> = std::iter::once(h).chain(have).collect();
                let rest = rest.join("/");
                return (!rest.is_empty()).then(|| {
                    params.push((w.trim_start_matches('*'), rest));
                    params
                });
            }
            (Some(w), Some(h)) if w.starts_with(':') && !h.is_empty() => params.push((w.trim_start_matches(':'), h.to_string())),
            (Some(w), Some(h)) if w == h => {}
            _ => return None,
        }
    }
}

pub fn find(method: &Method, path: &str) -> Lookup {
    let mut allowed: Vec<&str> = Vec::new();
    for route in ROUTES.iter().filter(|r| may_match(r.path, path)) {
        if let Some(params) = captures(route.path, path) {
            if route.method == *method {
                return Lookup::Route(route, params);
            }
            let name = route.method.as_ref();
            if !allowed.contains(&name) {
                allowed.push(name);
            }
        }
    }
    if allowed.is_empty() {
        Lookup::Nothing
    } else {
        Lookup::WrongMethod(allowed.join(", "))
    }
}
