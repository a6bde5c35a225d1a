//! Leads: capture (`sk_` or `pk_`), list, read, pipeline moves and erasure (`sk_`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use chrono::{DateTime, Utc};
use leadline_core::api_key::KeyKind;
use leadline_core::change::{Change, ChangeSet};
use leadline_core::id::{LeadId, YachtId};
use leadline_core::lead::{
    self, DUPLICATE_WINDOW, Lead, LeadFilter, LeadPatch, LeadStatus, NewLeadRequest, PatchError,
};
use leadline_core::page::{Page, PageRequest};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::clock;
use crate::effects::Effects;
use crate::error::{ApiError, ApiResult, Problem};
use crate::events;
use crate::extract::{AppJson, AppQuery, SecretKey, TenantAuth};
use crate::state::AppState;

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
) -> ApiResult<(StatusCode, HeaderMap, Json<Lead>)> {
    if auth.key.kind == KeyKind::Publishable {
        let origin = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok());
        if let Some(o) = crate::extract::publishable_origin(&auth.tenant, origin)? {
            // From here on the browser may read the answer, errors included.
            fx.grant_cors(o);
        }
    }
    let now = clock::now();
    let spam = req
        .form
        .as_ref()
        .and_then(|f| f.spam_reason(crate::http::widget::MIN_FILL_MS));
    let lead = req.validate(&auth.tenant.id, now)?;
    if let Some(reason) = spam {
        // Answered like a success, so a bot learns nothing; nothing is stored or sent.
        metrics::counter!("leadline_leads_rejected_total", "reason" => reason).increment(1);
        fx.discard();
        let mut h = HeaderMap::new();
        if let Ok(v) = format!("/v1/leads/{}", lead.id).parse() {
            h.insert(header::LOCATION, v);
        }
        return Ok((StatusCode::CREATED, h, Json(lead)));
    }
    // A yacht the tenant does not have (another tenant's included) is simply unknown.
    if let Some(y) = &lead.yacht_id
        && s.store
            .get_yacht(&auth.tenant.id, y)
            .await?
            .is_none_or(|y| y.archived_at.is_some())
    {
        return Err(
            leadline_core::ValidationErrors::single("/yacht_id", "there is no such yacht in this fleet").into(),
        );
    }
    fx.set_resource(&lead.id);
    fx.set_details(serde_json::json!({"email": lead.email.as_str(), "source": lead.source}));
    let endpoints = s.store.list_endpoints(&auth.tenant.id).await?;
    let tenant = auth.tenant.clone();
    let change = Change::InsertLead {
        lead: lead.clone(),
        duplicate_since: now - DUPLICATE_WINDOW,
    };
    // Every template is rendered here, outside the transaction: the emails of a
    // first lead and those of a duplicate (no second acknowledgement); inside,
    // the transaction only chooses, and builds the webhook JSON of a duplicate.
    let first_notifications = events::lead_created(&tenant, &lead, &endpoints, now).map_err(ApiError::internal)?;
    let duplicate_emails = events::lead_emails(&tenant, &lead, true, now);
    let lead_json = serde_json::to_value(&lead).map_err(ApiError::internal)?;
    let lead = fx
        .commit_then(
            s.store.as_ref(),
            ChangeSet::one(change),
            StatusCode::CREATED,
            move |committed| match committed.duplicates.iter().find(|(id, _)| *id == lead.id) {
                None => (lead, first_notifications),
                Some((_, first)) => {
                    let mut lead = lead;
                    lead.duplicate_of = Some(first.clone());
                    let mut data = lead_json;
                    data["duplicate_of"] = serde_json::Value::String(first.to_string());
                    let mut notifications = duplicate_emails;
                    notifications.extend(events::webhook_value(
                        &tenant.id,
                        Some(&lead.id),
                        &endpoints,
                        "lead.created",
                        data,
                        now,
                    ));
                    (lead, notifications)
                }
            },
        )
        .await?;
    metrics::counter!("leadline_leads_created_total").increment(1);
    let mut h = HeaderMap::new();
    if let Ok(v) = format!("/v1/leads/{}", lead.id).parse() {
        h.insert(header::LOCATION, v);
    }
    Ok((StatusCode::CREATED, h, Json(lead)))
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

async fn find(auth: &TenantAuth, id: &str) -> ApiResult<Lead> {
    let id = LeadId::parse(id).map_err(|_| ApiError::NotFound)?;
    auth.store().lead(&id).await?.ok_or(ApiError::NotFound)
}

/// Read a lead.
#[utoipa::path(get, path = "/v1/leads/{id}", tag = "leads", security(("secret_key" = [])),
    responses((status = 200, body = Lead), (status = 404, body = Problem)))]
pub async fn get_lead(SecretKey(auth): SecretKey, Path(id): Path<String>) -> ApiResult<Json<Lead>> {
    Ok(Json(find(&auth, &id).await?))
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
    let current = find(&auth, &id).await?;
    fx.set_resource(&current.id);
    let next = p.apply(&current, clock::now()).map_err(|e| match e {
        PatchError::Invalid(v) => ApiError::Validation(v),
        PatchError::IllegalMove { from, to } => ApiError::Conflict(format!(
            "A lead cannot move from `{}` to `{}`.",
            from.as_str(),
            to.as_str()
        )),
    })?;
    fx.set_details(serde_json::json!({"status": next.status, "from": current.status}));
    let out = next.clone();
    let endpoints = s.store.list_endpoints(&auth.tenant.id).await?;
    let events = events::webhook(
        &auth.tenant.id,
        Some(&current.id),
        &endpoints,
        "lead.updated",
        &next,
        clock::now(),
    )
    .map_err(ApiError::internal)?;
    let mut cs = ChangeSet::one(Change::UpdateLead(next));
    cs.changes.extend(events);
    Ok(Json(
        fx.commit(s.store.as_ref(), cs, StatusCode::OK, move |_| out).await?,
    ))
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
    let current = find(&auth, &id).await?;
    fx.set_resource(&current.id);
    fx.set_details(serde_json::json!({"erased": true}));
    let now = clock::now();
    let erased = lead::erase(&current, now);
    let endpoints = s.store.list_endpoints(&auth.tenant.id).await?;
    let mut cs = ChangeSet::one(Change::UpdateLead(erased));
    // Erasure reaches the deliveries first; the `lead.deleted` event, which holds
    // no personal data, is queued after it.
    cs.push(Change::EraseLeadDeliveries {
        tenant_id: auth.tenant.id.clone(),
        lead_id: current.id.clone(),
    });
    let data = serde_json::json!({"id": current.id, "erased": true});
    cs.changes.extend(events::webhook_value(
        &auth.tenant.id,
        Some(&current.id),
        &endpoints,
        "lead.deleted",
        data,
        now,
    ));
    fx.commit(s.store.as_ref(), cs, StatusCode::NO_CONTENT, |_| ()).await?;
    // The emails written as files go too; once more after the longest delivery
    // may take, for one that was being written while the lead was erased.
    let (dir, lead_id) = (s.config.data_dir.clone(), current.id.to_string());
    crate::mail::erase_lead_files(&dir, &lead_id).await;
    let again = s.config.webhook_timeout.max(s.config.smtp_timeout) + std::time::Duration::from_secs(5);
    tokio::spawn(async move {
        tokio::time::sleep(again).await;
        crate::mail::erase_lead_files(&dir, &lead_id).await;
    });
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_lead, list_leads))
        .routes(routes!(get_lead, patch_lead, delete_lead))
}
