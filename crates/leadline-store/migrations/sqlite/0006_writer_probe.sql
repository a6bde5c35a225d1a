-- One row the writer rewrites to find out whether the database takes writes again
-- after a failed commit (full disk, a lock held by another process).
CREATE TABLE writer_probe (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    at TEXT NOT NULL
);
