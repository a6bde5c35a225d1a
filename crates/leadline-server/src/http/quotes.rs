//! Quotes (`sk_`): price a yacht for a lead, send it, cancel it.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use leadline_core::ValidationErrors;
use leadline_core::change::{Change, ChangeSet};
use leadline_core::id::{LeadId, QuoteId, YachtId};
use leadline_core::lead::CharterType;
use leadline_core::page::{Page, PageRequest};
use leadline_core::pricing::{PriceRequest, price};
use leadline_core::quote::{NewQuoteRequest, Quote, QuoteStatus};
use leadline_core::text::clean_opt;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::clock;
use crate::effects::Effects;
use crate::error::{ApiError, ApiResult, Problem};
use crate::events;
use crate::extract::{AppJson, AppQuery, SecretKey, TenantAuth};
use crate::state::AppState;

/// The client's page of a sent quote.
pub fn quote_url(s: &AppState, token: &str) -> String {
    format!("{}/q/{token}", s.config.public_base_url)
}

fn shown(s: &AppState, mut q: Quote) -> Quote {
    q.url = q.token.as_deref().map(|t| quote_url(s, t));
    q
}

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
    let bad = |ptr: &str, d: &str| ApiError::Validation(ValidationErrors::single(ptr, d));
    let lead_id = LeadId::parse(&req.lead_id).map_err(|_| bad("/lead_id", "is not a lead id"))?;
    let yacht_id = YachtId::parse(&req.yacht_id).map_err(|_| bad("/yacht_id", "is not a yacht id"))?;
    // Another tenant's lead or yacht is missing here, exactly like one that never was.
    let lead = auth.store().lead(&lead_id).await?.ok_or(ApiError::NotFound)?;
    let yacht = s
        .store
        .get_yacht(&auth.tenant.id, &yacht_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    if yacht.archived_at.is_some() {
        return Err(bad("/yacht_id", "the yacht is archived"));
    }
    let now = clock::now();
    let from = req
        .charter_from
        .or(lead.charter_from)
        .ok_or_else(|| bad("/charter_from", "is required: the lead has no dates"))?;
    let to = req
        .charter_to
        .or(lead.charter_to)
        .ok_or_else(|| bad("/charter_to", "is required: the lead has no dates"))?;
    for (p, d) in [("/charter_from", from), ("/charter_to", to)] {
        if !leadline_core::validation::date_in_range(d) {
            return Err(bad(p, leadline_core::validation::DATE_RANGE));
        }
    }
    if from < now.date_naive() {
        return Err(bad("/charter_from", "must not be in the past"));
    }
    let guests = req.guests.or(lead.guests).map(|g| g.adults + g.children).unwrap_or(1);
    let charter_type = req.charter_type.or(lead.charter_type);
    let settings = &auth.tenant.settings;
    let notes = clean_opt(req.notes.as_deref(), 5000, true).map_err(|d| bad("/notes", &d))?;
    let valid_until = req
        .valid_until
        .unwrap_or(now + chrono::Duration::days(i64::from(settings.quote_validity_days)));
    if valid_until <= now {
        return Err(bad("/valid_until", "must be in the future"));
    }
    if !leadline_core::validation::date_in_range(valid_until.date_naive()) {
        return Err(bad("/valid_until", leadline_core::validation::DATE_RANGE));
    }
    let priced = price(&PriceRequest {
        yacht: &yacht,
        charter_from: from,
        charter_to: to,
        guests,
        crewed: charter_type == Some(CharterType::Crewed),
        extras: &req.extras,
        discounts: &req.discounts,
        discount_cap: settings.discount_cap_percent,
        vat: req.vat_percent.unwrap_or(settings.vat_percent),
        apa: req.apa_percent.or(yacht.apa_percent).unwrap_or(settings.apa_percent),
        delivery_fee: req.delivery_fee,
        schedule: &settings.payment_schedule,
        today: now.date_naive(),
    })?;
    let q = Quote {
        id: QuoteId::generate(),
        tenant_id: auth.tenant.id.clone(),
        lead_id: lead.id.clone(),
        yacht_id: yacht.id.clone(),
        yacht_name: yacht.name.clone(),
        status: QuoteStatus::Draft,
        charter_from: from,
        charter_to: to,
        guests,
        charter_type,
        lines: priced.lines,
        total: priced.total,
        payment_schedule: priced.payment_schedule,
        payable_at_base: priced.payable_at_base,
        valid_until,
        notes,
        url: None,
        token: None,
        booking_id: None,
        created_at: now,
        updated_at: now,
        sent_at: None,
        answered_at: None,
        version: 1,
    };
    fx.set_resource(&q.id);
    fx.set_details(serde_json::json!({"lead_id": q.lead_id, "yacht_id": q.yacht_id, "total": q.total}));
    let endpoints = s.store.list_endpoints(&auth.tenant.id).await?;
    let mut cs = ChangeSet::one(Change::InsertQuote(q.clone()));
    cs.changes.extend(
        events::webhook(&auth.tenant.id, Some(&q.lead_id), &endpoints, "quote.created", &q, now)
            .map_err(ApiError::internal)?,
    );
    let out = q.clone();
    let q = fx
        .commit(s.store.as_ref(), cs, StatusCode::CREATED, move |_| out)
        .await?;
    metrics::counter!("leadline_quotes_created_total").increment(1);
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

async fn find(auth: &TenantAuth, s: &AppState, id: &str) -> ApiResult<Quote> {
    let id = QuoteId::parse(id).map_err(|_| ApiError::NotFound)?;
    s.store.get_quote(&auth.tenant.id, &id).await?.ok_or(ApiError::NotFound)
}

/// Read a quote.
#[utoipa::path(get, path = "/v1/quotes/{id}", tag = "quotes", security(("secret_key" = [])),
    responses((status = 200, body = Quote), (status = 404, body = Problem)))]
pub async fn get_quote(
    SecretKey(auth): SecretKey,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Quote>> {
    Ok(Json(shown(&s, find(&auth, &s, &id).await?)))
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
    let q = find(&auth, &s, &id).await?;
    fx.set_resource(&q.id);
    let now = clock::now();
    let next = q.send(new_token, now)?;
    let lead = auth
        .store()
        .lead(&q.lead_id)
        .await?
        .ok_or_else(|| ApiError::Conflict("The lead of this quote was erased.".into()))?;
    let url = quote_url(&s, next.token.as_deref().unwrap_or_default());
    let mut cs = ChangeSet::one(Change::UpdateQuote(next.clone()));
    if let Some(quoted) = lead.mark_quoted(now) {
        cs.push(Change::UpdateLead(quoted));
    }
    let ctx = serde_json::json!({
        "company_name": auth.tenant.settings.company_name,
        "lead": {"name": lead.name, "email": lead.email.as_str()},
        "quote_url": url, "quote_id": next.id, "yacht": next.yacht_name,
        "total": next.total.display(),
    });
    cs.changes.extend(events::email(
        &auth.tenant,
        Some(&lead.id),
        "quote",
        &lead.locale,
        lead.email.as_str(),
        &ctx,
        now,
    ));
    let endpoints = s.store.list_endpoints(&auth.tenant.id).await?;
    let shown_quote = shown(&s, next);
    cs.changes.extend(
        events::webhook(
            &auth.tenant.id,
            Some(&lead.id),
            &endpoints,
            "quote.sent",
            &shown_quote,
            now,
        )
        .map_err(ApiError::internal)?,
    );
    let out = shown_quote.clone();
    Ok(Json(
        fx.commit(s.store.as_ref(), cs, StatusCode::OK, move |_| out).await?,
    ))
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
    let q = find(&auth, &s, &id).await?;
    fx.set_resource(&q.id);
    let next = q.cancel(clock::now())?;
    let out = shown(&s, next.clone());
    Ok(Json(
        fx.commit(
            s.store.as_ref(),
            ChangeSet::one(Change::UpdateQuote(next)),
            StatusCode::OK,
            move |_| out,
        )
        .await?,
    ))
}

/// A public token: 32 random bytes, base64url.
pub fn new_token() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_quote, list_quotes))
        .routes(routes!(get_quote))
        .routes(routes!(send_quote))
        .routes(routes!(cancel_quote))
}
