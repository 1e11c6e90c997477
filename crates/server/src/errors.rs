//! Engine errors as the distribution spec's error responses: a status and a
//! JSON body with the OCI code, chosen from `Error::kind()`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use ocidb::error::Error;

/// Marks an I/O error as the client's doing (its body stalled, was too
/// slow or broke off), so that the answer is a 4xx logged below ERROR
/// rather than a 500: any client could otherwise flood the error log.
#[derive(Debug)]
pub(crate) struct ClientBody(pub String);

impl std::fmt::Display for ClientBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ClientBody {}

/// An I/O error of kind `kind` that says the client caused it.
pub(crate) fn client_error(kind: std::io::ErrorKind, msg: impl Into<String>) -> std::io::Error {
    std::io::Error::new(kind, ClientBody(msg.into()))
}

/// Whether an engine error carries a [`ClientBody`] error, and its kind.
pub(crate) fn client_caused(e: &ocidb::Error) -> Option<std::io::ErrorKind> {
    match e {
        ocidb::Error::Io { source, .. }
            if source
                .get_ref()
                .is_some_and(<dyn std::error::Error + Send + Sync>::is::<ClientBody>) =>
        {
            Some(source.kind())
        }
        _ => None,
    }
}

/// An error response of the distribution API.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Extra headers (the `Range` of an upload on a 416).
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    /// A refusal for load (a cap reached): `TOOMANYREQUESTS` with the
    /// seconds after which to try again.
    pub fn retry_later(
        status: StatusCode,
        message: impl Into<String>,
        retry_after: &'static str,
    ) -> ApiError {
        let mut e = ApiError::new(status, "TOOMANYREQUESTS", message);
        e.headers
            .push((header::RETRY_AFTER, HeaderValue::from_static(retry_after)));
        e
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        let kind = e.kind();
        let status =
            StatusCode::from_u16(kind.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let code = kind.oci_code();
        // The client's own stalled, slow or broken body: a 4xx, and no
        // ERROR line (a client could flood the log with them).
        let (status, code) = match client_caused(&e) {
            Some(std::io::ErrorKind::TimedOut) => {
                (StatusCode::REQUEST_TIMEOUT, "BLOB_UPLOAD_INVALID")
            }
            Some(_) => (StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID"),
            None => (status, code),
        };
        let mut out = ApiError::new(status, code, e.to_string());
        if let Error::UploadOffset { expected, .. } = e
            && let Ok(v) = HeaderValue::from_str(&range_value(expected))
        {
            out.headers.push((header::RANGE, v));
        }
        if out.status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!("{}", out.message);
        }
        out
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "errors": [{"code": self.code, "message": self.message, "detail": null}]
        });
        let mut r = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response();
        for (k, v) in self.headers {
            r.headers_mut().insert(k, v);
        }
        r
    }
}

/// The `Range` header of an upload that holds `offset` bytes.
pub(crate) fn range_value(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}
