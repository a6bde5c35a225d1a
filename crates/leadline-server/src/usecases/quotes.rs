//! Quotes: price one for a lead and a yacht, send it, withdraw it, and the
//! client's answer through its public link (accepting books the yacht).

use axum::http::StatusCode;
use leadline_core::ValidationErrors;
use leadline_core::change::{Change, ChangeSet};
use leadline_core::id::{LeadId, QuoteId, YachtId};
use leadline_core::lead::CharterType;
use leadline_core::pricing::{PriceRequest, price};
use leadline_core::quote::{NewQuoteRequest, Quote, QuoteStatus};
use leadline_core::tenant::Tenant;
use leadline_core::text::clean_opt;

use crate::clock;
use crate::effects::Effects;
use crate::error::{ApiError, ApiResult};
use crate::events;
use crate::state::AppState;

/// The client's page of a sent quote.
pub fn quote_url(s: &AppState, token: &str) -> String {
    format!("{}/q/{token}", s.config.public_base_url)
}

/// A quote as answers show it: with its page's address once sent.
pub fn shown(s: &AppState, mut q: Quote) -> Quote {
    q.url = q.token.as_deref().map(|t| quote_url(s, t));
    q
}

/// A public token: 32 random bytes, base64url.
pub fn new_token() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// A tenant's quote by id text; 404 for a malformed or unknown id.
pub async fn find(s: &AppState, tenant: &Tenant, id: &str) -> ApiResult<Quote> {
    let id = QuoteId::parse(id).map_err(|_| ApiError::NotFound)?;
    s.store.get_quote(&tenant.id, &id).await?.ok_or(ApiError::NotFound)
}

/// Prices a quote for a lead and a yacht (a draft). Dates, guests and charter
/// type default to the lead's; VAT to the tenant's; APA to the yacht's, else the
/// tenant's; `quote.created` to subscribed endpoints.
pub async fn price_quote(fx: &Effects, s: &AppState, tenant: &Tenant, req: NewQuoteRequest) -> ApiResult<Quote> {
    let bad = |ptr: &str, d: &str| ApiError::Validation(ValidationErrors::single(ptr, d));
    let lead_id = LeadId::parse(&req.lead_id).map_err(|_| bad("/lead_id", "is not a lead id"))?;
    let yacht_id = YachtId::parse(&req.yacht_id).map_err(|_| bad("/yacht_id", "is not a yacht id"))?;
    // Another tenant's lead or yacht is missing here, exactly like one that never was.
    let lead = leadline_store::Scoped::new(s.store.as_ref(), &tenant.id)
        .lead(&lead_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let yacht = s
        .store
        .get_yacht(&tenant.id, &yacht_id)
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
    let settings = &tenant.settings;
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
        tenant_id: tenant.id.clone(),
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
    let endpoints = s.store.list_endpoints(&tenant.id).await?;
    let mut cs = ChangeSet::one(Change::InsertQuote(q.clone()));
    cs.changes.extend(
        events::webhook(&tenant.id, Some(&q.lead_id), &endpoints, "quote.created", &q, now)
            .map_err(ApiError::internal)?,
    );
    let out = q.clone();
    let q = fx
        .commit(s.store.as_ref(), cs, StatusCode::CREATED, move |_| out)
        .await?;
    metrics::counter!("leadline_quotes_created_total").increment(1);
    Ok(q)
}

/// Emails the client the quote and its link: the quote becomes `sent` and the
/// lead `quoted`. Sending a sent quote again sends the email again, with the same
/// link.
pub async fn send(fx: &Effects, s: &AppState, tenant: &Tenant, id: &str) -> ApiResult<Quote> {
    let q = find(s, tenant, id).await?;
    fx.set_resource(&q.id);
    let now = clock::now();
    let next = q.send(new_token, now)?;
    let lead = leadline_store::Scoped::new(s.store.as_ref(), &tenant.id)
        .lead(&q.lead_id)
        .await?
        .ok_or_else(|| ApiError::Conflict("The lead of this quote was erased.".into()))?;
    let url = quote_url(s, next.token.as_deref().unwrap_or_default());
    let mut cs = ChangeSet::one(Change::UpdateQuote(next.clone()));
    if let Some(quoted) = lead.mark_quoted(now) {
        cs.push(Change::UpdateLead(quoted));
    }
    let ctx = serde_json::json!({
        "company_name": tenant.settings.company_name,
        "lead": {"name": lead.name, "email": lead.email.as_str()},
        "quote_url": url, "quote_id": next.id, "yacht": next.yacht_name,
        "total": next.total.display(),
    });
    cs.changes.extend(events::email(
        tenant,
        Some(&lead.id),
        "quote",
        &lead.locale,
        lead.email.as_str(),
        &ctx,
        now,
    ));
    let endpoints = s.store.list_endpoints(&tenant.id).await?;
    let shown_quote = shown(s, next);
    cs.changes.extend(
        events::webhook(&tenant.id, Some(&lead.id), &endpoints, "quote.sent", &shown_quote, now)
            .map_err(ApiError::internal)?,
    );
    let out = shown_quote.clone();
    fx.commit(s.store.as_ref(), cs, StatusCode::OK, move |_| out).await
}

/// Withdraws a draft or sent quote.
pub async fn cancel(fx: &Effects, s: &AppState, tenant: &Tenant, id: &str) -> ApiResult<Quote> {
    let q = find(s, tenant, id).await?;
    fx.set_resource(&q.id);
    let next = q.cancel(clock::now())?;
    let out = shown(s, next.clone());
    fx.commit(
        s.store.as_ref(),
        ChangeSet::one(Change::UpdateQuote(next)),
        StatusCode::OK,
        move |_| out,
    )
    .await
}

/// The client answers a sent quote through its link: accepting books the yacht
/// for its nights (the lead is won; staff are told), declining closes it; each
/// with its event to subscribed endpoints. A lost race says which: the yacht was
/// booked by another quote meanwhile, or this quote was answered already.
pub async fn answer(fx: &Effects, s: &AppState, q: &Quote, tenant: &Tenant, accept: bool) -> ApiResult<()> {
    fx.set_resource(&q.id);
    let now = clock::now();
    let lead = s.store.get_lead(&q.tenant_id, &q.lead_id).await?;
    let endpoints = s.store.list_endpoints(&q.tenant_id).await?;
    let mut cs = ChangeSet::new();
    if accept {
        let (next, booking) = q.accept(now)?;
        cs.push(Change::UpdateQuote(next.clone()))
            .push(Change::InsertBooking(booking.clone()));
        if let Some(won) = lead.as_ref().and_then(|l| l.mark_won(now)) {
            cs.push(Change::UpdateLead(won));
        }
        let ctx = serde_json::json!({
            "company_name": tenant.settings.company_name, "quote_id": q.id,
            "lead": {"name": lead.as_ref().map(|l| l.name.clone()).unwrap_or_default()},
        });
        for staff in &tenant.settings.notification_emails {
            cs.changes.extend(events::email(
                tenant,
                Some(&q.lead_id),
                "quote_accepted",
                "en",
                staff.as_str(),
                &ctx,
                now,
            ));
        }
        let lead_id = Some(&q.lead_id);
        cs.changes.extend(
            events::webhook(&tenant.id, lead_id, &endpoints, "quote.accepted", &next, now)
                .map_err(ApiError::internal)?,
        );
        cs.changes.extend(
            events::webhook(&tenant.id, lead_id, &endpoints, "booking.created", &booking, now)
                .map_err(ApiError::internal)?,
        );
    } else {
        let next = q.decline(now)?;
        cs.push(Change::UpdateQuote(next.clone()));
        cs.changes.extend(
            events::webhook(&tenant.id, Some(&q.lead_id), &endpoints, "quote.declined", &next, now)
                .map_err(ApiError::internal)?,
        );
    }
    let status = StatusCode::SEE_OTHER;
    fx.commit(s.store.as_ref(), cs, status, |_| ())
        .await
        .map(|_| ())
        .map_err(|e| match e {
            // Booked meanwhile by another quote, or this one answered by another
            // request: each says so.
            ApiError::Booked => ApiError::Conflict("The yacht is no longer available on these dates.".into()),
            ApiError::Stale => ApiError::Conflict("This quote was answered already.".into()),
            e => e,
        })
}
