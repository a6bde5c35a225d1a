//! Quotes (`sk_`): price a yacht for a lead, send it, cancel it.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use leadline_core::id::LeadId;
use leadline_core::page::{Page, PageRequest};
use leadline_core::quote::{NewQuoteRequest, Quote, QuoteStatus};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::effects::Effects;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{AppJson, AppQuery, SecretKey};
use crate::state::AppState;
use crate::usecases;

use crate::usecases::quotes::{find as find_quote, shown};

/// Price a quote for a lead and a yacht. Dates, guests and charter type default to
/// the lead's; VAT to the tenant's; APA to the yacht's, else the tenant's.
#[utoipa::path(post, path = "/v1/quotes", tag = "quotes", security(("secret_key" = [])), request_body = NewQuoteRequest,
    responses((status = 201, body = Quote), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn create_quote(
    SecretKey(auth): SecretKey,
    fx: Effects,
    State(s): State<AppState>,
    AppJson(req): AppJson<NewQuoteRequest>,
) -> ApiResult<(StatusCode, Json<Quote>)> {
    let q = usecases::quotes::price_quote(&fx, &s, &auth.tenant, req).await?;
    Ok((StatusCode::CREATED, Json(q)))
}

/// Filters of the quote list.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct QuoteListParams {
    /// Quotes of this lead.
    pub lead_id: Option<String>,
    /// `draft`, `sent`, `accepted`, `declined`, `expired` or `cancelled`.
    pub status: Option<String>,
    /// Page size, 1 to 200 (default 50).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// List quotes, newest first.
#[utoipa::path(get, path = "/v1/quotes", tag = "quotes", security(("secret_key" = [])), params(QuoteListParams),
    responses((status = 200, body = Page<Quote>)))]
pub async fn list_quotes(
    SecretKey(auth): SecretKey,
    State(s): State<AppState>,
    AppQuery(p): AppQuery<QuoteListParams>,
) -> ApiResult<Json<Page<Quote>>> {
    let page = PageRequest::parse(p.limit, p.cursor.as_deref()).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let lead = p
        .lead_id
        .as_deref()
        .map(|l| LeadId::parse(l).map_err(|_| ApiError::BadRequest("`lead_id` is not a lead id.".into())))
        .transpose()?;
    let status = p
        .status
        .as_deref()
        .map(|x| QuoteStatus::parse(x).ok_or_else(|| ApiError::BadRequest("unknown `status`.".into())))
        .transpose()?;
    let rows = s
        .store
        .list_quotes(&auth.tenant.id, lead.as_ref(), status, &page)
        .await?;
    let page = Page::from_overfetch(rows, page.limit, |q| q.id.as_str());
    Ok(Json(Page {
        data: page.data.into_iter().map(|q| shown(&s, q)).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Read a quote.
#[utoipa::path(get, path = "/v1/quotes/{id}", tag = "quotes", security(("secret_key" = [])),
    responses((status = 200, body = Quote), (status = 404, body = Problem)))]
pub async fn get_quote(
    SecretKey(auth): SecretKey,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Quote>> {
    Ok(Json(shown(&s, find_quote(&s, &auth.tenant, &id).await?)))
}

/// Email the client the quote and its link; the quote becomes `sent` and the lead
/// `quoted`. Sending a sent quote again sends the email again, with the same link.
#[utoipa::path(post, path = "/v1/quotes/{id}/send", tag = "quotes", security(("secret_key" = [])),
    responses((status = 200, body = Quote), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn send_quote(
    SecretKey(auth): SecretKey,
    fx: Effects,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Quote>> {
    Ok(Json(usecases::quotes::send(&fx, &s, &auth.tenant, &id).await?))
}

/// Withdraw a draft or sent quote.
#[utoipa::path(post, path = "/v1/quotes/{id}/cancel", tag = "quotes", security(("secret_key" = [])),
    responses((status = 200, body = Quote), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn cancel_quote(
    SecretKey(auth): SecretKey,
    fx: Effects,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Quote>> {
    Ok(Json(usecases::quotes::cancel(&fx, &s, &auth.tenant, &id).await?))
}

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_quote, list_quotes))
        .routes(routes!(get_quote))
        .routes(routes!(send_quote))
        .routes(routes!(cancel_quote))
}
