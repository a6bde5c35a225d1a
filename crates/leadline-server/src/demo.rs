//! `serve --demo`: a demo charter company to try the API at once.

use leadline_core::api_key::KeyKind;
use leadline_core::tenant::{NewTenantRequest, SettingsPatch};
use leadline_store::Store;

use crate::effects::Effects;
use crate::error::{ApiError, ApiResult};
use crate::usecases::tenants as ops;

/// Slug of the demo company.
pub const DEMO_SLUG: &str = "aegean-demo";

/// What the demo seeded: the company and fresh keys.
pub struct Demo {
    /// Tenant id.
    pub tenant_id: String,
    /// Company name.
    pub name: String,
    /// A secret key.
    pub secret_key: String,
    /// A publishable key.
    pub publishable_key: String,
}

/// Creates the demo company, or issues fresh keys for it when it exists already
/// (keys are only ever shown once).
pub async fn seed(store: &dyn Store) -> ApiResult<Demo> {
    if let Some(t) = store.get_tenant_by_slug(DEMO_SLUG).await.map_err(ApiError::from)? {
        let sk = ops::issue_key(
            &Effects::system("demo", "key.issue"),
            store,
            t.id.as_str(),
            KeyKind::Secret,
        )
        .await?;
        let pk = ops::issue_key(
            &Effects::system("demo", "key.issue"),
            store,
            t.id.as_str(),
            KeyKind::Publishable,
        )
        .await?;
        return Ok(Demo {
            tenant_id: t.id.to_string(),
            name: t.name,
            secret_key: sk.plaintext,
            publishable_key: pk.plaintext,
        });
    }
    let req = NewTenantRequest {
        name: "Aegean Demo Charters".into(),
        slug: Some(DEMO_SLUG.into()),
        settings: SettingsPatch {
            notification_emails: Some(vec!["bookings@aegean-demo.example".into()]),
            ..Default::default()
        },
    };
    let c = ops::create_tenant(&Effects::system("demo", "tenant.create"), store, req).await?;
    seed_fleet(store, &c.tenant).await?;
    Ok(Demo {
        tenant_id: c.tenant.id.to_string(),
        name: c.tenant.name,
        secret_key: c.secret.plaintext,
        publishable_key: c.publishable.plaintext,
    })
}

/// The text printed after start.
pub fn banner(d: &Demo, base: &str, admin_key_source: &str) -> String {
    let from = (chrono::Utc::now().date_naive() + chrono::Duration::days(120)).to_string();
    let to = (chrono::Utc::now().date_naive() + chrono::Duration::days(127)).to_string();
    format!(
        "\nLeadline is running at {base}\n\n\
         Demo company: {name} ({id})\n  \
         secret key:      {sk}\n  \
         publishable key: {pk}\n  \
         admin key:       {admin_key_source}\n\n\
         Capture a lead as the company's website would:\n\n  \
         curl -s -X POST {base}/v1/leads \\\n    \
         -H 'Authorization: Bearer {pk}' -H 'Content-Type: application/json' \\\n    \
         -d '{{\"name\": \"Maria Papadopoulos\", \"email\": \"maria@example.com\", \"phone\": \"+30 694 123 4567\", \
         \"charter_from\": \"{from}\", \"charter_to\": \"{to}\", \"guests\": {{\"adults\": 6, \"children\": 2}}, \
         \"consent\": {{\"privacy_policy\": true}}}}'\n\n\
         Then list the leads:  curl -s {base}/v1/leads -H 'Authorization: Bearer {sk}'\n\
         The fleet to quote:   curl -s {base}/v1/yachts -H 'Authorization: Bearer {sk}'\n\
         API document:         {base}/openapi.json (for people: {base}/docs)\n\n\
         Inquiry widget demo:  {base}/widget/demo\n\
         Paste into a website (list its origin in allowed_origins first):\n\n  \
         <script src=\"{base}/widget/v1.js\" data-leadline-key=\"{pk}\" async></script>\n",
        name = d.name,
        id = d.tenant_id,
        sk = d.secret_key,
        pk = d.publishable_key,
    )
}

/// Two yachts with seasons for this year and the next, and a few extras.
async fn seed_fleet(store: &dyn Store, tenant: &leadline_core::tenant::Tenant) -> ApiResult<()> {
    use leadline_core::change::{Change, ChangeSet};
    use leadline_core::yacht::YachtInput;
    let year = chrono::Datelike::year(&chrono::Utc::now().date_naive());
    let seasons = |low: i64, high: i64| {
        let mut out = Vec::new();
        for y in [year, year + 1] {
            for (season, from, to, rate) in [
                ("low", "01-01", "05-31", low),
                ("high", "06-01", "09-30", high),
                ("low", "10-01", "12-31", low),
            ] {
                out.push(
                    serde_json::json!({"season": season, "from": format!("{y}-{from}"), "to": format!("{y}-{to}"),
                    "weekly_rate": {"amount": rate, "currency": "EUR"}}),
                );
            }
        }
        out
    };
    let yachts = [
        serde_json::json!({
            "name": "Thalassa", "type": "catamaran", "length_m": 12.8, "cabins": 4, "max_guests": 10, "home_port": "Lavrion",
            "charter_types": ["bareboat", "skippered"], "currency": "EUR", "min_nights": 3,
            "security_deposit": {"amount": 300000, "currency": "EUR"}, "rates": seasons(480000, 840000),
            "extras": [
                {"code": "transit_log", "name": "Transit log", "price": {"amount": 15000, "currency": "EUR"}, "unit": "per_charter", "mandatory": true, "paid": "with_booking"},
                {"code": "skipper", "name": "Skipper", "price": {"amount": 18000, "currency": "EUR"}, "unit": "per_day", "paid": "with_booking", "taxable": true},
                {"code": "linen", "name": "Linen and towels", "price": {"amount": 2500, "currency": "EUR"}, "unit": "per_person", "paid": "with_booking", "taxable": true},
                {"code": "outboard", "name": "Outboard engine", "price": {"amount": 10000, "currency": "EUR"}, "unit": "per_week", "paid": "at_base"}
            ]
        }),
        serde_json::json!({
            "name": "Meltemi", "type": "gulet", "length_m": 24.5, "cabins": 6, "max_guests": 12, "home_port": "Bodrum",
            "charter_types": ["crewed"], "currency": "EUR", "min_nights": 7, "apa_percent": "30", "rates": seasons(1400000, 2100000),
            "extras": []
        }),
    ];
    let mut cs = ChangeSet::new();
    for y in yachts {
        let input: YachtInput = serde_json::from_value(y).map_err(ApiError::internal)?;
        let yacht = input.apply(None, &tenant.id, tenant.settings.currency, crate::clock::now())?;
        cs.push(Change::InsertYacht(yacht));
    }
    // Seeded like any other write: with its audit entry, in one transaction.
    let fx = Effects::system("demo", "yacht.create");
    fx.set_tenant(&tenant.id);
    fx.commit(store, cs, axum::http::StatusCode::CREATED, |_| ()).await?;
    Ok(())
}
