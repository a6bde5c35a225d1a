//! `serve --demo`: a demo charter company to try the API at once.

use leadline_core::api_key::KeyKind;
use leadline_core::tenant::{NewTenantRequest, SettingsPatch};
use leadline_store::Store;

use crate::effects::Effects;
use crate::error::{ApiError, ApiResult};
use crate::ops;

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
         API document:         {base}/openapi.json\n",
        name = d.name,
        id = d.tenant_id,
        sk = d.secret_key,
        pk = d.publishable_key,
    )
}
