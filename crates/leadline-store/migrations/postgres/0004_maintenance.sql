-- Leases that let one instance at a time run a periodic job, and indexes for the
-- retention cleanups.
CREATE TABLE job_leases (
    name   TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    until  TIMESTAMPTZ NOT NULL
);
CREATE INDEX dead_letters_by_created ON dead_letters (created_at);
CREATE INDEX mail_logs_by_created ON mail_logs (created_at);
CREATE INDEX delivery_attempts_by_at ON delivery_attempts (at);
