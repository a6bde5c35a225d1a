-- Webhook endpoints, the outbox, delivery attempts, mail logs and dead letters.
CREATE TABLE webhook_endpoints (
    id                    TEXT PRIMARY KEY,
    tenant_id             TEXT NOT NULL REFERENCES tenants (id),
    url                   TEXT NOT NULL,
    events                TEXT NOT NULL,
    description           TEXT,
    enabled               INTEGER NOT NULL,
    disabled_reason       TEXT,
    secret                TEXT NOT NULL,
    previous_secret       TEXT,
    previous_secret_until TEXT,
    created_at            TEXT NOT NULL,
    updated_at            TEXT NOT NULL,
    version               INTEGER NOT NULL,
    deleted_at            TEXT
) STRICT;
CREATE INDEX webhook_endpoints_by_tenant ON webhook_endpoints (tenant_id, id);

CREATE TABLE outbox (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants (id),
    kind            TEXT NOT NULL CHECK (kind IN ('email', 'webhook')),
    lead_id         TEXT,
    endpoint_id     TEXT,
    payload         TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'dead', 'cancelled')),
    attempts        INTEGER NOT NULL,
    next_attempt_at TEXT NOT NULL,
    locked_by       TEXT,
    locked_until    TEXT,
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
) STRICT;
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
CREATE INDEX outbox_by_lead ON outbox (tenant_id, lead_id);
CREATE INDEX outbox_by_endpoint ON outbox (endpoint_id);

CREATE TABLE delivery_attempts (
    id         TEXT PRIMARY KEY,
    message_id TEXT NOT NULL,
    attempt    INTEGER NOT NULL,
    at         TEXT NOT NULL,
    success    INTEGER NOT NULL,
    code       INTEGER,
    detail     TEXT,
    latency_ms INTEGER NOT NULL
) STRICT;

CREATE INDEX delivery_attempts_by_message ON delivery_attempts (message_id, attempt);

CREATE TABLE mail_logs (
    id         TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL REFERENCES tenants (id),
    message_id TEXT NOT NULL,
    lead_id    TEXT,
    kind       TEXT NOT NULL,
    recipient  TEXT NOT NULL,
    subject    TEXT NOT NULL,
    status     TEXT NOT NULL,
    attempts   INTEGER NOT NULL,
    last_error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
) STRICT;
CREATE INDEX mail_logs_by_tenant ON mail_logs (tenant_id, id);
CREATE INDEX mail_logs_by_message ON mail_logs (message_id);

CREATE TABLE dead_letters (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    message_id  TEXT NOT NULL,
    kind        TEXT NOT NULL,
    lead_id     TEXT,
    payload     TEXT NOT NULL,
    attempts    TEXT NOT NULL,
    last_error  TEXT,
    created_at  TEXT NOT NULL,
    replayed_at TEXT
) STRICT;
CREATE INDEX dead_letters_by_tenant ON dead_letters (tenant_id, id);
