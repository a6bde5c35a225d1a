-- The fleet, quotes and bookings.
CREATE TABLE yachts (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    data        JSONB NOT NULL,
    archived_at TIMESTAMPTZ,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    version     BIGINT NOT NULL
);
CREATE INDEX yachts_by_tenant ON yachts (tenant_id, id);

CREATE TABLE quotes (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    lead_id      TEXT NOT NULL REFERENCES leads (id),
    yacht_id     TEXT NOT NULL REFERENCES yachts (id),
    status       TEXT NOT NULL,
    token        TEXT UNIQUE,
    valid_until  TIMESTAMPTZ NOT NULL,
    charter_from DATE NOT NULL,
    charter_to   DATE NOT NULL,
    data         JSONB NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    version      BIGINT NOT NULL
);
CREATE INDEX quotes_by_tenant ON quotes (tenant_id, id);
CREATE INDEX quotes_by_yacht ON quotes (yacht_id, status);
CREATE INDEX quotes_by_expiry ON quotes (status, valid_until);

CREATE TABLE bookings (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    yacht_id     TEXT NOT NULL REFERENCES yachts (id),
    quote_id     TEXT NOT NULL UNIQUE REFERENCES quotes (id),
    lead_id      TEXT NOT NULL,
    charter_from DATE NOT NULL,
    charter_to   DATE NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX bookings_by_yacht ON bookings (yacht_id, charter_from);
