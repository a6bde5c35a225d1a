-- Webhook endpoints, the outbox, delivery attempts, mail logs and dead letters.
CREATE TABLE webhook_endpoints (
    id                    TEXT PRIMARY KEY,
    tenant_id             TEXT NOT NULL REFERENCES tenants (id),
    url                   TEXT NOT NULL,
    events                JSONB NOT NULL,
    description           TEXT,
    enabled               BOOLEAN NOT NULL,
    disabled_reason       TEXT,
    secret                TEXT NOT NULL,
    previous_secret       TEXT,
    previous_secret_until TIMESTAMPTZ,
    created_at            TIMESTAMPTZ NOT NULL,
    updated_at            TIMESTAMPTZ NOT NULL,
    version               BIGINT NOT NULL,
    deleted_at            TIMESTAMPTZ
);
CREATE INDEX webhook_endpoints_by_tenant ON webhook_endpoints (tenant_id, id);

CREATE TABLE outbox (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants (id),
    kind            TEXT NOT NULL CHECK (kind IN ('email', 'webhook')),
    lead_id         TEXT,
    endpoint_id     TEXT,
    payload         JSONB NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'dead', 'cancelled')),
    attempts        BIGINT NOT NULL,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    locked_by       TEXT,
    locked_until    TIMESTAMPTZ,
    last_error      TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
CREATE INDEX outbox_by_lead ON outbox (tenant_id, lead_id);
CREATE INDEX outbox_by_endpoint ON outbox (endpoint_id);

CREATE TABLE delivery_attempts (
    id         TEXT PRIMARY KEY,
    message_id TEXT NOT NULL,
    attempt    BIGINT NOT NULL,
    at         TIMESTAMPTZ NOT NULL,
    success    BOOLEAN NOT NULL,
    code       BIGINT,
    detail     TEXT,
    latency_ms BIGINT NOT NULL
);

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
    attempts   BIGINT NOT NULL,
    last_error TEXT,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX mail_logs_by_tenant ON mail_logs (tenant_id, id);
CREATE INDEX mail_logs_by_message ON mail_logs (message_id);

CREATE TABLE dead_letters (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    message_id  TEXT NOT NULL,
    kind        TEXT NOT NULL,
    lead_id     TEXT,
    payload     JSONB NOT NULL,
    attempts    JSONB NOT NULL,
    last_error  TEXT,
    created_at  TIMESTAMPTZ NOT NULL,
    replayed_at TIMESTAMPTZ
);
CREATE INDEX dead_letters_by_tenant ON dead_letters (tenant_id, id);
