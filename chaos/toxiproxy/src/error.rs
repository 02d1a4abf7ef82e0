//! The one error type of the control plane: every way a Toxiproxy API call can fail.
//!
//! Messages and status codes are Toxiproxy v2's own (`api.go`, the `Err*` table), because clients
//! such as toxiproxy-go surface them verbatim (`create: HTTP 409: proxy already exists`) and the
//! chaos suite must read the same text from us as from a real Toxiproxy. Turning an [`Error`] into
//! an HTTP response is left to `api::response`. Failures on the data path (a refused upstream, a
//! reset peer) are not errors of this kind: they end one connection and are only logged.

use std::io;

/// A failed API operation, named for what happened.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The body was not JSON of the expected shape; carries the decoder's reason.
    #[error("bad request body: {0}")]
    BadRequestBody(String),

    /// A required field was empty or absent; carries the field (and, for `/populate`, its position).
    #[error("missing required field: {0}")]
    MissingField(String),

    /// No proxy has this name.
    #[error("proxy not found")]
    ProxyNotFound,

    /// `POST /proxies` named a proxy that already exists.
    #[error("proxy already exists")]
    ProxyAlreadyExists,

    /// A toxic's `stream` was neither `upstream` nor `downstream` (case-insensitive).
    #[error("stream was invalid, can be either upstream or downstream")]
    InvalidStream,

    /// A toxic's `type` is not one this server implements.
    #[error("invalid toxic type")]
    InvalidToxicType,

    /// The proxy already has a toxic with this name (in either stream).
    #[error("toxic already exists")]
    ToxicAlreadyExists,

    /// The proxy has no toxic with this name.
    #[error("toxic not found")]
    ToxicNotFound,

    /// An address outside 127.0.0.0/8 and ::1 was asked for without `--allow-remote`. Not a
    /// Toxiproxy error: this machine's chaos runs must never reach beyond loopback.
    #[error(
        "{addr} is not a loopback address (start sluice-toxiproxy with --allow-remote to allow it)"
    )]
    NotLoopback {
        /// The address as the client gave it.
        addr: String,
    },

    /// A listen or upstream address did not resolve.
    #[error("lookup {addr}: {source}")]
    Resolve {
        /// The address as the client gave it.
        addr: String,
        /// The resolver's reason.
        source: io::Error,
    },

    /// The proxy's listener could not be bound (port taken, address not local...).
    #[error("listen tcp {addr}: {source}")]
    Listen {
        /// The address we tried to bind.
        addr: String,
        /// The bind failure.
        source: io::Error,
    },
}

impl Error {
    /// The HTTP status Toxiproxy answers with for this error. Errors Toxiproxy has no entry for
    /// (bind and resolve failures) are 500 there too, because its `apiError` falls back to it.
    pub fn status_code(&self) -> u16 {
        match self {
            Error::BadRequestBody(_)
            | Error::MissingField(_)
            | Error::InvalidStream
            | Error::InvalidToxicType
            | Error::NotLoopback { .. } => 400,
            Error::ProxyNotFound | Error::ToxicNotFound => 404,
            Error::ProxyAlreadyExists | Error::ToxicAlreadyExists => 409,
            Error::Resolve { .. } | Error::Listen { .. } => 500,
        }
    }

    /// Wraps a JSON decoding failure the way Toxiproxy's `joinError(err, ErrBadRequestBody)` does.
    pub fn bad_body(err: serde_json::Error) -> Self {
        Error::BadRequestBody(err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_codes_match_toxiproxy() {
        let cases = [
            (Error::ProxyNotFound, 404, "proxy not found"),
            (Error::ProxyAlreadyExists, 409, "proxy already exists"),
            (Error::ToxicNotFound, 404, "toxic not found"),
            (Error::ToxicAlreadyExists, 409, "toxic already exists"),
            (Error::InvalidToxicType, 400, "invalid toxic type"),
            (
                Error::MissingField("upstream".into()),
                400,
                "missing required field: upstream",
            ),
        ];
        for (err, code, msg) in cases {
            assert_eq!(
                (err.status_code(), err.to_string()),
                (code, msg.to_string())
            );
        }
    }
}
