-- The outbox's status check, written as comparisons. SQLite looks a constant list
-- of more than two values up in a temporary B-tree that it builds again for every
-- statement that checks it: every insert into the outbox and every change of a
-- message's status paid for building one. The allowed values are the same.
-- A check cannot be altered in place: the table is rebuilt (nothing refers to it).
CREATE TABLE outbox_rebuilt (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants (id),
    kind            TEXT NOT NULL CHECK (kind IN ('email', 'webhook')),
    lead_id         TEXT,
    endpoint_id     TEXT,
    payload         TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status = 'pending' OR status = 'delivered'
                                         OR status = 'dead' OR status = 'cancelled'),
    attempts        INTEGER NOT NULL,
    next_attempt_at TEXT NOT NULL,
    locked_by       TEXT,
    locked_until    TEXT,
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
) STRICT;
INSERT INTO outbox_rebuilt (id, tenant_id, kind, lead_id, endpoint_id, payload, status, attempts,
                            next_attempt_at, locked_by, locked_until, last_error, created_at, updated_at)
    SELECT id, tenant_id, kind, lead_id, endpoint_id, payload, status, attempts,
           next_attempt_at, locked_by, locked_until, last_error, created_at, updated_at
    FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_rebuilt RENAME TO outbox;
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
CREATE INDEX outbox_by_lead ON outbox (tenant_id, lead_id);
CREATE INDEX outbox_by_endpoint ON outbox (endpoint_id);
