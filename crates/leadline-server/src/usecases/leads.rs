//! Leads: capture an inquiry, move it or change its staff fields, erase it.

use axum::http::StatusCode;
use leadline_core::change::{Change, ChangeSet};
use leadline_core::id::LeadId;
use leadline_core::lead::{self, DUPLICATE_WINDOW, Lead, LeadPatch, NewLeadRequest, PatchError};
use leadline_core::tenant::Tenant;

use crate::clock;
use crate::effects::Effects;
use crate::error::{ApiError, ApiResult};
use crate::events;
use crate::state::AppState;

/// What a capture did.
pub enum Captured {
    /// Stored, with its notifications queued.
    Stored(Lead),
    /// A submission that looks automated (`FormSignals`): answered like a
    /// success, so a bot learns nothing, and neither stored nor sent.
    Decoy(Lead),
}

/// A tenant's lead by id text; 404 for a malformed, unknown or erased id.
pub async fn find(s: &AppState, tenant: &Tenant, id: &str) -> ApiResult<Lead> {
    let id = LeadId::parse(id).map_err(|_| ApiError::NotFound)?;
    leadline_store::Scoped::new(s.store.as_ref(), &tenant.id)
        .lead(&id)
        .await?
        .ok_or(ApiError::NotFound)
}

/// Captures an inquiry: validates it, stores it (as a duplicate of the first
/// lead with the same email and dates within ten minutes) with its
/// acknowledgement, staff notifications and `lead.created` events.
pub async fn capture(fx: &Effects, s: &AppState, tenant: &Tenant, req: NewLeadRequest) -> ApiResult<Captured> {
    let now = clock::now();
    let spam = req
        .form
        .as_ref()
        .and_then(|f| f.spam_reason(leadline_core::lead::MIN_FILL_MS));
    let lead = req.validate(&tenant.id, now)?;
    if let Some(reason) = spam {
        metrics::counter!("leadline_leads_rejected_total", "reason" => reason).increment(1);
        fx.discard();
        return Ok(Captured::Decoy(lead));
    }
    // A yacht the tenant does not have (another tenant's included) is simply unknown.
    if let Some(y) = &lead.yacht_id
        && s.store
            .get_yacht(&tenant.id, y)
            .await?
            .is_none_or(|y| y.archived_at.is_some())
    {
        return Err(
            leadline_core::ValidationErrors::single("/yacht_id", "there is no such yacht in this fleet").into(),
        );
    }
    fx.set_resource(&lead.id);
    fx.set_details(serde_json::json!({"email": lead.email.as_str(), "source": lead.source}));
    let endpoints = s.store.list_endpoints(&tenant.id).await?;
    let tenant = tenant.clone();
    let change = Change::InsertLead {
        lead: lead.clone(),
        duplicate_since: now - DUPLICATE_WINDOW,
    };
    // Every template is rendered here, outside the transaction: the emails of a
    // first lead and those of a duplicate (no second acknowledgement); inside,
    // the transaction only chooses, and builds the webhook JSON of a duplicate
    // (only then: a first lead is made JSON for its event here and for its answer).
    let first_notifications = events::lead_created(&tenant, &lead, &endpoints, now).map_err(ApiError::internal)?;
    let duplicate_emails = events::lead_emails(&tenant, &lead, true, now);
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
                    let mut notifications = duplicate_emails;
                    // A lead is plain data: making it JSON does not fail (the
                    // first lead's event above was made the same way).
                    match events::webhook(&tenant.id, Some(&lead.id), &endpoints, "lead.created", &lead, now) {
                        Ok(e) => notifications.extend(e),
                        Err(e) => tracing::error!(error = %e, "a duplicate lead's event could not be made"),
                    }
                    (lead, notifications)
                }
            },
        )
        .await?;
    metrics::counter!("leadline_leads_created_total").increment(1);
    Ok(Captured::Stored(lead))
}

/// Moves a lead along the pipeline or changes its staff fields; `lead.updated`
/// to subscribed endpoints.
pub async fn update(fx: &Effects, s: &AppState, tenant: &Tenant, id: &str, patch: LeadPatch) -> ApiResult<Lead> {
    let current = find(s, tenant, id).await?;
    fx.set_resource(&current.id);
    let now = clock::now();
    let next = patch.apply(&current, now).map_err(|e| match e {
        PatchError::Invalid(v) => ApiError::Validation(v),
        PatchError::IllegalMove { from, to } => ApiError::Conflict(format!(
            "A lead cannot move from `{}` to `{}`.",
            from.as_str(),
            to.as_str()
        )),
    })?;
    fx.set_details(serde_json::json!({"status": next.status, "from": current.status}));
    let endpoints = s.store.list_endpoints(&tenant.id).await?;
    let events = events::webhook(&tenant.id, Some(&current.id), &endpoints, "lead.updated", &next, now)
        .map_err(ApiError::internal)?;
    let out = next.clone();
    let mut cs = ChangeSet::one(Change::UpdateLead(next));
    cs.changes.extend(events);
    fx.commit(s.store.as_ref(), cs, StatusCode::OK, move |_| out).await
}

/// Erases a lead's personal data (GDPR), its deliveries' too, and its email
/// files; `lead.deleted` (no personal data) to subscribed endpoints.
pub async fn erase(fx: &Effects, s: &AppState, tenant: &Tenant, id: &str) -> ApiResult<()> {
    let current = find(s, tenant, id).await?;
    fx.set_resource(&current.id);
    fx.set_details(serde_json::json!({"erased": true}));
    let now = clock::now();
    let erased = lead::erase(&current, now);
    let endpoints = s.store.list_endpoints(&tenant.id).await?;
    let mut cs = ChangeSet::one(Change::UpdateLead(erased));
    // Erasure reaches the deliveries first; the `lead.deleted` event, which holds
    // no personal data, is queued after it.
    cs.push(Change::EraseLeadDeliveries {
        tenant_id: tenant.id.clone(),
        lead_id: current.id.clone(),
    });
    let data = serde_json::json!({"id": current.id, "erased": true});
    cs.changes.extend(events::webhook_value(
        &tenant.id,
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
    Ok(())
}
