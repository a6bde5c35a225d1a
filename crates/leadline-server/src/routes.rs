//! The methods of each documented route, read once from the router's OpenAPI
//! document, so that the effects layer answers 405 before any idempotency claim
//! without depending on the HTTP modules.

use std::collections::HashMap;

/// Route template → its methods (upper case).
#[derive(Debug, Default)]
pub struct RouteMethods(HashMap<String, Vec<String>>);

impl RouteMethods {
    /// From `(template, methods)` pairs.
    pub fn new(routes: impl IntoIterator<Item = (String, Vec<String>)>) -> Self {
        Self(routes.into_iter().collect())
    }

    /// Whether the documented route `template` has `method` (HEAD with GET;
    /// OPTIONS always, for CORS). Unknown templates are allowed (the router
    /// decides).
    pub fn allows(&self, template: &str, method: &axum::http::Method) -> bool {
        let m = method.as_str();
        match self.0.get(template) {
            None => true,
            Some(list) => {
                m == "OPTIONS" || list.iter().any(|x| x == m) || (m == "HEAD" && list.iter().any(|x| x == "GET"))
            }
        }
    }
}
