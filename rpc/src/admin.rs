//! Admin calls: only with `Authorization: Bearer <rpc.admin_token>`, and off while the
//! token is empty. Shutdown, the peer list, bans.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use fai_api as api;
use serde_json::Value;

use super::{bad, ApiError, RpcState};
use fai_node::p2p::{Command, P2pHandle};

/// Checks the bearer token; the error says why a call is refused.
fn authorize(s: &RpcState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some((token, _)) = &s.admin else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "admin calls are off (rpc.admin_token is empty)",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    // Compare every byte, so the time taken does not tell how much of a guess was right.
    let same = given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token",
        ))
    }
}

fn network(s: &RpcState) -> Result<&P2pHandle, ApiError> {
    s.node.p2p.get().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the p2p network is off (p2p.enabled = false)",
        )
    })
}

fn stopped(_: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "the p2p network has stopped",
    )
}

fn peer_id(text: &str) -> Result<libp2p::PeerId, ApiError> {
    text.parse()
        .map_err(|_| bad(format!("{text:?} is not a peer id")))
}

#[utoipa::path(post, path = "/v2/admin/shutdown", tag = "admin", security(("bearer" = [])), responses((status = 200, description = "the node stops", body = api::ShuttingDown), (status = 401, description = "missing or wrong token", body = api::ErrorBody), (status = 403, description = "admin calls are off", body = api::ErrorBody)))]
pub async fn admin_shutdown(
    State(s): State<Arc<RpcState>>,
    headers: HeaderMap,
) -> Result<Json<api::ShuttingDown>, ApiError> {
    authorize(&s, &headers)?;
    if let Some((_, shutdown)) = &s.admin {
        tracing::info!(target: "infer_node", "admin shutdown requested");
        shutdown.cancel();
    }
    Ok(Json(api::ShuttingDown {
        shutting_down: true,
    }))
}

#[utoipa::path(get, path = "/v2/admin/peers", tag = "admin", security(("bearer" = [])), responses((status = 200, description = "connected peers and bans", body = api::PeersReport), (status = 401, description = "missing or wrong token", body = api::ErrorBody), (status = 403, description = "admin calls are off", body = api::ErrorBody), (status = 503, description = "the p2p network is off", body = api::ErrorBody)))]
pub async fn admin_peers(
    State(s): State<Arc<RpcState>>,
    headers: HeaderMap,
) -> Result<Json<api::PeersReport>, ApiError> {
    authorize(&s, &headers)?;
    let (reply, answer) = tokio::sync::oneshot::channel();
    network(&s)?
        .send(Command::Peers(reply))
        .await
        .map_err(stopped)?;
    let report = answer.await.map_err(stopped)?;
    Ok(Json(report))
}

#[utoipa::path(post, path = "/v2/admin/bans", tag = "admin", security(("bearer" = [])), request_body(content = api::BanRequest, description = "the peer and how long"), responses((status = 200, description = "banned", body = api::Banned), (status = 400, description = "malformed body or peer id", body = api::ErrorBody), (status = 401, description = "missing or wrong token", body = api::ErrorBody), (status = 403, description = "admin calls are off", body = api::ErrorBody), (status = 503, description = "the p2p network is off", body = api::ErrorBody)))]
pub async fn admin_ban(
    State(s): State<Arc<RpcState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<api::Banned>, ApiError> {
    authorize(&s, &headers)?;
    let body = body.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    let v: Value =
        serde_json::from_slice(&body).map_err(|e| bad(format!("malformed JSON: {e}")))?;
    let usage = "the body must be {\"peer_id\": \"...\", \"seconds\": N}";
    let peer = peer_id(
        v.get("peer_id")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(usage))?,
    )?;
    let seconds = v
        .get("seconds")
        .and_then(Value::as_u64)
        .filter(|n| (1..=365 * 86_400).contains(n))
        .ok_or_else(|| bad("\"seconds\" must be 1 to 31536000"))?;
    network(&s)?
        .send(Command::Ban {
            peer,
            time: Duration::from_secs(seconds),
        })
        .await
        .map_err(stopped)?;
    Ok(Json(api::Banned {
        banned: peer.to_string(),
        seconds,
    }))
}

#[utoipa::path(delete, path = "/v2/admin/bans/{peer_id}", tag = "admin", security(("bearer" = [])), params(("peer_id" = String, Path, description = "the banned peer")), responses((status = 200, description = "the ban is lifted", body = api::Unbanned), (status = 400, description = "not a peer id", body = api::ErrorBody), (status = 401, description = "missing or wrong token", body = api::ErrorBody), (status = 403, description = "admin calls are off", body = api::ErrorBody), (status = 404, description = "no such ban", body = api::ErrorBody), (status = 503, description = "the p2p network is off", body = api::ErrorBody)))]
pub async fn admin_unban(
    State(s): State<Arc<RpcState>>,
    headers: HeaderMap,
    Path(text): Path<String>,
) -> Result<Json<api::Unbanned>, ApiError> {
    authorize(&s, &headers)?;
    let peer = peer_id(&text)?;
    let (reply, answer) = tokio::sync::oneshot::channel();
    network(&s)?
        .send(Command::Unban(peer, reply))
        .await
        .map_err(stopped)?;
    if answer.await.map_err(stopped)? {
        Ok(Json(api::Unbanned {
            unbanned: peer.to_string(),
        }))
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("{peer} is not banned"),
        ))
    }
}
