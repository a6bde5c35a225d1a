-- Tenants, their API keys and leads.
CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    slug        TEXT NOT NULL UNIQUE,
    status      TEXT NOT NULL CHECK (status IN ('active', 'suspended')),
    settings    JSONB NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    version     BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    kind        TEXT NOT NULL CHECK (kind IN ('secret', 'publishable')),
    prefix      TEXT NOT NULL,
    key_hash    TEXT NOT NULL UNIQUE,
    created_at  TIMESTAMPTZ NOT NULL,
    revoked_at  TIMESTAMPTZ
);
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
    charter_from      DATE,
    charter_to        DATE,
    flexible_dates    BOOLEAN NOT NULL,
    guests_adults     BIGINT,
    guests_children   BIGINT,
    destination       TEXT,
    yacht_type        TEXT,
    charter_type      TEXT,
    yacht_id          TEXT,
    budget_amount     BIGINT,
    budget_currency   TEXT,
    experience        TEXT,
    message           TEXT,
    locale            TEXT NOT NULL,
    source            TEXT,
    utm               JSONB,
    consent_privacy   BOOLEAN NOT NULL,
    consent_marketing BOOLEAN NOT NULL,
    assigned_to       TEXT,
    notes             TEXT,
    tags              JSONB NOT NULL,
    duplicate_of      TEXT,
    dedupe_key        TEXT NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL,
    updated_at        TIMESTAMPTZ NOT NULL,
    version           BIGINT NOT NULL,
    erased_at         TIMESTAMPTZ
);
CREATE INDEX leads_by_tenant ON leads (tenant_id, id);
CREATE INDEX leads_by_dedupe ON leads (tenant_id, dedupe_key, created_at);
