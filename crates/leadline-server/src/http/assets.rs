//! Static files embedded in the binary (the widget script, the API reference
//! renderer): compressed once, served with an `ETag`, gzip when the client takes it.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// One embedded file and its compressed form.
pub struct Asset {
    body: &'static [u8],
    gzip: Vec<u8>,
    etag: String,
    content_type: &'static str,
    cache_control: &'static str,
}

impl Asset {
    /// Compresses `body` and names it by its SHA-256.
    pub fn new(body: &'static [u8], content_type: &'static str, cache_control: &'static str) -> Self {
        use sha2::Digest;
        use std::io::Write;
        let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let gzip = z.write_all(body).and_then(|()| z.finish()).unwrap_or_default();
        let etag = format!("\"{}\"", &hex::encode(sha2::Sha256::digest(body))[..32]);
        Self {
            body,
            gzip,
            etag,
            content_type,
            cache_control,
        }
    }

    /// The compressed size.
    pub fn gzip_len(&self) -> usize {
        self.gzip.len()
    }

    /// The answer to a GET: 304 for a matching `If-None-Match`, gzip when accepted.
    pub fn serve(&self, headers: &HeaderMap) -> Response {
        let etag = HeaderValue::from_str(&self.etag).unwrap_or_else(|_| HeaderValue::from_static("\"asset\""));
        let common = [
            (header::CACHE_CONTROL, HeaderValue::from_static(self.cache_control)),
            (header::VARY, HeaderValue::from_static("Accept-Encoding")),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
            (header::ETAG, etag),
        ];
        let not_modified = headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim() == self.etag || t.trim() == "*"));
        if not_modified {
            return (StatusCode::NOT_MODIFIED, common).into_response();
        }
        let gzip = !self.gzip.is_empty()
            && headers
                .get(header::ACCEPT_ENCODING)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.split(',').any(|e| e.trim().split(';').next() == Some("gzip")));
        let mut res = if gzip {
            let mut r = (common, self.gzip.clone()).into_response();
            r.headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            r
        } else {
            (common, self.body).into_response()
        };
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        res
    }
}
