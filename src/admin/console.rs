//! The console: a page served at `/` of the admin listener, compiled into the binary (no
//! build step, nothing fetched from elsewhere). It polls `/api/status` every second and
//! draws the topology as SVG.

use axum::{
    Router,
    http::header,
    response::{IntoResponse, Response},
    routing::get,
};
use std::sync::Arc;

use super::AdminState;

const INDEX: &str = include_str!("console/index.html");
const SCRIPT: &str = include_str!("console/console.js");
const STYLE: &str = include_str!("console/console.css");

/// `/`, `/console.js` and `/console.css`.
pub fn routes() -> Router<Arc<AdminState>> {
    Router::new()
        .route("/", get(|| asset("text/html; charset=utf-8", INDEX)))
        .route(
            "/console.js",
            get(|| asset("text/javascript; charset=utf-8", SCRIPT)),
        )
        .route(
            "/console.css",
            get(|| asset("text/css; charset=utf-8", STYLE)),
        )
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}
