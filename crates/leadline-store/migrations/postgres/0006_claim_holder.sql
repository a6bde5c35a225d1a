-- Who holds an in-flight idempotency claim: `<instance>/<claim>`. An instance
-- takes over its own claims that no request holds any more (the request was
-- dropped, or releasing it failed), and renews the lease of those still running.
ALTER TABLE idempotency_keys ADD COLUMN holder TEXT;
