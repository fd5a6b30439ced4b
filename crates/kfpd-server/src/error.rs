//! The API's error type and the one table that maps its codes to HTTP statuses (and,
//! by their numbers, to gRPC codes).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// gRPC status codes, the numbers upstream puts in its error bodies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    InvalidArgument = 3,
    /// A client sent its request too slowly (HTTP 408).
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    /// Used for bodies over the size limit (HTTP 413).
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    Unauthenticated = 16,
}

impl Code {
    pub fn http_status(self) -> StatusCode {
        match self {
            Code::InvalidArgument | Code::FailedPrecondition => StatusCode::BAD_REQUEST,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::DeadlineExceeded => StatusCode::REQUEST_TIMEOUT,
            Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            Code::ResourceExhausted => StatusCode::PAYLOAD_TOO_LARGE,
            Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
            Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        }
    }
}

/// An error a client can act on: a code and a message naming what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    pub code: Code,
    pub message: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(code: Code, message: impl Into<String>) -> Error {
        Error {
            code,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Error {
        Error::new(Code::InvalidArgument, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Error {
        Error::new(Code::Unavailable, message)
    }

    pub fn not_found(message: impl Into<String>) -> Error {
        Error::new(Code::NotFound, message)
    }

    pub fn internal(message: impl Into<String>) -> Error {
        Error::new(Code::Internal, message)
    }

    /// The body upstream's gateway sends: `{code, message, details}`.
    pub fn body(&self) -> serde_json::Value {
        let code = self.code as i32;
        json!({
            "code": code,
            "message": self.message,
            "details": [{
                "@type": "type.googleapis.com/google.rpc.Status",
                "code": code,
                "message": self.message,
            }],
        })
    }
}

impl From<kfpd_store::Error> for Error {
    fn from(error: kfpd_store::Error) -> Error {
        use kfpd_store::Error as Store;
        let code = match &error {
            Store::NotFound(_) => Code::NotFound,
            Store::AlreadyExists(_) => Code::AlreadyExists,
            Store::InvalidArgument(_) => Code::InvalidArgument,
            Store::FailedPrecondition(_) => Code::FailedPrecondition,
            Store::Aborted(_) => Code::Aborted,
            // Busy: other writers held the database past the busy timeout, or a
            // deadlock outlasted the store's retries; the client may try again.
            Store::Unavailable(_) | Store::Busy(_) | Store::Conflict(_) => Code::Unavailable,
            Store::Unauthenticated(_) | Store::Internal(_) => Code::Internal,
        };
        if code == Code::Internal || code == Code::Unavailable {
            tracing::error!(error = %error, "store error");
        }
        Error::new(code, error.to_string())
    }
}

impl From<kfpd_ir::Error> for Error {
    fn from(error: kfpd_ir::Error) -> Error {
        Error::invalid(error.to_string())
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        (self.code.http_status(), axum::Json(self.body())).into_response()
    }
}

/// Errors of the multipart upload endpoints, which upstream answers in another shape:
/// `{"error_message": …, "error_details": …}`.
#[derive(Debug)]
pub struct UploadError(pub Error);

impl From<Error> for UploadError {
    fn from(error: Error) -> UploadError {
        UploadError(error)
    }
}

impl IntoResponse for UploadError {
    fn into_response(self) -> Response {
        let error = self.0;
        let body = json!({
            "error_message": error.message,
            "error_details": error.message,
        });
        (error.code.http_status(), axum::Json(body)).into_response()
    }
}
