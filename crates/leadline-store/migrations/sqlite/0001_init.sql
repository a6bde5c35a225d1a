-- Tenants, their API keys and leads.
CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    slug        TEXT NOT NULL UNIQUE,
    status      TEXT NOT NULL CHECK (status IN ('active', 'suspended')),
    settings    TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    version     INTEGER NOT NULL
) STRICT;

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    kind        TEXT NOT NULL CHECK (kind IN ('secret', 'publishable')),
    prefix      TEXT NOT NULL,
    key_hash    TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
) STRICT;
CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id, id);

CREATE TABLE leads (
    id                TEXT PRIMARY KEY,
    tenant_id         TEXT NOT NULL REFERENCES tenants (id),
    status            TEXT NOT NULL,
    name              TEXT NOT NULL,
    name_key          TEXT NOT NULL,
    email             TEXT NOT NULL,
    email_key         TEXT NOT NULL,
    phone             TEXT,
    phone_e164        TEXT,
    charter_from      TEXT,
    charter_to        TEXT,
    flexible_dates    INTEGER NOT NULL,
    guests_adults     INTEGER,
    guests_children   INTEGER,
    destination       TEXT,
    yacht_type        TEXT,
    charter_type      TEXT,
    yacht_id          TEXT,
    budget_amount     INTEGER,
    budget_currency   TEXT,
    experience        TEXT,
    message           TEXT,
    locale            TEXT NOT NULL,
    source            TEXT,
    utm               TEXT,
    consent_privacy   INTEGER NOT NULL,
    consent_marketing INTEGER NOT NULL,
    assigned_to       TEXT,
    notes             TEXT,
    tags              TEXT NOT NULL,
    duplicate_of      TEXT,
    dedupe_key        TEXT NOT NULL,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    version           INTEGER NOT NULL,
    erased_at         TEXT
) STRICT;
CREATE INDEX leads_by_tenant ON leads (tenant_id, id);
CREATE INDEX leads_by_dedupe ON leads (tenant_id, dedupe_key, created_at);
