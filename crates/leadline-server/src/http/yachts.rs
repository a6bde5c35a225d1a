//! The fleet (`sk_`): yachts with their seasons and extras, and availability.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::NaiveDate;
use leadline_core::id::{BookingId, QuoteId, YachtId};
use leadline_core::page::{Page, PageRequest};
use leadline_core::yacht::{Yacht, YachtInput};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::clock;
use crate::effects::Effects;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{AppJson, AppQuery, SecretKey, TenantAuth};
use crate::state::AppState;
use crate::usecases;

/// Pagination of the fleet.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct YachtListParams {
    /// Include archived yachts.
    pub include_archived: Option<bool>,
    /// Page size, 1 to 200 (default 50).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

async fn find(auth: &TenantAuth, s: &AppState, id: &str) -> ApiResult<Yacht> {
    usecases::fleet::find(s, &auth.tenant, id).await
}

/// Add a yacht.
#[utoipa::path(post, path = "/v1/yachts", tag = "fleet", security(("secret_key" = [])), request_body = YachtInput,
    responses((status = 201, body = Yacht), (status = 422, body = Problem)))]
pub async fn create_yacht(
    SecretKey(auth): SecretKey,
    fx: Effects,
    State(s): State<AppState>,
    AppJson(input): AppJson<YachtInput>,
) -> ApiResult<(StatusCode, Json<Yacht>)> {
    let y = usecases::fleet::add(&fx, &s, &auth.tenant, input).await?;
    Ok((StatusCode::CREATED, Json(y)))
}

/// List the fleet, newest first.
#[utoipa::path(get, path = "/v1/yachts", tag = "fleet", security(("secret_key" = [])), params(YachtListParams),
    responses((status = 200, body = Page<Yacht>)))]
pub async fn list_yachts(
    SecretKey(auth): SecretKey,
    State(s): State<AppState>,
    AppQuery(p): AppQuery<YachtListParams>,
) -> ApiResult<Json<Page<Yacht>>> {
    let page = PageRequest::parse(p.limit, p.cursor.as_deref()).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let rows = s
        .store
        .list_yachts(&auth.tenant.id, p.include_archived.unwrap_or(false), &page)
        .await?;
    Ok(Json(Page::from_overfetch(rows, page.limit, |y| y.id.as_str())))
}

/// Read a yacht.
#[utoipa::path(get, path = "/v1/yachts/{id}", tag = "fleet", security(("secret_key" = [])),
    responses((status = 200, body = Yacht), (status = 404, body = Problem)))]
pub async fn get_yacht(
    SecretKey(auth): SecretKey,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Yacht>> {
    Ok(Json(find(&auth, &s, &id).await?))
}

/// Change a yacht; the given fields replace the stored ones (rates and extras as
/// whole lists), and the whole is validated again.
#[utoipa::path(patch, path = "/v1/yachts/{id}", tag = "fleet", security(("secret_key" = [])), request_body = YachtInput,
    responses((status = 200, body = Yacht), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn patch_yacht(
    SecretKey(auth): SecretKey,
    fx: Effects,
    State(s): State<AppState>,
    Path(id): Path<String>,
    AppJson(input): AppJson<YachtInput>,
) -> ApiResult<Json<Yacht>> {
    Ok(Json(usecases::fleet::update(&fx, &s, &auth.tenant, &id, input).await?))
}

/// Archive a yacht: it leaves the fleet list and cannot be quoted; it stays readable
/// at its address (with `archived_at`), since its bookings and quotes name it.
#[utoipa::path(delete, path = "/v1/yachts/{id}", tag = "fleet", security(("secret_key" = [])),
    responses((status = 204), (status = 404, body = Problem)))]
pub async fn delete_yacht(
    SecretKey(auth): SecretKey,
    fx: Effects,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    usecases::fleet::archive(&fx, &s, &auth.tenant, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The window asked for.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AvailabilityParams {
    /// First day (default today).
    pub from: Option<NaiveDate>,
    /// Last day, exclusive (default a year after `from`; at most two years).
    pub to: Option<NaiveDate>,
}

/// A taken range.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Range {
    /// First day.
    pub from: NaiveDate,
    /// Last day; the next charter may start on it.
    pub to: NaiveDate,
    /// The booking, for a booked range.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub booking_id: Option<BookingId>,
    /// The sent quote, for a held range.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quote_id: Option<QuoteId>,
}

/// Booked and held ranges of a yacht.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Availability {
    pub yacht_id: YachtId,
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// Confirmed bookings.
    pub booked: Vec<Range>,
    /// Sent quotes that the client may still accept.
    pub held: Vec<Range>,
}

/// When the yacht is booked or held.
#[utoipa::path(get, path = "/v1/yachts/{id}/availability", tag = "fleet", security(("secret_key" = [])), params(AvailabilityParams),
    responses((status = 200, body = Availability), (status = 404, body = Problem)))]
pub async fn availability(
    SecretKey(auth): SecretKey,
    State(s): State<AppState>,
    Path(id): Path<String>,
    AppQuery(p): AppQuery<AvailabilityParams>,
) -> ApiResult<Json<Availability>> {
    let y = find(&auth, &s, &id).await?;
    let now = clock::now();
    for d in [p.from, p.to].into_iter().flatten() {
        if !leadline_core::validation::date_in_range(d) {
            return Err(ApiError::BadRequest(format!(
                "`from` and `to` {}.",
                leadline_core::validation::DATE_RANGE
            )));
        }
    }
    let from = p.from.unwrap_or(now.date_naive());
    let to = p.to.unwrap_or(from + chrono::Duration::days(365));
    if to <= from || (to - from).num_days() > 731 {
        return Err(ApiError::BadRequest(
            "`to` must be after `from`, at most two years later.".into(),
        ));
    }
    let booked = s.store.list_bookings(&auth.tenant.id, &y.id, from, to).await?;
    let held = s.store.list_held_quotes(&auth.tenant.id, &y.id, from, to, now).await?;
    Ok(Json(Availability {
        yacht_id: y.id,
        from,
        to,
        booked: booked
            .into_iter()
            .map(|b| Range {
                from: b.charter_from,
                to: b.charter_to,
                booking_id: Some(b.id),
                quote_id: None,
            })
            .collect(),
        held: held
            .into_iter()
            .map(|q| Range {
                from: q.charter_from,
                to: q.charter_to,
                booking_id: None,
                quote_id: Some(q.id),
            })
            .collect(),
    }))
}

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_yacht, list_yachts))
        .routes(routes!(get_yacht, patch_yacht, delete_yacht))
        .routes(routes!(availability))
}
