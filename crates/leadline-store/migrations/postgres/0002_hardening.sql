-- Idempotency records and the audit log.
CREATE TABLE idempotency_keys (
    scope                 TEXT NOT NULL,
    key                   TEXT NOT NULL,
    method                TEXT NOT NULL,
    path                  TEXT NOT NULL,
    fingerprint           TEXT NOT NULL,
    state                 TEXT NOT NULL CHECK (state IN ('in_flight', 'done')),
    locked_until          TIMESTAMPTZ NOT NULL,
    response_status       BIGINT,
    response_content_type TEXT,
    response_location     TEXT,
    response_body         BYTEA,
    created_at            TIMESTAMPTZ NOT NULL,
    expires_at            TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_by_expiry ON idempotency_keys (expires_at);

CREATE TABLE audit_logs (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT,
    at            TIMESTAMPTZ NOT NULL,
    actor_type    TEXT NOT NULL,
    actor_id      TEXT,
    action        TEXT NOT NULL,
    resource_type TEXT,
    resource_id   TEXT,
    request_id    TEXT,
    ip            TEXT,
    user_agent    TEXT,
    status        BIGINT NOT NULL,
    details       JSONB NOT NULL
);
CREATE INDEX audit_logs_by_tenant ON audit_logs (tenant_id, id);
CREATE INDEX audit_logs_by_at ON audit_logs (at);
