"""Ordered schema steps; the store runs those above PRAGMA user_version, each in its own transaction."""

from __future__ import annotations

M001_INITIAL = """
CREATE TABLE sources (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    path TEXT NOT NULL,
    folder TEXT NOT NULL,
    sent_folder INTEGER NOT NULL DEFAULT 0,
    size INTEGER,
    mtime REAL,
    done_offset INTEGER NOT NULL DEFAULT 0,
    complete INTEGER NOT NULL DEFAULT 0,
    messages INTEGER NOT NULL DEFAULT 0,
    imported_at TEXT
);
CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    message_id TEXT,
    content_hash TEXT NOT NULL,
    thread_id INTEGER,
    gm_thrid TEXT,
    gm_msgid TEXT,
    date_ts INTEGER,
    from_addr TEXT NOT NULL DEFAULT '',
    from_name TEXT NOT NULL DEFAULT '',
    subject TEXT NOT NULL DEFAULT '',
    norm_subject TEXT NOT NULL DEFAULT '',
    in_reply_to TEXT,
    refs TEXT NOT NULL DEFAULT '',
    is_reply INTEGER NOT NULL DEFAULT 0,
    is_forward INTEGER NOT NULL DEFAULT 0,
    direction TEXT NOT NULL DEFAULT 'received',
    sent_hint INTEGER NOT NULL DEFAULT 0,
    bulk TEXT NOT NULL DEFAULT '',
    n_to INTEGER NOT NULL DEFAULT 0,
    n_cc INTEGER NOT NULL DEFAULT 0,
    body_text TEXT NOT NULL DEFAULT '',
    own_text TEXT NOT NULL DEFAULT '',
    own_fp TEXT NOT NULL DEFAULT '',
    quote_fp TEXT NOT NULL DEFAULT '',
    has_attachment INTEGER NOT NULL DEFAULT 0,
    attachment_names TEXT NOT NULL DEFAULT '',
    labels TEXT NOT NULL DEFAULT '',
    size INTEGER NOT NULL DEFAULT 0,
    defects TEXT NOT NULL DEFAULT '',
    first_source INTEGER REFERENCES sources(id)
);
CREATE INDEX messages_content_hash ON messages(content_hash);
CREATE INDEX messages_message_id ON messages(message_id);
CREATE INDEX messages_thread ON messages(thread_id);
CREATE INDEX messages_date ON messages(date_ts);
CREATE INDEX messages_from ON messages(from_addr);
-- every Message-ID a stored message was seen under (copies in other folders keep theirs)
CREATE TABLE message_ids (
    msgid TEXT PRIMARY KEY,
    message INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE
) WITHOUT ROWID;
CREATE TABLE recipients (
    message INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    addr TEXT NOT NULL,
    kind TEXT NOT NULL,
    PRIMARY KEY (message, addr, kind)
) WITHOUT ROWID;
CREATE INDEX recipients_addr ON recipients(addr);
CREATE TABLE names (
    addr TEXT PRIMARY KEY,
    name TEXT NOT NULL
) WITHOUT ROWID;
-- where each message was found: re-imports skip these, IMAP keeps its UIDs here
CREATE TABLE locations (
    source INTEGER NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    location TEXT NOT NULL,
    message INTEGER REFERENCES messages(id) ON DELETE CASCADE,
    PRIMARY KEY (source, location)
) WITHOUT ROWID;
CREATE INDEX locations_message ON locations(message);
CREATE TABLE threads (
    id INTEGER PRIMARY KEY,
    root INTEGER NOT NULL,
    subject TEXT NOT NULL DEFAULT '',
    gm_thrid TEXT,
    first_ts INTEGER,
    last_ts INTEGER,
    n_messages INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE identity (
    addr TEXT PRIMARY KEY,
    origin TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
"""

M002_ACTS_SYNC_REPORTS = """
-- the model's view of a message: the probability of each act and the acts over their thresholds
CREATE TABLE predictions (
    message INTEGER PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
    model TEXT NOT NULL,
    intro_request REAL NOT NULL,
    handoff REAL NOT NULL,
    thank_you REAL NOT NULL,
    reciprocal_ask REAL NOT NULL,
    acts TEXT NOT NULL DEFAULT ''
);
CREATE INDEX predictions_model ON predictions(model);
-- the user's labels; they override predictions everywhere
CREATE TABLE labels (
    message INTEGER PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
    acts TEXT NOT NULL DEFAULT '',
    origin TEXT NOT NULL DEFAULT '',
    labelled_at TEXT NOT NULL
);
-- IMAP cursor per (account, folder): advanced only in the transaction that stored the batch
CREATE TABLE imap_folders (
    account TEXT NOT NULL,
    folder TEXT NOT NULL,
    source INTEGER NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    uidvalidity INTEGER,
    last_uid INTEGER NOT NULL DEFAULT 0,
    synced_at TEXT,
    PRIMARY KEY (account, folder)
) WITHOUT ROWID;
-- each report run's per-contact statuses, so the next report can say what changed
CREATE TABLE report_runs (
    id INTEGER PRIMARY KEY,
    as_of TEXT NOT NULL,
    created_at TEXT NOT NULL,
    contacts TEXT NOT NULL
);
"""

M003_TOMBSTONES = """
-- contacts the owner asked to forget: their mail is never stored again until the tombstone is undone
CREATE TABLE tombstones (
    addr TEXT PRIMARY KEY,
    created_at TEXT NOT NULL
) WITHOUT ROWID;
"""

M004_COUNTS_INDEX = """
-- the report's store counts (dated, bulk, defects) from this index instead of reading every message past
-- its body: 9 s -> 0.4 s at 1,000,000 messages (bench/e2e.py)
CREATE INDEX messages_counts ON messages(date_ts, bulk, defects);
"""

M005_TEXTS = """
-- a message's text lives beside it, not in it: every message row update (thread, direction, Gmail ids) rewrote
-- the text too, and every scan of messages walked it (a 20,000-message first sync spent 1.8 s re-threading)
CREATE TABLE texts (
    message INTEGER PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
    own_text TEXT NOT NULL DEFAULT '',
    body_text TEXT NOT NULL DEFAULT ''
);
INSERT INTO texts SELECT id, own_text, body_text FROM messages;
ALTER TABLE messages DROP COLUMN own_text;
ALTER TABLE messages DROP COLUMN body_text
"""

MIGRATIONS: list[tuple[str, str]] = [
    ("m001_initial", M001_INITIAL),
    ("m002_acts_sync_reports", M002_ACTS_SYNC_REPORTS),
    ("m003_tombstones", M003_TOMBSTONES),
    ("m004_counts_index", M004_COUNTS_INDEX),
    ("m005_texts", M005_TEXTS),
]
