//! The node's HTTP routes: `GET /healthz` and `POST /segment`.
//!
//! Segment verification and transcoding are not built yet: `POST /segment`
//! answers `501` with a JSON error until they are.

use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

/// The HTTP routes a node serves beside gRPC; `/segment` when it transcodes.
pub fn http_router(transcodes: bool) -> Router {
    let router = Router::new().route("/healthz", get(healthz));
    if transcodes {
        router.route("/segment", post(segment_not_built))
    } else {
        router
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn segment_not_built() -> Response {
    (
        StatusCode::NOT_IMPLEMENTED,
        Json(serde_json::json!({
            "error": "internal",
            "detail": "this node does not transcode yet: POST /segment is not built"
        })),
    )
        .into_response()
}
