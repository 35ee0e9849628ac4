//! The one mapping from a refusal or an error to a status, a challenge and `{"detail"}`.

use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::body::{Bytes, Frame, Incoming, SizeHint};
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use hyper::{Response, StatusCode};
use serde::Serialize;

/// A response body: bytes the host made, or an upstream's body streamed through as it
/// arrives (gateway routes). An enum, not a box: the host's own answers cost no allocation.
#[derive(Debug, Default)]
pub enum Body {
    #[default]
    Empty,
    Full(Option<Bytes>),
    Stream(Incoming),
    /// A proxy route's upstream body, driving its pooled connection as it relays. Boxed:
    /// inline it made every response (and every request's future) larger, which cost the
    /// host's own answers about 150 instructions of memcpy per request.
    Relayed(Box<crate::gateway::pool::Relayed>),
}

impl Body {
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        Body::Full(Some(bytes.into()))
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Body::Empty => Poll::Ready(None),
            Body::Full(bytes) => {
                Poll::Ready(bytes.take().filter(|b| !b.is_empty()).map(|b| Ok(Frame::data(b))))
            }
            Body::Stream(incoming) => Pin::new(incoming).poll_frame(cx),
            Body::Relayed(relayed) => Pin::new(relayed.as_mut()).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Empty => true,
            Body::Full(bytes) => bytes.as_ref().is_none_or(Bytes::is_empty),
            Body::Stream(incoming) => incoming.is_end_stream(),
            Body::Relayed(relayed) => relayed.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Empty => SizeHint::with_exact(0),
            Body::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Stream(incoming) => incoming.size_hint(),
            Body::Relayed(relayed) => relayed.size_hint(),
        }
    }
}

pub const NOT_AUTHENTICATED: &str = "Authentication credentials were not provided.";
pub const PERMISSION_DENIED: &str = "You do not have permission to perform this action.";
pub const INTERNAL_AUTH_ERROR: &str = "Internal authentication error.";
pub const UNAVAILABLE: &str = "Service temporarily unavailable, try again later.";
pub const STORE_UNAVAILABLE: &str = "Authentication store unavailable.";
pub const NOT_FOUND: &str = "Not found.";
pub const HEADERS_TOO_LARGE: &str = "Request header fields too large.";
pub const BODY_TOO_LARGE: &str = "Request body too large.";
pub const BAD_BODY: &str = "Malformed request body.";
pub const BODY_TIMEOUT: &str = "Request body timeout.";
pub const BAD_HOST: &str = "Invalid Host header.";
pub const BAD_GATEWAY: &str = "Bad gateway.";
pub const GATEWAY_TIMEOUT: &str = "Gateway timeout.";

/// Why a request was not served.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// Not authenticated, or failed authentication: 401 with the challenge, else 403.
    Unauthenticated {
        detail: String,
        challenge: Option<String>,
    },
    /// 403.
    Forbidden {
        detail: String,
    },
    /// 405, with the methods the route allows.
    MethodNotAllowed {
        method: String,
        allow: &'static str,
    },
    NotFound,
    /// 431: the request's headers add up to more than the host accepts.
    HeadersTooLarge,
    /// 413: the body is larger than the host reads (the connection closes: the rest of the
    /// body is never read).
    BodyTooLarge,
    /// 408: the body did not arrive within `[server] body_timeout` (the connection closes).
    BodyTimeout,
    /// 400: an HTTP/1.1 request without a `Host` header, or any request with two.
    BadHost,
    /// 400: the body could not be read (a broken chunked encoding).
    BadBody,
    /// 400: the path is not in normal form (`//`, dot segments, encoded separators).
    BadPath {
        detail: &'static str,
    },
    /// A scheme fault or host error: 500, details only in the log.
    Internal,
    /// 503: a bounded queue is full.
    Busy,
    /// 503: the store did not answer within `[store] busy_timeout`.
    StoreUnavailable,
    /// 429, with DRF's wait (whole seconds, rounded up) when there is one.
    Throttled {
        wait: Option<u64>,
    },
    /// 502: the upstream refused, reset or broke the exchange.
    BadGateway,
    /// 504: the upstream did not answer in time.
    GatewayTimeout,
}

impl Refusal {
    pub fn into_response(self) -> Response<Body> {
        match self {
            Refusal::Unauthenticated { detail, challenge: Some(challenge) } => {
                let mut resp = detail_response(StatusCode::UNAUTHORIZED, &detail);
                match HeaderValue::from_str(&challenge) {
                    Ok(value) => {
                        resp.headers_mut().insert(WWW_AUTHENTICATE, value);
                        resp
                    }
                    // A challenge that is no valid header value: DRF would fail too.
                    Err(_) => detail_response(StatusCode::FORBIDDEN, &detail),
                }
            }
            Refusal::Unauthenticated { detail, challenge: None } | Refusal::Forbidden { detail } => {
                detail_response(StatusCode::FORBIDDEN, &detail)
            }
            Refusal::MethodNotAllowed { method, allow } => {
                let mut resp = detail_response(
                    StatusCode::METHOD_NOT_ALLOWED,
                    &format!("Method \"{method}\" not allowed."),
                );
                resp.headers_mut().insert(ALLOW, HeaderValue::from_static(allow));
                resp
            }
            Refusal::NotFound => detail_response(StatusCode::NOT_FOUND, NOT_FOUND),
            Refusal::BodyTooLarge => closing(detail_response(StatusCode::PAYLOAD_TOO_LARGE, BODY_TOO_LARGE)),
            Refusal::BodyTimeout => closing(detail_response(StatusCode::REQUEST_TIMEOUT, BODY_TIMEOUT)),
            Refusal::BadHost => detail_response(StatusCode::BAD_REQUEST, BAD_HOST),
            Refusal::BadBody => detail_response(StatusCode::BAD_REQUEST, BAD_BODY),
            Refusal::BadPath { detail } => detail_response(StatusCode::BAD_REQUEST, detail),
            Refusal::HeadersTooLarge => {
                detail_response(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, HEADERS_TOO_LARGE)
            }
            Refusal::Internal => detail_response(StatusCode::INTERNAL_SERVER_ERROR, INTERNAL_AUTH_ERROR),
            Refusal::BadGateway => detail_response(StatusCode::BAD_GATEWAY, BAD_GATEWAY),
            Refusal::GatewayTimeout => detail_response(StatusCode::GATEWAY_TIMEOUT, GATEWAY_TIMEOUT),
            Refusal::Throttled { wait } => {
                // DRF's Throttled: the wait in the detail, singular or plural by the number,
                // and in Retry-After when it is not zero.
                let mut resp = detail_response(StatusCode::TOO_MANY_REQUESTS, &throttled_detail(wait));
                if let Some(n) = wait.filter(|n| *n > 0) {
                    resp.headers_mut().insert(RETRY_AFTER, HeaderValue::from(n));
                }
                resp
            }
            Refusal::Busy | Refusal::StoreUnavailable => {
                let detail = if self == Refusal::Busy { UNAVAILABLE } else { STORE_UNAVAILABLE };
                let mut resp = detail_response(StatusCode::SERVICE_UNAVAILABLE, detail);
                resp.headers_mut().insert(RETRY_AFTER, HeaderValue::from_static("1"));
                resp
            }
        }
    }
}

/// DRF's Throttled detail, singular or plural by the number.
pub fn throttled_detail(wait: Option<u64>) -> String {
    match wait {
        Some(1) => "Request was throttled. Expected available in 1 second.".to_owned(),
        Some(n) => format!("Request was throttled. Expected available in {n} seconds."),
        None => "Request was throttled.".to_owned(),
    }
}

/// `resp` with `Connection: close`: what is left of the request is never read.
fn closing(mut resp: Response<Body>) -> Response<Body> {
    resp.headers_mut().insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// `{"detail": detail}` with `status`.
pub fn detail_response(status: StatusCode, detail: &str) -> Response<Body> {
    #[derive(Serialize)]
    struct Detail<'a> {
        detail: &'a str,
    }
    json_response(status, &Detail { detail })
}

/// A JSON body with `Content-Type: application/json`.
pub fn json_response<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> Response<Body> {
    let mut resp = Response::new(Body::full(to_json(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// `body` as JSON, in one allocation of its exact size: it is written into this thread's
/// buffer (kept between calls) and copied out. `serde_json::to_vec` would grow a vector of
/// spare capacity, and `Bytes` takes such a vector only with a second allocation.
fn to_json<T: Serialize + ?Sized>(body: &T) -> Bytes {
    thread_local! {
        static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BUFFER.with(|buffer| {
        let mut buffer = buffer.borrow_mut();
        buffer.clear();
        // Serialising plain data to memory cannot fail.
        let json = match serde_json::to_writer(&mut *buffer, body) {
            Ok(()) => Bytes::copy_from_slice(&buffer),
            Err(_) => Bytes::new(),
        };
        // A rare large answer does not keep its memory on the thread.
        if buffer.capacity() > 64 * 1024 {
            *buffer = Vec::new();
        }
        json
    })
}
