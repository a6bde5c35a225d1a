//! The client's quote page (no key): read the quote, accept it (which books the
//! yacht) or decline it. Works without JavaScript; printable; readable on a phone.
//! The token is never logged: request lines and problems name the route template.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use leadline_core::quote::{Quote, QuoteStatus};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::clock;
use crate::effects::Effects;
use crate::error::{ApiError, ApiResult, Problem};
use crate::state::AppState;
use crate::usecases;

const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ company }}: your charter quote</title>
<style>
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1b2a3a;background:#f4f7fa}
main{max-width:44rem;margin:0 auto;padding:1.5rem;background:#fff}
h1{font-size:1.4rem;margin:.2rem 0 1rem}table{width:100%;border-collapse:collapse;margin:1rem 0}
td{padding:.45rem .2rem;border-bottom:1px solid #e3e9ef;vertical-align:top}td.n{text-align:right;white-space:nowrap}
tr.total td{font-weight:700;border-top:2px solid #1b2a3a}.status{padding:.6rem;border-radius:.3rem;background:#eef4fb}
form{display:inline}button{font-size:1rem;padding:.7rem 1.4rem;margin:.3rem .4rem .3rem 0;border-radius:.3rem;border:1px solid #1b4f8a;cursor:pointer}
button.accept{background:#1b4f8a;color:#fff}button.decline{background:#fff;color:#1b4f8a}
@media print{form,.actions{display:none}main{padding:0}body{background:#fff}}
</style></head><body><main>
<p>{{ company }}</p>
<h1>{{ yacht }}, {{ from }} to {{ to }}</h1>
<p>{{ nights }} nights, {{ guests }} guests{% if client %}. Prepared for {{ client }}{% endif %}.</p>
<table>{% for l in lines %}<tr><td>{{ l.label }}{% if l.quantity %} ({{ l.quantity }} × {{ l.unit }}){% endif %}</td><td class="n">{{ l.amount }}</td></tr>{% endfor %}
<tr class="total"><td>Total</td><td class="n">{{ total }}</td></tr></table>
{% if at_base %}<p>Payable at the base, not included: {% for l in at_base %}{{ l.label }} {{ l.amount }}{% if not loop.last %}; {% endif %}{% endfor %}.</p>{% endif %}
<h2>Payments</h2><table>{% for p in schedule %}<tr><td>{{ p.due }}</td><td class="n">{{ p.amount }}</td></tr>{% endfor %}</table>
{% if notes %}<p>{{ notes }}</p>{% endif %}
{% if answerable %}<p>This offer is valid until {{ valid_until }}.</p>
<div class="actions"><form method="post" action="{{ base|safe }}/accept"><button class="accept" type="submit">Accept and book</button></form>
<form method="post" action="{{ base|safe }}/decline"><button class="decline" type="submit">Decline</button></form></div>
{% else %}<p class="status">{{ status_text }}</p>{% endif %}
</main></body></html>"#;

fn money(amount: i64, cur: leadline_core::money::Currency) -> String {
    leadline_core::money::Money { amount, currency: cur }.display()
}

fn render(q: &Quote, company: &str, client: Option<&str>, token: &str) -> Result<String, minijinja::Error> {
    let mut env = minijinja::Environment::new();
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
    env.add_template("page.html", PAGE)?;
    let cur = q.total.currency;
    let now = clock::now();
    let status_text = match q.status {
        QuoteStatus::Accepted => {
            "You accepted this quote. The yacht is booked for you; we will be in touch about the first payment."
        }
        QuoteStatus::Declined => "You declined this quote. Thank you for letting us know.",
        QuoteStatus::Cancelled => "This quote was withdrawn.",
        QuoteStatus::Expired => "This quote has expired.",
        _ if !q.answerable(now) => "This quote has expired.",
        _ => "",
    };
    let ctx = minijinja::context! {
        company => company,
        client => client,
        yacht => q.yacht_name,
        from => q.charter_from.to_string(),
        to => q.charter_to.to_string(),
        nights => (q.charter_to - q.charter_from).num_days(),
        guests => q.guests,
        lines => q.lines.iter().map(|l| minijinja::context! {
            label => l.label, quantity => l.quantity, unit => l.unit_price.map(|u| money(u, cur)), amount => money(l.amount, cur),
        }).collect::<Vec<_>>(),
        at_base => q.payable_at_base.iter().map(|l| minijinja::context! { label => l.label, amount => money(l.amount, cur) }).collect::<Vec<_>>(),
        total => q.total.display(),
        schedule => q.payment_schedule.iter().map(|p| minijinja::context! { due => p.due_date.to_string(), amount => p.amount.display() }).collect::<Vec<_>>(),
        notes => q.notes,
        answerable => q.answerable(now),
        valid_until => q.valid_until.format("%Y-%m-%d %H:%M UTC").to_string(),
        status_text => status_text,
        base => format!("/q/{token}"),
    };
    env.get_template("page.html")?.render(ctx)
}

// `base` is marked safe in the template: it is built from a token that `plausible`
// checked to be base64url only.

/// A token is 43 base64url characters; anything else is not one of ours.
fn plausible(token: &str) -> bool {
    token.len() == 43
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The quote a token names, with its tenant. A suspended tenant's quotes answer
/// as unknown ones: its public surfaces stop with its keys.
async fn load(s: &AppState, token: &str) -> ApiResult<(Quote, leadline_core::tenant::Tenant)> {
    if !plausible(token) {
        return Err(ApiError::NotFound);
    }
    let q = s.store.get_quote_by_token(token).await?.ok_or(ApiError::NotFound)?;
    let tenant = s.store.get_tenant(&q.tenant_id).await?.ok_or(ApiError::NotFound)?;
    if tenant.status != leadline_core::tenant::TenantStatus::Active {
        return Err(ApiError::NotFound);
    }
    Ok((q, tenant))
}

/// The page needs no script, no frame and no referrer (its URL is a secret).
const PAGE_HEADERS: [(header::HeaderName, &str); 5] = [
    (header::CACHE_CONTROL, "no-store"),
    (header::REFERRER_POLICY, "no-referrer"),
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
];

/// The client's quote page (HTML).
#[utoipa::path(get, path = "/q/{token}", tag = "public",
    responses((status = 200, description = "The quote page", content_type = "text/html"), (status = 404, body = Problem)))]
pub async fn page(State(s): State<AppState>, Path(token): Path<String>) -> ApiResult<Response> {
    let (q, tenant) = load(&s, &token).await?;
    let client = s.store.get_lead(&q.tenant_id, &q.lead_id).await?.map(|l| l.name);
    let html = render(&q, &tenant.settings.company_name, client.as_deref(), &token).map_err(ApiError::internal)?;
    Ok((PAGE_HEADERS, Html(html)).into_response())
}

fn back_to_page(token: &str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, format!("/q/{token}")),
            (header::REFERRER_POLICY, "no-referrer".to_owned()),
        ],
    )
        .into_response()
}

async fn answer(s: &AppState, fx: &Effects, token: &str, accept: bool) -> ApiResult<Response> {
    let (q, tenant) = load(s, token).await?;
    fx.act_as_public_link(&q.id, &q.tenant_id);
    fx.set_resource(&q.id);
    usecases::quotes::answer(fx, s, &q, &tenant, accept).await?;
    Ok(back_to_page(token))
}

/// Accept the quote: books the yacht for its dates (409 when they are taken, or the
/// quote cannot be answered), then shows the page again.
#[utoipa::path(post, path = "/q/{token}/accept", tag = "public",
    responses((status = 303, description = "Back to the quote page"), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn accept(State(s): State<AppState>, fx: Effects, Path(token): Path<String>) -> ApiResult<Response> {
    answer(&s, &fx, &token, true).await
}

/// Decline the quote.
#[utoipa::path(post, path = "/q/{token}/decline", tag = "public",
    responses((status = 303, description = "Back to the quote page"), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn decline(State(s): State<AppState>, fx: Effects, Path(token): Path<String>) -> ApiResult<Response> {
    answer(&s, &fx, &token, false).await
}

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(page))
        .routes(routes!(accept))
        .routes(routes!(decline))
}
