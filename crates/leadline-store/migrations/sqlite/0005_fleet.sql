-- The fleet, quotes and bookings.
CREATE TABLE yachts (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    data        TEXT NOT NULL,
    archived_at TEXT,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    version     INTEGER NOT NULL
) STRICT;
CREATE INDEX yachts_by_tenant ON yachts (tenant_id, id);

CREATE TABLE quotes (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    lead_id      TEXT NOT NULL REFERENCES leads (id),
    yacht_id     TEXT NOT NULL REFERENCES yachts (id),
    status       TEXT NOT NULL,
    token        TEXT UNIQUE,
    valid_until  TEXT NOT NULL,
    charter_from TEXT NOT NULL,
    charter_to   TEXT NOT NULL,
    data         TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    version      INTEGER NOT NULL
) STRICT;
CREATE INDEX quotes_by_tenant ON quotes (tenant_id, id);
CREATE INDEX quotes_by_yacht ON quotes (yacht_id, status);
CREATE INDEX quotes_by_expiry ON quotes (status, valid_until);

CREATE TABLE bookings (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    yacht_id     TEXT NOT NULL REFERENCES yachts (id),
    quote_id     TEXT NOT NULL UNIQUE REFERENCES quotes (id),
    lead_id      TEXT NOT NULL,
    charter_from TEXT NOT NULL,
    charter_to   TEXT NOT NULL,
    created_at   TEXT NOT NULL
) STRICT;
CREATE INDEX bookings_by_yacht ON bookings (yacht_id, charter_from);
