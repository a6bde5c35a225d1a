//! What every mutating request carries with it: its audit entry and its
//! idempotency record, written in the same transaction as its change.
//!
//! The [`effects`] middleware wraps every routed request. It claims the
//! `Idempotency-Key` (replaying a finished request, refusing a running or a
//! different one), and afterwards writes what the handler did not: the audit entry
//! of a failed or read-only admin request, the stored response of a 4xx, or the
//! release of a claim after a 5xx. Handlers commit through [`Effects::commit`],
//! which adds the audit entry and the completed idempotency record to their change
//! set, so a request takes effect exactly once with its audit entry or not at all.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use leadline_core::audit::{ActorType, AuditEntry};
use leadline_core::change::{Change, ChangeSet, Committed, IdempotentResponse};
use leadline_core::id::{AuditId, TenantId};
use leadline_store::{ClaimOutcome, IdempotencyClaim, Store};
use serde::Serialize;
use sha2::Digest;

use crate::auth::Principal;
use crate::clock;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::MAX_BODY;
use crate::middleware::RequestId;
use crate::state::AppState;

#[derive(Debug, Clone)]
struct State_ {
    request_id: Option<String>,
    ip: Option<String>,
    user_agent: Option<String>,
    method: String,
    route: String,
    actor_type: ActorType,
    actor_id: Option<String>,
    tenant_id: Option<TenantId>,
    resource_id: Option<String>,
    details: serde_json::Value,
    claim: Option<Arc<crate::claims::Held>>,
    cors_origin: Option<String>,
    outbox: Option<Arc<crate::worker::Handoff>>,
    action: Option<String>,
    /// The committed answer's JSON, made inside the transaction for the stored
    /// idempotency record; a handler may send it as is ([`Effects::take_answer`]).
    answer: Option<axum::body::Bytes>,
    done: bool,
    /// The answer is a decoy (spam answered like a success): nothing of the
    /// request is stored, not even its idempotency record or audit entry.
    discard: bool,
}

/// The audit and idempotency context of one request (or of a CLI command).
#[derive(Clone)]
pub struct Effects(Arc<Mutex<State_>>);

impl Effects {
    fn new(s: State_) -> Self {
        Self(Arc::new(Mutex::new(s)))
    }

    fn with<R>(&self, f: impl FnOnce(&mut State_) -> R) -> R {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    /// The context of a command run by Leadline itself (`actor_id` names it).
    pub fn system(actor_id: &str, action_route: &str) -> Self {
        Self::new(State_ {
            request_id: None,
            ip: None,
            user_agent: None,
            method: "CLI".into(),
            route: action_route.into(),
            actor_type: ActorType::System,
            actor_id: Some(actor_id.into()),
            tenant_id: None,
            resource_id: None,
            details: serde_json::Value::Null,
            claim: None,
            cors_origin: None,
            outbox: None,
            action: None,
            answer: None,
            done: false,
            discard: false,
        })
    }

    /// The request acts through a quote's public link: its token, checked by the
    /// quote page's handler, is the only credential that is not a key (keys are
    /// read once, by `auth`, before the request has its effects).
    pub fn act_as_public_link(&self, quote: &leadline_core::id::QuoteId, tenant: &TenantId) {
        self.with(|s| {
            s.actor_type = ActorType::PublicLink;
            s.actor_id = Some(quote.to_string());
            s.tenant_id = Some(tenant.clone());
        });
    }

    /// Records the tenant concerned (an admin acting on a tenant).
    pub fn set_tenant(&self, tenant: &TenantId) {
        self.with(|s| s.tenant_id = Some(tenant.clone()));
    }

    /// Records the resource acted on.
    pub fn set_resource(&self, id: impl std::fmt::Display) {
        self.with(|s| s.resource_id = Some(id.to_string()));
    }

    /// Records details for the audit entry (redacted before storing).
    pub fn set_details(&self, details: serde_json::Value) {
        self.with(|s| s.details = details);
    }

    /// Names the audit action when the route alone does not (maintenance actions).
    pub fn set_action(&self, action: &str) {
        self.with(|s| s.action = Some(action.to_owned()));
    }

    /// Stores nothing of this request: its answer is a decoy for a bot.
    pub fn discard(&self) {
        self.with(|s| s.discard = true);
    }

    /// Lets the browser read the response of a cross-origin lead capture.
    pub fn grant_cors(&self, origin: String) {
        self.with(|s| s.cors_origin = Some(origin));
    }

    fn entry(s: &State_, status: u16) -> AuditEntry {
        let (mut action, resource_type) = action_for(&s.method, &s.route);
        if let Some(a) = &s.action {
            action = a.clone();
        }
        AuditEntry {
            id: AuditId::generate(),
            tenant_id: s.tenant_id.clone(),
            at: clock::now(),
            actor_type: s.actor_type,
            actor_id: s.actor_id.clone(),
            action,
            resource_type: resource_type.map(str::to_owned),
            resource_id: s.resource_id.clone(),
            request_id: s.request_id.clone(),
            ip: s.ip.clone(),
            user_agent: s.user_agent.clone(),
            status,
            details: leadline_core::redact::json(&s.details),
        }
    }

    /// Commits `cs` with this request's audit entry and, when the request has an
    /// idempotency key, its stored response, all in one transaction. `respond`
    /// builds the response body inside the transaction from what the commit
    /// decided; the same value is returned to the handler.
    pub async fn commit<T>(
        &self,
        store: &dyn Store,
        cs: ChangeSet,
        status: StatusCode,
        respond: impl FnOnce(&Committed) -> T + Send + 'static,
    ) -> ApiResult<T>
    where
        T: Serialize + Send + 'static,
    {
        self.commit_then(store, cs, status, move |c| (respond(c), Vec::new()))
            .await
    }

    /// Like [`Effects::commit`], where `respond` also returns writes decided from
    /// what the commit decided (the notifications of a lead that may be a
    /// duplicate), made in the same transaction.
    pub async fn commit_then<T>(
        &self,
        store: &dyn Store,
        cs: ChangeSet,
        status: StatusCode,
        respond: impl FnOnce(&Committed) -> (T, Vec<Change>) + Send + 'static,
    ) -> ApiResult<T>
    where
        T: Serialize + Send + 'static,
    {
        self.commit_inner(store, cs, status, move |c| {
            let (value, changes) = respond(c);
            (value, changes, None)
        })
        .await
    }

    /// Like [`Effects::commit`], where the audit entry's details are what
    /// `respond` makes of what the commit decided (the rows a cleanup deleted).
    pub async fn commit_reporting<T>(
        &self,
        store: &dyn Store,
        cs: ChangeSet,
        status: StatusCode,
        respond: impl FnOnce(&Committed) -> (T, serde_json::Value) + Send + 'static,
    ) -> ApiResult<T>
    where
        T: Serialize + Send + 'static,
    {
        self.commit_inner(store, cs, status, move |c| {
            let (value, details) = respond(c);
            (value, Vec::new(), Some(details))
        })
        .await
    }

    async fn commit_inner<T>(
        &self,
        store: &dyn Store,
        mut cs: ChangeSet,
        status: StatusCode,
        respond: impl FnOnce(&Committed) -> (T, Vec<Change>, Option<serde_json::Value>) + Send + 'static,
    ) -> ApiResult<T>
    where
        T: Serialize + Send + 'static,
    {
        let mut snapshot = self.with(|s| s.clone());
        let slot: Arc<Mutex<Option<Answered<T>>>> = Arc::new(Mutex::new(None));
        let out = slot.clone();
        // The new messages are leased to this process's dispatcher in the same
        // transaction, and handed to it once that has committed (worker.rs).
        let leases = Leases::new(snapshot.outbox.clone());
        leases.lease(&mut cs.changes);
        let in_tx = leases.clone();
        let settle = leases.clone();
        cs.settled = leadline_core::change::Settled::new(move |committed| settle.settle(committed));
        cs.finish = Some(Box::new(move |committed: &Committed| {
            let (value, mut changes, details) = respond(committed);
            in_tx.lease(&mut changes);
            if let Some(d) = details {
                snapshot.details = d;
            }
            // The stored answer is the one the client gets: a value that does not
            // serialise is a 500 for both (never an empty body under the key).
            let (status, body) = if status == StatusCode::NO_CONTENT {
                (status, Vec::new())
            } else {
                match serde_json::to_vec(&value) {
                    Ok(body) => (status, body),
                    Err(e) => {
                        tracing::error!(error = %e, "a response could not be serialised");
                        let p = ApiError::internal(e).problem();
                        (StatusCode::INTERNAL_SERVER_ERROR, p.to_body())
                    }
                }
            };
            changes.push(Change::InsertAudit(Effects::entry(&snapshot, status.as_u16())));
            // The same bytes answer the client (when they are the value's JSON).
            let answer = (status != StatusCode::NO_CONTENT && status != StatusCode::INTERNAL_SERVER_ERROR)
                .then(|| axum::body::Bytes::copy_from_slice(&body));
            if let Some(held) = &snapshot.claim {
                changes.push(Change::CompleteIdempotency(IdempotentResponse {
                    scope: held.scope.clone(),
                    key: held.key.clone(),
                    holder: Some(held.holder.clone()),
                    record: held.record.clone(),
                    status: status.as_u16(),
                    content_type: match status {
                        StatusCode::NO_CONTENT => None,
                        StatusCode::INTERNAL_SERVER_ERROR => Some("application/problem+json".to_owned()),
                        _ => Some("application/json".to_owned()),
                    },
                    location: None,
                    body,
                }));
            }
            *out.lock().unwrap_or_else(|p| p.into_inner()) = Some((value, answer));
            changes
        }));
        store.commit(cs).await?;
        crate::error::disk_full_cleared();
        let handoff = self.with(|s| {
            s.done = true;
            s.outbox.clone()
        });
        if let Some(h) = handoff
            && leases.claim()
        {
            h.wake();
        }
        let value = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
        let (value, answer) = value.ok_or_else(|| ApiError::internal("commit finished without a response"))?;
        self.with(|s| s.answer = answer);
        Ok(value)
    }

    /// The JSON of the value the last commit returned, as stored for the
    /// idempotency key: sent as is, the answer is not made JSON twice.
    pub fn take_answer(&self) -> Option<axum::body::Bytes> {
        self.with(|s| s.answer.take())
    }
}

/// A committed request's value, and its JSON when that was made in the transaction.
type Answered<T> = (T, Option<axum::body::Bytes>);

/// The messages one commit leases to the dispatcher ([`crate::worker::Handoff`]),
/// before and inside its transaction, settled when the store tells the commit's
/// outcome (`ChangeSet::settled`, told once), whether or not the request still
/// waits.
#[derive(Clone)]
struct Leases(Arc<Mutex<LeaseState>>);

struct LeaseState {
    handoff: Option<Arc<crate::worker::Handoff>>,
    leased: Vec<leadline_core::delivery::OutboxMessage>,
    /// Leads whose deliveries the commit erases: their messages still in the
    /// handoff's memory are dropped once it has committed.
    erased: Vec<leadline_core::id::LeadId>,
    /// The commit may make messages due that were not handed over, so the
    /// dispatcher should claim after it.
    claim: bool,
}

impl Leases {
    fn new(handoff: Option<Arc<crate::worker::Handoff>>) -> Self {
        Self(Arc::new(Mutex::new(LeaseState {
            handoff,
            leased: Vec::new(),
            erased: Vec::new(),
            claim: false,
        })))
    }

    fn lease(&self, changes: &mut [Change]) {
        let mut st = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(h) = st.handoff.clone() {
            let more = h.lease(changes, clock::now());
            st.leased.extend(more);
        }
        for c in changes.iter() {
            if let Change::EraseLeadDeliveries { lead_id, .. } = c {
                st.erased.push(lead_id.clone());
            }
        }
        // Only these changes are known to make nothing due but their own new
        // messages; any other (a replayed dead letter, a tenant or an endpoint
        // active again, whatever comes later) asks the dispatcher to claim.
        st.claim |= changes.iter().any(|c| match c {
            Change::InsertOutbox(m) => m.locked_by.is_none(),
            Change::InsertLead { .. }
            | Change::UpdateLead(_)
            | Change::InsertAudit(_)
            | Change::CompleteIdempotency(_)
            | Change::InsertMailLog(_)
            | Change::InsertQuote(_)
            | Change::UpdateQuote(_)
            | Change::InsertBooking(_)
            | Change::InsertYacht(_)
            | Change::UpdateYacht(_) => false,
            _ => true,
        });
    }

    /// Whether the dispatcher should claim after this commit.
    fn claim(&self) -> bool {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).claim
    }

    fn settle(&self, committed: bool) {
        let mut st = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let leased = std::mem::take(&mut st.leased);
        if let Some(h) = &st.handoff {
            // First the erased leads' messages handed over before this commit; then
            // this commit's own (an erasure's `lead.deleted` among them).
            if committed {
                h.forget(&st.erased);
            }
            h.settle(leased, committed);
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Effects {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Effects>()
            .cloned()
            .ok_or_else(|| ApiError::internal("effects middleware missing"))
    }
}

/// The audit action and resource type of a route.
pub fn action_for(method: &str, route: &str) -> (String, Option<&'static str>) {
    let (action, resource) = match (method, route) {
        ("POST", "/admin/tenants") => ("tenant.create", "tenant"),
        ("GET", "/admin/tenants") => ("tenant.list", "tenant"),
        ("GET", "/admin/tenants/{id}") => ("tenant.read", "tenant"),
        ("PATCH", "/admin/tenants/{id}") => ("tenant.update", "tenant"),
        ("POST", "/admin/tenants/{id}/keys") => ("key.issue", "api_key"),
        ("DELETE", "/admin/tenants/{id}/keys/{key_id}") => ("key.revoke", "api_key"),
        ("GET", "/admin/audit") | ("GET", "/admin/audit/{tenant_id}") => ("audit.read", "audit"),
        ("GET", "/admin/metrics") => ("metrics.read", "metrics"),
        ("PATCH", "/v1/settings") => ("settings.update", "settings"),
        ("POST", "/v1/leads") => ("lead.create", "lead"),
        ("PATCH", "/v1/leads/{id}") => ("lead.update", "lead"),
        ("DELETE", "/v1/leads/{id}") => ("lead.delete", "lead"),
        ("POST", "/v1/webhook-endpoints") => ("webhook_endpoint.create", "webhook_endpoint"),
        ("PATCH", "/v1/webhook-endpoints/{id}") => ("webhook_endpoint.update", "webhook_endpoint"),
        ("DELETE", "/v1/webhook-endpoints/{id}") => ("webhook_endpoint.delete", "webhook_endpoint"),
        ("POST", "/v1/webhook-endpoints/{id}/rotate-secret") => ("webhook_endpoint.rotate_secret", "webhook_endpoint"),
        ("POST", "/v1/webhook-endpoints/{id}/test") => ("webhook_endpoint.test", "webhook_endpoint"),
        ("POST", "/v1/dead-letters/{id}/replay") | ("POST", "/admin/dead-letters/{id}/replay") => {
            ("dead_letter.replay", "dead_letter")
        }
        ("GET", "/admin/dead-letters/{tenant_id}") => ("dead_letter.list", "dead_letter"),
        ("POST", "/admin/maintenance") => ("maintenance.run", "maintenance"),
        ("POST", "/v1/yachts") => ("yacht.create", "yacht"),
        ("PATCH", "/v1/yachts/{id}") => ("yacht.update", "yacht"),
        ("DELETE", "/v1/yachts/{id}") => ("yacht.archive", "yacht"),
        ("POST", "/v1/quotes") => ("quote.create", "quote"),
        ("POST", "/v1/quotes/{id}/send") => ("quote.send", "quote"),
        ("POST", "/v1/quotes/{id}/cancel") => ("quote.cancel", "quote"),
        ("POST", "/q/{token}/accept") => ("quote.accept", "quote"),
        ("POST", "/q/{token}/decline") => ("quote.decline", "quote"),
        ("CLI", r) => return (r.to_owned(), r.split('.').next().map(|_| "cli")),
        (m, r) => return (format!("{} {r}", m.to_ascii_lowercase()), None),
    };
    (action.to_owned(), Some(resource))
}

fn is_mutating(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn valid_key(k: &[u8]) -> bool {
    (1..=255).contains(&k.len()) && k.iter().all(|b| (0x20..=0x7e).contains(b))
}

/// Who owns an idempotency key, once the request is authorized as far as it can
/// be before its handler: `admin`, or `<tenant>:sk` / `<tenant>:pk` for a valid
/// key of an active tenant, so a publishable key never sees what a secret key
/// stored. `None` (no claim, no replay) when the handler is going to refuse: no
/// or a bad key, a suspended tenant, a publishable key off lead capture or from
/// an origin the tenant does not allow. A publishable key's CORS grant is made
/// here, so a replay carries it as the first answer did.
/// The idempotency scope of an authenticated request: `admin`, or the tenant and
/// the kind of key; none for a request its route will refuse anyway.
fn scope_of(principal: &Principal, parts: &Parts, fx: &Effects) -> Option<String> {
    match principal {
        Principal::Missing(_) | Principal::Invalid(_) => None,
        Principal::Admin => Some("admin".to_owned()),
        Principal::Key { tenant, .. } if tenant.status != leadline_core::tenant::TenantStatus::Active => None,
        Principal::Key { key, tenant } => match key.kind {
            leadline_core::api_key::KeyKind::Secret => Some(format!("{}:sk", tenant.id)),
            leadline_core::api_key::KeyKind::Publishable => {
                if !(parts.method == Method::POST && parts.uri.path() == "/v1/leads") {
                    return None;
                }
                let origin = parts.headers.get(header::ORIGIN).and_then(|o| o.to_str().ok());
                let grant = crate::extract::publishable_origin(tenant, origin).ok()?;
                if let Some(o) = grant {
                    fx.grant_cors(o);
                }
                Some(format!("{}:pk", tenant.id))
            }
        },
    }
}

fn replay(stored: IdempotentResponse, request_id: &str, path: &str) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let ct = stored.content_type.clone().unwrap_or_default();
    let body = if ct == "application/problem+json" {
        // The stored problem names its first request; this answer names this one.
        match serde_json::from_slice::<serde_json::Value>(&stored.body) {
            Ok(mut v) => {
                v["request_id"] = request_id.into();
                v["instance"] = path.into();
                serde_json::to_vec(&v).unwrap_or(stored.body)
            }
            Err(_) => stored.body,
        }
    } else {
        stored.body
    };
    let mut res = (status, body).into_response();
    if let Ok(v) = HeaderValue::from_str(&ct)
        && !ct.is_empty()
    {
        res.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    res.headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    metrics::counter!("leadline_idempotent_replays_total").increment(1);
    res
}

/// The middleware; see the module documentation.
pub async fn effects(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default();
    let api = path.starts_with("/v1/") || path.starts_with("/admin/");
    let auditable = (api && (is_mutating(&method) || path.starts_with("/admin/")))
        || (path.starts_with("/q/") && method == Method::POST);
    let ip = crate::net::client_ip(&req, &state.config.trusted_proxies).map(|i| i.to_string());
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|u| u.chars().take(256).collect::<String>());
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .map(str::to_owned);

    // A method the route does not have: its 405, before any claim or audit.
    if !route.is_empty() && !state.routes.allows(&route, &method) {
        return next.run(req).await;
    }

    // One set of credentials: a second Authorization or X-Admin-Key header is an
    // attempt to confuse whichever component reads the other one.
    for name in [header::AUTHORIZATION.as_str(), "x-admin-key"] {
        if req.headers().get_all(name).iter().count() > 1 {
            return ApiError::BadRequest(format!("Send one {name} header, not several.")).into_response();
        }
    }

    // CORS preflight of lead capture: granted only to an origin some tenant
    // allows (see `cors`); the real POST is checked against its own tenant's
    // list and only then readable.
    if route == "/v1/leads" && method == Method::OPTIONS {
        let wants_post = req
            .headers()
            .get(header::ACCESS_CONTROL_REQUEST_METHOD)
            .is_some_and(|m| m == "POST");
        let granted = match origin.as_deref() {
            Some(o) if wants_post && state.origins.allows(state.store.as_ref(), o).await => Some(o),
            _ => None,
        };
        return preflight(granted);
    }

    // Authentication, once: everything after reads the principal.
    let (mut parts, body) = req.into_parts();
    let principal = if api {
        crate::auth::authenticate(&state, &parts).await
    } else {
        Ok(Principal::Missing("This route takes no key."))
    };
    let (principal, refused) = match principal {
        Ok(p) => (p, None),
        Err(e) => (Principal::Missing("The key could not be checked."), Some(e)),
    };
    let (actor_type, actor_id, tenant_id) = principal.actor();
    let fx = Effects::new(State_ {
        request_id: Some(request_id.clone()),
        ip,
        user_agent,
        method: method.to_string(),
        route: route.clone(),
        actor_type,
        actor_id,
        tenant_id,
        resource_id: None,
        details: serde_json::Value::Null,
        claim: None,
        cors_origin: None,
        outbox: Some(state.outbox.clone()),
        action: None,
        answer: None,
        done: false,
        discard: false,
    });
    if let Some(e) = refused {
        return finish(&state, &fx, e.into_response(), auditable).await;
    }
    parts.extensions.insert(principal.clone());
    parts.extensions.insert(fx.clone());
    let mut body = body;

    if api
        && matches!(method, Method::POST | Method::PATCH)
        && let Some(raw) = parts.headers.get("idempotency-key").cloned()
    {
        if !valid_key(raw.as_bytes()) {
            let res = ApiError::BadRequest("Idempotency-Key must be 1 to 255 printable ASCII characters.".into())
                .into_response();
            return finish(&state, &fx, res, auditable).await;
        }
        if let Some(scope) = scope_of(&principal, &parts, &fx) {
            let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
                Ok(b) => b,
                Err(_) => return finish(&state, &fx, ApiError::PayloadTooLarge.into_response(), auditable).await,
            };
            let key = String::from_utf8_lossy(raw.as_bytes()).into_owned();
            // Running here already: no write needed to say so.
            let Some(mut held) = state.claims.hold(&scope, &key) else {
                return ApiError::Conflict("A request with this Idempotency-Key is still running; retry later.".into())
                    .into_response();
            };
            let now = clock::now();
            let claim = IdempotencyClaim {
                scope: scope.clone(),
                key: key.clone(),
                method: method.to_string(),
                path: path.clone(),
                fingerprint: hex::encode(sha2::Sha256::digest(&bytes)),
                now,
                locked_until: now + crate::claims::CLAIM_LEASE,
                expires_at: now + state.config.idempotency_ttl,
                holder: held.holder.clone(),
                exclusive: state.claims.exclusive(),
            };
            match state.store.claim_idempotency(&claim).await {
                Ok(ClaimOutcome::Claimed) => {
                    // A lone server claimed by reading: the record goes with the outcome.
                    held.record = claim.exclusive.then(|| leadline_core::change::IdempotencyRecord {
                        method: claim.method.clone(),
                        path: claim.path.clone(),
                        fingerprint: claim.fingerprint.clone(),
                        created_at: claim.now,
                        expires_at: claim.expires_at,
                    });
                    fx.with(|s| s.claim = Some(Arc::new(held)))
                }
                Ok(ClaimOutcome::InFlight) => {
                    return ApiError::Conflict(
                        "A request with this Idempotency-Key is still running; retry later.".into(),
                    )
                    .into_response();
                }
                Ok(ClaimOutcome::Mismatch) => {
                    let mut p = Problem::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "idempotency-key-reused",
                        "This Idempotency-Key was used for a different request (method, path or body).",
                    );
                    p.errors = Vec::new();
                    let mut res = StatusCode::UNPROCESSABLE_ENTITY.into_response();
                    res.extensions_mut().insert(p);
                    return res;
                }
                Ok(ClaimOutcome::Done(stored)) => {
                    let s = fx.with(|s| s.clone());
                    return with_cors(&s, replay(stored, &request_id, &path));
                }
                Err(e) => return finish(&state, &fx, ApiError::from(e).into_response(), auditable).await,
            }
            body = Body::from(bytes);
        }
    }

    let res = next.run(Request::from_parts(parts, body)).await;
    finish(&state, &fx, res, auditable).await
}

/// Writes what the handler did not: a stored 4xx, a released claim, the audit
/// entry of a failure or of a read; and the CORS grant.
async fn finish(state: &AppState, fx: &Effects, res: Response, auditable: bool) -> Response {
    let s = fx.with(|s| s.clone());
    let mut res = with_cors(&s, res);
    if s.discard {
        if let Some(held) = &s.claim {
            release(state, held).await;
        }
        return res;
    }
    if s.done {
        return res;
    }
    let status = res.status();
    let problem = res.extensions().get::<Problem>().cloned();
    let mut changes = ChangeSet::new();
    if let Some(held) = &s.claim {
        let (scope, key) = (&held.scope, &held.key);
        // A 5xx leaves the key free for the retry; 401 and 403 are never stored
        // (credentials and permissions change; a refusal must not stick to a key).
        if status.is_server_error() || status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            release(state, held).await;
        } else {
            let (content_type, body, res2) = match &problem {
                Some(p) => ("application/problem+json".to_owned(), p.to_body(), res),
                None => {
                    let ct = res
                        .headers()
                        .get(header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    let (parts, b) = res.into_parts();
                    match axum::body::to_bytes(b, usize::MAX).await {
                        Ok(bytes) => (ct, bytes.to_vec(), Response::from_parts(parts, Body::from(bytes))),
                        Err(e) => {
                            // Never store an empty answer under the key: free it for
                            // the retry, and answer 500 (the body is lost).
                            tracing::error!(error = %e, "a response body could not be read to store it");
                            release(state, held).await;
                            return ApiError::internal("response body unreadable").into_response();
                        }
                    }
                }
            };
            res = res2;
            changes.push(Change::CompleteIdempotency(IdempotentResponse {
                scope: scope.clone(),
                key: key.clone(),
                status: status.as_u16(),
                content_type: (!content_type.is_empty()).then_some(content_type),
                location: None,
                body,
                holder: Some(held.holder.clone()),
                record: held.record.clone(),
            }));
        }
    }
    if auditable {
        let mut s = s.clone();
        if let Some(p) = &problem {
            s.details = serde_json::json!({"problem": p.kind, "detail": p.detail});
        }
        changes.push(Change::InsertAudit(Effects::entry(&s, status.as_u16())));
    }
    if !changes.changes.is_empty()
        && let Err(e) = state.store.commit(changes).await
    {
        tracing::error!(error = %e, "could not write the audit entry or idempotency record of a request");
    }
    res
}

/// Frees a claim whose request ends without a stored answer. A claim that was only
/// read (a lone SQLite server) has no row: nothing to write. When the write fails
/// (the database cannot write), the claim is still free for the client's retry on
/// this instance (see `claims`).
async fn release(state: &AppState, held: &crate::claims::Held) {
    if held.record.is_some() {
        return;
    }
    if let Err(e) = state
        .store
        .release_idempotency(&held.scope, &held.key, &held.holder)
        .await
    {
        tracing::warn!(error = %e, "could not release an idempotency claim");
    }
}

/// Lets the browser read a cross-origin answer the request was granted.
fn with_cors(s: &State_, mut res: Response) -> Response {
    if let Some(origin) = &s.cors_origin
        && let Ok(v) = HeaderValue::from_str(origin)
    {
        let h = res.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(
                "X-Request-Id, RateLimit, RateLimit-Policy, Retry-After, Idempotent-Replayed, Location",
            ),
        );
    }
    res
}

fn preflight(origin: Option<&str>) -> Response {
    let mut res = StatusCode::NO_CONTENT.into_response();
    let Some(origin) = origin.and_then(|o| HeaderValue::from_str(o).ok()) else {
        return res;
    };
    let h = res.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST"));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type, idempotency-key, x-request-id"),
    );
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    h.insert(
        header::VARY,
        HeaderValue::from_static("Origin, Access-Control-Request-Method, Access-Control-Request-Headers"),
    );
    res
}

#[cfg(test)]
mod one_path {
    /// Every write of the server reaches the store through `Effects::commit`,
    /// which adds the audit entry: no other module calls `Store::commit`, except
    /// the janitor's quote expiry, which puts the expiry's own audit entry in the
    /// change set (`maintenance::expiry_audit`).
    #[test]
    fn only_the_effects_commit_to_the_store() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut offenders = Vec::new();
        let mut dirs = vec![root.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("src").flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                let rel = path.strip_prefix(&root).expect("inside").display().to_string();
                if rel == "effects.rs" {
                    continue;
                }
                let text = std::fs::read_to_string(&path).expect("read");
                for (n, line) in text.lines().enumerate() {
                    let code = line.split("//").next().unwrap_or("");
                    if code.contains("store.commit(") || code.contains(".store.commit(") {
                        let allowed =
                            rel == "maintenance.rs" && text.contains("cs.push(Change::InsertAudit(expiry_audit(");
                        if !allowed {
                            offenders.push(format!("{rel}:{}", n + 1));
                        }
                    }
                }
            }
        }
        assert!(
            offenders.is_empty(),
            "writes that bypass Effects::commit: {offenders:?}"
        );
    }
}
