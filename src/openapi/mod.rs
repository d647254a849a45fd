//! `GET /openapi.json` on the public listener: the OpenAPI 3.1 document of
//! the public API (image generation, account reads, the storage API, gallery
//! files), served as written in `public.json`. `tests/openapi.rs` validates
//! it and runs schemathesis against the live routes. (The management API's
//! document is `src/admin_api/openapi.json`.)

use kikaku_filters::GatewayError;
use serde_json::Value;

use crate::reply::Exchange;

static PUBLIC: once_cell::sync::Lazy<Value> = once_cell::sync::Lazy::new(|| {
    serde_json::from_str(include_str!("public.json")).unwrap_or(Value::Null)
});

/// Answer with the public API's document.
pub async fn serve(ex: &mut Exchange<'_>) -> Result<(), GatewayError> {
    ex.json(200, PUBLIC.clone()).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_parses() {
        assert_eq!(super::PUBLIC["openapi"], "3.1.0");
    }
}
