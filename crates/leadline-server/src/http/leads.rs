//! Leads: capture (`sk_` or `pk_`), list, read, pipeline moves and erasure (`sk_`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use leadline_core::api_key::KeyKind;
use leadline_core::id::YachtId;
use leadline_core::lead::{Lead, LeadFilter, LeadPatch, LeadStatus, NewLeadRequest};
use leadline_core::page::{Page, PageRequest};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::effects::Effects;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{AppJson, AppQuery, SecretKey, TenantAuth};
use crate::state::AppState;
use crate::usecases;

/// Capture an inquiry. With a publishable key from a browser, the `Origin` must be
/// one of the tenant's `allowed_origins` when that list is set. The same email and
/// dates within ten minutes are stored as a duplicate of the first lead.
#[utoipa::path(post, path = "/v1/leads", tag = "leads", security(("secret_key" = []), ("publishable_key" = [])),
    request_body = NewLeadRequest,
    responses((status = 201, body = Lead), (status = 400, body = Problem), (status = 413, body = Problem),
        (status = 415, body = Problem), (status = 422, body = Problem)))]
pub async fn create_lead(
    auth: TenantAuth,
    fx: Effects,
    State(s): State<AppState>,
    headers: HeaderMap,
    AppJson(req): AppJson<NewLeadRequest>,
) -> ApiResult<Response> {
    if auth.key.kind == KeyKind::Publishable {
        let origin = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok());
        if let Some(o) = crate::extract::publishable_origin(&auth.tenant, origin)? {
            // From here on the browser may read the answer, errors included.
            fx.grant_cors(o);
        }
    }
    let lead = match usecases::leads::capture(&fx, &s, &auth.tenant, req).await? {
        usecases::leads::Captured::Stored(lead) | usecases::leads::Captured::Decoy(lead) => lead,
    };
    let mut h = HeaderMap::new();
    if let Ok(v) = format!("/v1/leads/{}", lead.id).parse() {
        h.insert(header::LOCATION, v);
    }
    // A stored lead's JSON was made in its transaction; a decoy's is made here.
    Ok(match fx.take_answer() {
        Some(json) => {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            (StatusCode::CREATED, h, json).into_response()
        }
        None => (StatusCode::CREATED, h, Json(lead)).into_response(),
    })
}

/// Filters and pagination of the lead list.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LeadListParams {
    /// `new`, `contacted`, `quoted`, `won` or `lost`.
    pub status: Option<String>,
    /// RFC 3339: created at or after.
    pub created_after: Option<String>,
    /// RFC 3339: created before.
    pub created_before: Option<String>,
    /// Text in the name or email, or digits of the phone number.
    pub q: Option<String>,
    /// Leads for this yacht.
    pub yacht_id: Option<String>,
    /// Page size, 1 to 200 (default 50).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

fn parse_time(name: &str, v: Option<&str>) -> ApiResult<Option<DateTime<Utc>>> {
    v.map(|t| {
        DateTime::parse_from_rfc3339(t)
            .map(|d| d.with_timezone(&Utc))
            .map_err(|_| {
                ApiError::BadRequest(format!(
                    "`{name}` must be an RFC 3339 timestamp such as 2027-01-31T00:00:00Z."
                ))
            })
    })
    .transpose()
}

/// List leads, newest first.
#[utoipa::path(get, path = "/v1/leads", tag = "leads", security(("secret_key" = [])), params(LeadListParams),
    responses((status = 200, body = Page<Lead>), (status = 400, body = Problem)))]
pub async fn list_leads(
    SecretKey(auth): SecretKey,
    AppQuery(p): AppQuery<LeadListParams>,
) -> ApiResult<Json<Page<Lead>>> {
    let page = PageRequest::parse(p.limit, p.cursor.as_deref()).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let status = p
        .status
        .as_deref()
        .map(|s| {
            LeadStatus::parse(s)
                .ok_or_else(|| ApiError::BadRequest("`status` must be new, contacted, quoted, won or lost.".into()))
        })
        .transpose()?;
    let yacht_id = p
        .yacht_id
        .as_deref()
        .map(|y| YachtId::parse(y).map_err(|_| ApiError::BadRequest("`yacht_id` is not a yacht id.".into())))
        .transpose()?;
    let q = p.q.map(|q| q.trim().to_owned()).filter(|q| !q.is_empty());
    if q.as_ref().is_some_and(|q| q.chars().count() > 200) {
        return Err(ApiError::BadRequest("`q` must be at most 200 characters.".into()));
    }
    let filter = LeadFilter {
        status,
        created_after: parse_time("created_after", p.created_after.as_deref())?,
        created_before: parse_time("created_before", p.created_before.as_deref())?,
        q,
        yacht_id,
    };
    let rows = auth.store().leads(&filter, &page).await?;
    Ok(Json(Page::from_overfetch(rows, page.limit, |l| l.id.as_str())))
}

/// Read a lead.
#[utoipa::path(get, path = "/v1/leads/{id}", tag = "leads", security(("secret_key" = [])),
    responses((status = 200, body = Lead), (status = 404, body = Problem)))]
pub async fn get_lead(
    SecretKey(auth): SecretKey,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Lead>> {
    Ok(Json(usecases::leads::find(&s, &auth.tenant, &id).await?))
}

/// Move a lead along the pipeline or change its staff fields. Pipeline:
/// `new → contacted → quoted → won`; any open status may become `lost`; `quoted`
/// may go back to `contacted`; `lost` may reopen to `contacted`; `won` is final.
/// Other moves answer 409.
#[utoipa::path(patch, path = "/v1/leads/{id}", tag = "leads", security(("secret_key" = [])),
    request_body = LeadPatch,
    responses((status = 200, body = Lead), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn patch_lead(
    SecretKey(auth): SecretKey,
    fx: Effects,
    State(s): State<AppState>,
    Path(id): Path<String>,
    AppJson(p): AppJson<LeadPatch>,
) -> ApiResult<Json<Lead>> {
    Ok(Json(usecases::leads::update(&fx, &s, &auth.tenant, &id, p).await?))
}

/// Erase a lead's personal data (GDPR). The lead is gone from the API afterwards.
#[utoipa::path(delete, path = "/v1/leads/{id}", tag = "leads", security(("secret_key" = [])),
    responses((status = 204), (status = 404, body = Problem)))]
pub async fn delete_lead(
    SecretKey(auth): SecretKey,
    fx: Effects,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    usecases::leads::erase(&fx, &s, &auth.tenant, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_lead, list_leads))
        .routes(routes!(get_lead, patch_lead, delete_lead))
}
