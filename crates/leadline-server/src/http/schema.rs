//! The exact shapes of what requests send, written into the generated OpenAPI
//! document: the patterns, bounds and enums that the core's parsers enforce
//! (`clean_text`, `Email::parse`, `Percent::parse`, `Currency::parse`, ids...),
//! so that a request valid by the document is accepted unless it breaks one of the
//! rules listed in its operation's description (rules across fields or about
//! stored state, which a schema cannot say).
//!
//! The derives describe the types; this module adds what their attributes cannot
//! derive from the parsers. `scripts/test` holds both to account: schemathesis
//! sends requests generated from the document and fails on any schema-valid request
//! refused (or schema-invalid one accepted) that no listed rule explains.

use leadline_core::id::id_pattern;
use serde_json::{Map, Value, json};

/// Characters no text field takes: C0 and C1 controls, line and paragraph
/// separators, bidirectional embeddings and isolates (`text::is_spoofing`).
const BAD: &str = r"\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069";
/// The same for multi-line text, which takes tabs and line breaks.
const BAD_MULTILINE: &str =
    r"\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069";

/// Any text without NUL characters, which no string takes (400 otherwise).
pub(super) const NO_NUL: &str = r"^[^\u0000]*$";

/// Text that must say something: 1 to `max` characters once trimmed, none of
/// [`BAD`]. The bound is in the pattern: `maxLength` would count the whitespace
/// around the text, which the server trims first.
fn text(max: u32) -> Value {
    let inner = max.saturating_sub(2);
    json!({"type": "string",
        "pattern": format!(r"^\s*[^\s{BAD}](?:[^{BAD}]{{0,{inner}}}[^\s{BAD}])?\s*$")})
}

/// Optional text: blank (or `null`) means absent.
fn blank_or_text(max: u32, multiline: bool) -> Value {
    let bad = if multiline { BAD_MULTILINE } else { BAD };
    let inner = max.saturating_sub(2);
    json!({"type": ["string", "null"],
        "pattern": format!(r"^\s*(?:[^\s{bad}](?:[^{bad}]{{0,{inner}}}[^\s{bad}])?)?\s*$")})
}

fn email() -> Value {
    json!({"type": "string", "format": "email", "maxLength": 254})
}

fn id(prefix: &str) -> Value {
    json!({"type": "string", "pattern": id_pattern(prefix)})
}

fn nullable(mut v: Value) -> Value {
    if let Some(t) = v.get("type").and_then(Value::as_str) {
        v["type"] = json!([t, "null"]);
        v
    } else {
        json!({"oneOf": [{"type": "null"}, v]})
    }
}

fn reference(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// An amount of a currency, from `min` minor units up to the largest amount.
fn money(min: i64) -> Value {
    json!({"type": "object", "additionalProperties": false, "required": ["amount", "currency"],
    "properties": {
        "amount": {"type": "integer", "minimum": min, "maximum": leadline_core::money::MAX_AMOUNT,
            "description": "Minor units, e.g. cents: `1250000` is 12,500.00."},
        "currency": reference("Currency"),
    }})
}

fn uint(min: u64, max: u64) -> Value {
    json!({"type": "integer", "minimum": min, "maximum": max})
}

fn strings(items: &[&str]) -> Value {
    json!(items)
}

/// Replaces the schema of `field` of component `component`, keeping its
/// description.
fn set(schemas: &mut Map<String, Value>, component: &str, field: &str, mut schema: Value) {
    let Some(props) = schemas
        .get_mut(component)
        .and_then(|c| c.get_mut("properties"))
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    if let Some(d) = props.get(field).and_then(|p| p.get("description")).cloned()
        && let Some(o) = schema.as_object_mut()
    {
        o.entry("description").or_insert(d);
    }
    props.insert(field.to_owned(), schema);
}

fn require(schemas: &mut Map<String, Value>, component: &str, fields: &[&str]) {
    if let Some(c) = schemas.get_mut(component).and_then(Value::as_object_mut) {
        let list = c.entry("required").or_insert_with(|| json!([]));
        if let Some(list) = list.as_array_mut() {
            for f in fields {
                if !list.iter().any(|x| x == f) {
                    list.push(json!(f));
                }
            }
        }
    }
}

/// `#[serde(flatten)]` comes out as an `allOf` that no body satisfies (the
/// settings forbid other fields); one object with every field says it exactly.
fn flatten(schemas: &mut Map<String, Value>, component: &str, into: &str) {
    let Some(base) = schemas.get(into).cloned() else { return };
    let Some(c) = schemas.get_mut(component) else { return };
    let Some(parts) = c.get("allOf").and_then(Value::as_array).cloned() else {
        return;
    };
    let mut out = base;
    match c.get("description") {
        Some(d) => out["description"] = d.clone(),
        None => {
            if let Some(o) = out.as_object_mut() {
                o.remove("description");
            }
        }
    }
    for part in parts.iter().filter(|p| p.get("$ref").is_none()) {
        if let (Some(dst), Some(src)) = (
            out.get_mut("properties").and_then(Value::as_object_mut),
            part.get("properties").and_then(Value::as_object),
        ) {
            dst.extend(src.clone());
        }
        if let Some(req) = part.get("required").and_then(Value::as_array) {
            let mut all = out
                .get("required")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            all.extend(req.iter().cloned());
            out["required"] = json!(all);
        }
    }
    *c = out;
}

/// Tightens the request schemas of `doc` (see the module's documentation).
pub(super) fn tighten(doc: &mut Value) {
    use leadline_core::{money::CURRENCIES, tenant::TEMPLATE_KINDS, webhook::EVENTS, widget::WIDGET_FIELDS};
    let Some(schemas) = doc.pointer_mut("/components/schemas").and_then(Value::as_object_mut) else {
        return;
    };
    let s = schemas;

    // Shared types.
    if let Some(c) = s.get_mut("Currency") {
        c["enum"] = strings(CURRENCIES);
    }
    if let Some(c) = s.get_mut("Percent") {
        c["pattern"] = json!(r"^(?:0?[0-9]{1,2}(?:\.[0-9]{1,2})?|100(?:\.0{1,2})?)$");
        c["description"] = json!("A percentage from `0` to `100`, a decimal string with at most two decimals.");
    }
    for (component, prefix) in [("YachtId", "yacht"), ("LeadId", "lead"), ("TenantId", "ten")] {
        if let Some(c) = s.get_mut(component) {
            c["pattern"] = json!(id_pattern(prefix));
        }
    }
    for f in ["adults", "children"] {
        set(s, "Guests", f, uint(0, 60));
    }
    let locale = json!({"type": "string", "maxLength": 35,
        "pattern": r"^\s*[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8})*\s*$"});

    // POST /v1/leads
    set(s, "NewLeadRequest", "name", text(200));
    set(s, "NewLeadRequest", "email", email());
    set(s, "NewLeadRequest", "consent", reference("Consent"));
    require(s, "NewLeadRequest", &["name", "email", "consent"]);
    set(
        s,
        "Consent",
        "privacy_policy",
        json!({"type": "boolean", "const": true}),
    );
    set(
        s,
        "NewLeadRequest",
        "phone",
        json!({"type": ["string", "null"], "maxLength": 50,
            "pattern": r"^\s*(?:(?:\+|00)[ ./()-]*[1-9](?:[ ./()-]*[0-9]){7,14}[ ./()-]*)?\s*$",
            "description": "International phone number with its country code (`+` or `00`, 8 to 15 digits; spaces and `.-/()` may separate them), normalised to E.164; blank: none."}),
    );
    set(s, "NewLeadRequest", "destination", blank_or_text(200, false));
    set(s, "NewLeadRequest", "experience", blank_or_text(100, false));
    set(s, "NewLeadRequest", "message", blank_or_text(5000, true));
    set(s, "NewLeadRequest", "source", blank_or_text(100, false));
    set(s, "NewLeadRequest", "locale", nullable(locale.clone()));
    set(s, "NewLeadRequest", "budget", nullable(money(1)));
    set(s, "NewLeadRequest", "yacht_id", nullable(id("yacht")));
    for f in ["source", "medium", "campaign", "term", "content"] {
        set(s, "Utm", f, blank_or_text(200, false));
    }
    set(
        s,
        "FormSignals",
        "honeypot",
        json!({"type": ["string", "null"], "pattern": NO_NUL}),
    );

    // PATCH /v1/leads/{id}
    set(s, "LeadPatch", "assigned_to", blank_or_text(200, false));
    set(s, "LeadPatch", "notes", blank_or_text(10_000, true));
    set(
        s,
        "LeadPatch",
        "tags",
        json!({"type": ["array", "null"], "maxItems": 20, "items": text(50)}),
    );

    // Settings: PATCH /v1/settings, and within the tenant bodies of /admin.
    set(s, "SettingsPatch", "company_name", nullable(text(200)));
    set(
        s,
        "SettingsPatch",
        "notification_emails",
        json!({"type": ["array", "null"], "maxItems": 20, "items": email()}),
    );
    set(s, "SettingsPatch", "mail_from_name", blank_or_text(100, false));
    set(s, "SettingsPatch", "reply_to", nullable(email()));
    set(
        s,
        "SettingsPatch",
        "allowed_origins",
        json!({"type": ["array", "null"], "maxItems": 20, "items": {"type": "string", "maxLength": 261,
            "pattern": r"^\s*[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9.:\[\]-]{1,253}/?\s*$"}}),
    );
    set(s, "SettingsPatch", "currency", nullable(reference("Currency")));
    for f in ["vat_percent", "apa_percent", "discount_cap_percent"] {
        set(s, "SettingsPatch", f, nullable(reference("Percent")));
    }
    set(s, "SettingsPatch", "quote_validity_days", nullable(uint(1, 365)));
    set(
        s,
        "SettingsPatch",
        "payment_schedule",
        json!({"type": ["array", "null"], "minItems": 1, "maxItems": 12, "items": reference("Instalment")}),
    );
    if let Some(c) = s.get_mut("Instalment") {
        *c = json!({"description": c["description"].clone(), "oneOf": [
            {"type": "object", "additionalProperties": false, "required": ["percent", "due"], "properties": {
                "percent": reference("Percent"),
                "due": {"type": "string", "const": "at_booking"},
                "days": {"type": "null"}}},
            {"type": "object", "additionalProperties": false, "required": ["percent", "due", "days"], "properties": {
                "percent": reference("Percent"),
                "due": {"type": "string", "const": "days_before_embarkation"},
                "days": uint(1, 365)}},
        ]});
    }
    let template = json!({"type": "object", "additionalProperties": false, "required": ["subject", "text", "html"],
        "properties": {
            "subject": {"type": "string", "maxLength": 500, "pattern": r"^[^\u0000]*\S[^\u0000]*$"},
            "text": {"type": "string", "maxLength": 50_000, "pattern": NO_NUL},
            "html": {"type": "string", "maxLength": 50_000, "pattern": NO_NUL}}});
    set(
        s,
        "SettingsPatch",
        "templates",
        json!({"type": ["object", "null"],
            "description": "Template overrides, kind → locale → template; replaces the stored map.",
            "propertyNames": {"enum": TEMPLATE_KINDS},
            "additionalProperties": {"type": "object",
                "propertyNames": {"maxLength": 35, "pattern": r"^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8})*$"},
                "additionalProperties": template}}),
    );
    set(
        s,
        "WidgetSettings",
        "fields",
        json!({"type": "array", "uniqueItems": true, "items": {"type": "string", "enum": WIDGET_FIELDS}}),
    );
    set(
        s,
        "WidgetSettings",
        "destinations",
        json!({"type": "array", "maxItems": 50, "items": text(100)}),
    );
    set(
        s,
        "WidgetSettings",
        "accent_color",
        json!({"type": "string", "pattern": r"^\s*#[0-9A-Fa-f]{6}\s*$"}),
    );
    set(
        s,
        "WidgetSettings",
        "font",
        json!({"type": ["string", "null"], "maxLength": 100, "pattern": r#"^\s*[A-Za-z0-9 ,"'-]*\s*$"#}),
    );
    set(s, "WidgetSettings", "success_message", blank_or_text(500, false));
    set(
        s,
        "WidgetSettings",
        "privacy_url",
        json!({"type": ["string", "null"], "maxLength": 500,
            "pattern": format!(r#"^\s*(?:https://[^/?#\s"<{BAD}]*\.[^/?#\s"<{BAD}]*(?:[/?#][^\s"<{BAD}]*)?)?\s*$"#)}),
    );
    set(s, "SettingsPatch", "widget", nullable(reference("WidgetSettings")));

    // POST /admin/tenants, PATCH /admin/tenants/{id}
    flatten(s, "NewTenantRequest", "SettingsPatch");
    set(s, "NewTenantRequest", "name", text(200));
    set(
        s,
        "NewTenantRequest",
        "slug",
        json!({"type": ["string", "null"], "pattern": "^[a-z0-9][a-z0-9-]{0,61}[a-z0-9]$"}),
    );
    flatten(s, "TenantPatch", "SettingsPatch");
    // The widget's configuration (an answer) flattens the widget settings too.
    flatten(s, "WidgetConfig", "WidgetSettings");
    set(s, "TenantPatch", "name", nullable(text(200)));

    // Webhook endpoints.
    // What `url::Url` parses: a host name whose last label is not a number (else
    // it must be an IPv4 address), or an IPv4 address; a port up to 65535.
    let octet = "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])";
    let port = "(?:[0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])";
    let url = json!({"type": "string", "maxLength": 2000, "pattern": format!(
        r"^\s*https://(?:(?:[A-Za-z0-9-]+\.)*[A-Za-z][A-Za-z0-9-]*|(?:{octet}\.){{3}}{octet})(?::{port})?(?:[/?#][^\s{BAD}]*)?\s*$"
    )});
    let mut events: Vec<&str> = vec!["*"];
    events.extend(EVENTS);
    let event_list = json!({"type": "array", "minItems": 1, "maxItems": events.len(),
        "items": {"type": "string", "enum": events}});
    set(s, "NewEndpointRequest", "url", url.clone());
    set(s, "NewEndpointRequest", "events", event_list.clone());
    set(s, "NewEndpointRequest", "description", blank_or_text(500, false));
    set(s, "EndpointPatch", "url", nullable(url));
    set(s, "EndpointPatch", "events", nullable(event_list));
    set(s, "EndpointPatch", "description", blank_or_text(500, false));

    // Yachts: POST takes the whole (name, type and max_guests required), PATCH any part.
    set(s, "YachtInput", "name", nullable(text(200)));
    set(
        s,
        "YachtInput",
        "length_m",
        json!({"type": ["number", "null"], "exclusiveMinimum": 0, "exclusiveMaximum": 200}),
    );
    set(s, "YachtInput", "cabins", nullable(uint(0, u64::from(u32::MAX))));
    set(s, "YachtInput", "max_guests", nullable(uint(1, 60)));
    set(s, "YachtInput", "min_nights", nullable(uint(1, 90)));
    set(s, "YachtInput", "home_port", blank_or_text(200, false));
    set(s, "YachtInput", "security_deposit", nullable(money(0)));
    set(
        s,
        "YachtInput",
        "rates",
        json!({"type": ["array", "null"], "maxItems": 100, "items": reference("RateBand")}),
    );
    set(
        s,
        "YachtInput",
        "extras",
        json!({"type": ["array", "null"], "maxItems": 100, "items": reference("Extra")}),
    );
    set(s, "RateBand", "season", text(100));
    set(s, "RateBand", "weekly_rate", money(1));
    set(
        s,
        "Extra",
        "code",
        json!({"type": "string", "pattern": "^[A-Za-z0-9_-]{1,50}$"}),
    );
    set(s, "Extra", "name", text(200));
    set(s, "Extra", "price", money(0));
    if let Some(mut create) = s.get("YachtInput").cloned() {
        create["description"] = json!("`POST /v1/yachts` body: a whole yacht.");
        for f in ["name", "type", "max_guests"] {
            if let Some(p) = create.pointer_mut(&format!("/properties/{f}")) {
                let plain = match p.get("oneOf").and_then(|o| o.get(1)) {
                    Some(inner) => inner.clone(),
                    None => {
                        let mut q = p.clone();
                        q["type"] = q["type"].get(0).cloned().unwrap_or(Value::Null);
                        q
                    }
                };
                *p = plain;
            }
        }
        create["required"] = json!(["name", "type", "max_guests"]);
        s.insert("NewYachtRequest".into(), create);
    }
    if let Some(c) = s.get_mut("YachtInput") {
        c["description"] = json!("`PATCH /v1/yachts/{id}` body: the fields to change.");
    }

    // POST /v1/quotes
    set(s, "NewQuoteRequest", "lead_id", id("lead"));
    set(s, "NewQuoteRequest", "yacht_id", id("yacht"));
    set(
        s,
        "NewQuoteRequest",
        "extras",
        json!({"type": "array", "items": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,50}$"}}),
    );
    set(
        s,
        "NewQuoteRequest",
        "delivery_fee",
        nullable(json!({"type": "integer", "minimum": 0, "maximum": leadline_core::money::MAX_AMOUNT})),
    );
    set(s, "NewQuoteRequest", "notes", blank_or_text(5000, true));
    if let Some(c) = s.get_mut("DiscountInput") {
        let label = text(200);
        *c = json!({"description": c["description"].clone(), "oneOf": [
            {"type": "object", "additionalProperties": false, "required": ["label", "percent"], "properties": {
                "label": label, "percent": reference("Percent"), "amount": {"type": "null"}}},
            {"type": "object", "additionalProperties": false, "required": ["label", "amount"], "properties": {
                "label": label, "percent": {"type": "null"},
                "amount": {"type": "integer", "minimum": 1, "maximum": leadline_core::money::MAX_AMOUNT}}},
        ]});
    }

    // POST /admin/maintenance
    set(
        s,
        "MaintenanceRequest",
        "action",
        json!({"type": "string", "enum": crate::maintenance::ACTIONS}),
    );
    set(s, "MaintenanceRequest", "older_than_days", nullable(uint(1, 36_500)));

    // The create operation of yachts takes its own schema.
    if let Some(rb) = doc.pointer_mut("/paths/~1v1~1yachts/post/requestBody/content/application~1json/schema") {
        *rb = reference("NewYachtRequest");
    }
}

/// Rules an operation enforces beyond its schema, with the status that answers
/// a request breaking one. They are listed in the operation's description and
/// as `x-leadline-rules` (which the API checks of `scripts/test` read: such an
/// answer to a schema-valid request is expected there, and no other).
const RULES: &[(&str, &str, u16, &str)] = &[
    (
        "post",
        "/v1/leads",
        422,
        "`charter_from` and `charter_to` come together; `charter_from` is not in the past and `charter_to` is after it.",
    ),
    ("post", "/v1/leads", 422, "`guests` counts 1 to 60 people in all."),
    ("post", "/v1/leads", 422, "Dates are from 2000-01-01 to 2199-12-31."),
    (
        "post",
        "/v1/leads",
        422,
        "Single-line text holds no `=?…?=` (it would read as an encoded email header).",
    ),
    (
        "patch",
        "/v1/leads/{id}",
        409,
        "A status move follows the pipeline: new → contacted → quoted → won; new, contacted or quoted → lost; quoted or lost → contacted; won is final.",
    ),
    (
        "patch",
        "/v1/settings",
        422,
        "The `payment_schedule` percentages add up to 100.",
    ),
    (
        "post",
        "/admin/tenants",
        422,
        "The `payment_schedule` percentages add up to 100.",
    ),
    ("post", "/admin/tenants", 409, "The `slug` is not taken."),
    (
        "patch",
        "/admin/tenants/{id}",
        422,
        "The `payment_schedule` percentages add up to 100.",
    ),
    (
        "post",
        "/v1/yachts",
        422,
        "`security_deposit`, rates and extra prices are in the yacht's `currency` (by default the tenant's).",
    ),
    (
        "post",
        "/v1/yachts",
        422,
        "A rate band's `to` is not before its `from`, bands do not overlap, and their dates are from 2000-01-01 to 2199-12-31.",
    ),
    ("post", "/v1/yachts", 422, "Extra codes are unique within the yacht."),
    (
        "patch",
        "/v1/yachts/{id}",
        422,
        "The yacht after the change keeps the rules of `POST /v1/yachts`: amounts in its `currency`, rate bands in order and apart, extra codes unique.",
    ),
    (
        "post",
        "/v1/quotes",
        422,
        "The dates (given, or the lead's) are in the future, in order, at least the yacht's `min_nights` apart, and the yacht has a rate for every night.",
    ),
    (
        "post",
        "/v1/quotes",
        422,
        "The guests (given, or the lead's) are at most the yacht's `max_guests`; extras are codes of the yacht's extras; discounts together stay within the tenant's `discount_cap_percent`; `valid_until` is in the future.",
    ),
    ("post", "/v1/quotes", 404, "The lead and the yacht exist."),
    ("post", "/v1/quotes", 422, "The yacht is not archived."),
    (
        "post",
        "/admin/maintenance",
        501,
        "`backup_database` runs on SQLite only: PostgreSQL is backed up with its own tools.",
    ),
    (
        "get",
        "/v1/yachts/{id}/availability",
        400,
        "`to` is after `from`, at most two years later.",
    ),
    (
        "post",
        "/v1/webhook-endpoints",
        422,
        "The URL's host resolves to a public address (unless `LEADLINE_ALLOW_PRIVATE_WEBHOOK_TARGETS` is set); `http://` only with `LEADLINE_ALLOW_INSECURE_WEBHOOKS`.",
    ),
    (
        "patch",
        "/v1/webhook-endpoints/{id}",
        422,
        "The URL's host resolves to a public address (unless `LEADLINE_ALLOW_PRIVATE_WEBHOOK_TARGETS` is set); `http://` only with `LEADLINE_ALLOW_INSECURE_WEBHOOKS`.",
    ),
];

/// Lists [`RULES`] in their operations (see there).
pub(super) fn describe_rules(doc: &mut Value) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (template, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else { continue };
        for (method, op) in item.iter_mut() {
            let rules: Vec<_> = RULES
                .iter()
                .filter(|(m, p, _, _)| m == method && p == template)
                .collect();
            if rules.is_empty() {
                continue;
            }
            let list: String = rules
                .iter()
                .map(|(_, _, status, rule)| format!("\n- {} ({status} otherwise).", rule.trim_end_matches('.')))
                .collect();
            let d = op.get("description").and_then(Value::as_str).unwrap_or("");
            let text = format!("{d}\n\nRules beyond the schema:{list}").trim_start().to_owned();
            op["description"] = json!(text);
            op["x-leadline-rules"] = rules
                .iter()
                .map(|(_, _, status, rule)| json!({"status": status, "rule": rule}))
                .collect();
        }
    }
}
