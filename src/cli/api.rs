//! Calls to a running sluice's admin API, shared by the subcommands that act on one.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{
    Method, Request, StatusCode,
    header::{AUTHORIZATION, CONTENT_TYPE},
};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};

use super::CliError;
use crate::{admin::ErrorAnswer, config::Config};

/// The admin token to send: `SLUICE_ADMIN_TOKEN`, else the config's `admin.token`.
pub fn token(config: Option<&Config>) -> Option<String> {
    std::env::var("SLUICE_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .or_else(|| config?.admin.token.as_ref().map(|t| t.value().to_owned()))
}

/// POSTs `body` (JSON) to `url`, with `token` as the bearer token, and returns the answer's
/// status and body; an unreachable sluice or no answer within `timeout` is an error that
/// names the URL.
pub async fn post(
    url: &str,
    body: Vec<u8>,
    timeout: Duration,
    token: Option<&str>,
) -> Result<(StatusCode, Bytes), CliError> {
    let failed = |err: &dyn std::fmt::Display| CliError::Failed(format!("{url}: {err}"));
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(url)
        .header(CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        request = request.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| failed(&e))?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let response = tokio::time::timeout(timeout, client.request(request))
        .await
        .map_err(|_| {
            failed(&format!(
                "no answer within {}",
                humantime::format_duration(timeout)
            ))
        })?
        .map_err(|e| CliError::Failed(format!("cannot reach sluice at {url}: {e}")))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| failed(&e))?
        .to_bytes();
    Ok((status, body))
}

/// The sentence of an error answer, or the status when the body is not one.
pub fn error_of(status: StatusCode, body: &[u8]) -> String {
    serde_json::from_slice::<ErrorAnswer>(body)
        .map(|e| e.error)
        .unwrap_or_else(|_| format!("HTTP {status}"))
}
