//! The HTTP edge of the pool: `POST /transcodeResults` (the
//! member's answer: [`check_result_headers`] in go-livepeer's order and
//! statuses, then the body read with bounded memory — the error text, or
//! the multipart renditions through [`MultipartReader`] — and delivered to
//! the waiting attempt; unknown and late tasks are answered 200 and their
//! bodies discarded). A member GETs its source segments from the node's
//! one `/stream/…` store (`<session>/<seq>.tempfile`, no authentication, as
//! go-livepeer), served with the rest of `/stream/`.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http_body_util::BodyExt;

use super::{Delivered, Pool};
use crate::protocol::results::{
    MultipartReader, ResultBody, ResultHeaders, TRANSCODING_ERROR, check_result_headers,
};

/// The longest error text kept from an error result.
const MAX_ERROR_TEXT: usize = 64 * 1024;

/// The pool's routes.
pub fn router(pool: Arc<Pool>) -> Router {
    Router::new()
        .route("/transcodeResults", post(post_results))
        .with_state(pool)
}

fn text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// `lpgpu_pool_result_uploads_total{outcome}`.
fn count(pool: &Pool, outcome: &str) {
    pool.pool_metrics()
        .result_uploads
        .with_label_values(&[outcome])
        .inc();
}

/// Reads and discards a body, within the upload timeout.
async fn discard(pool: &Pool, mut body: Body) {
    let _ = tokio::time::timeout(pool.config.upload_timeout, async {
        while let Some(Ok(_)) = body.frame().await {}
    })
    .await;
}

async fn post_results(State(pool): State<Arc<Pool>>, headers: HeaderMap, body: Body) -> Response {
    let values = [
        "authorization",
        "credentials",
        "content-type",
        "taskid",
        "pixels",
    ]
    .map(|name| text(&headers, name));
    let checked = check_result_headers(
        &ResultHeaders {
            authorization: values[0].as_deref(),
            credentials: values[1].as_deref(),
            content_type: values[2].as_deref(),
            task_id: values[3].as_deref(),
            pixels: values[4].as_deref(),
        },
        pool.secret(),
    );
    let verdict = match checked {
        Err(rejection) => {
            tracing::warn!(
                status = rejection.status(),
                "result upload refused: {rejection}"
            );
            count(&pool, rejection.label());
            discard(&pool, body).await;
            let status =
                StatusCode::from_u16(rejection.status()).unwrap_or(StatusCode::BAD_REQUEST);
            return (status, format!("{rejection}\n")).into_response();
        }
        Ok(verdict) => verdict,
    };
    match verdict {
        ResultBody::Error { task_id } => {
            let mut collected = Vec::new();
            let mut body = body;
            let read = tokio::time::timeout(pool.config.upload_timeout, async {
                while let Some(frame) = body.frame().await {
                    let frame = frame.map_err(|_| ())?;
                    if let Some(data) = frame.data_ref() {
                        let room = MAX_ERROR_TEXT.saturating_sub(collected.len());
                        collected.extend_from_slice(&data[..data.len().min(room)]);
                    }
                }
                Ok::<(), ()>(())
            })
            .await;
            let text = String::from_utf8_lossy(&collected).trim().to_string();
            let delivered = read.is_ok() && pool.deliver(task_id, Delivered::Error(text));
            count(&pool, if delivered { "error" } else { "unknown_task" });
            (StatusCode::OK, "").into_response()
        }
        ResultBody::Ignored {
            task_id,
            media_type,
        } => {
            tracing::debug!(task = task_id, %media_type, "result with an unknown content type ignored");
            count(&pool, "ignored");
            discard(&pool, body).await;
            (StatusCode::OK, "").into_response()
        }
        ResultBody::Renditions {
            task_id, boundary, ..
        } => {
            if !pool.is_waiting(task_id) {
                tracing::debug!(
                    task = task_id,
                    "result for a task no attempt waits for: dropped"
                );
                count(&pool, "unknown_task");
                discard(&pool, body).await;
                return (StatusCode::OK, "").into_response();
            }
            let mut reader = MultipartReader::new(&boundary);
            let mut body = body;
            let read = tokio::time::timeout(pool.config.upload_timeout, async {
                // After a malformed piece the rest is read and discarded, so
                // the 500 reaches the member whole.
                let mut failure: Option<String> = None;
                while let Some(frame) = body.frame().await {
                    let frame = frame.map_err(|e| format!("reading the body: {e}"))?;
                    if failure.is_none()
                        && let Some(data) = frame.data_ref()
                        && let Err(e) = reader.push(data)
                    {
                        failure = Some(e.to_string());
                    }
                }
                failure.map_or(Ok(()), Err)
            })
            .await
            .unwrap_or_else(|_| Err("the body took too long".into()));
            let parts = read.and_then(|()| reader.finish().map_err(|e| e.to_string()));
            match parts {
                Ok(parts) => {
                    let delivered = pool.deliver(task_id, Delivered::Renditions { parts });
                    count(
                        &pool,
                        if delivered {
                            "renditions"
                        } else {
                            "unknown_task"
                        },
                    );
                    (StatusCode::OK, "").into_response()
                }
                Err(why) => {
                    tracing::warn!(task = task_id, "result body unreadable: {why}");
                    count(&pool, "broken_body");
                    pool.deliver(
                        task_id,
                        Delivered::Error(format!("{TRANSCODING_ERROR}: unreadable result ({why})")),
                    );
                    (StatusCode::INTERNAL_SERVER_ERROR, format!("{why}\n")).into_response()
                }
            }
        }
    }
}
