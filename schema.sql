-- georeg state file schema.
--
-- This file is the one description of georeg's SQLite state file. georeg
-- embeds it and applies each "-- @version N" block whose N is above the
-- file's PRAGMA user_version, in one exclusive transaction. Blocks are
-- append-only: a released block is never edited, a change is a new block.
--
-- All timestamps are UTC text, 'YYYY-MM-DDTHH:MM:SSZ', so they sort and
-- compare as text and read as they are:
--   sqlite3 /var/lib/georeg/state.sqlite3 \
--     "SELECT name, sync_state, last_synced_at, last_sync_failure FROM repositories"

-- @version 1

-- One row per container repository georeg knows on the primary.
CREATE TABLE repositories (
    id                INTEGER PRIMARY KEY,
    -- Repository path, e.g. 'group/project/app'.
    name              TEXT NOT NULL UNIQUE,
    -- pending: known, never synced or resync asked for;
    -- started: a sync is running now (a crash leaves it, startup resets it);
    -- synced:  the last sync copied every tag of the primary;
    -- failed:  the last sync failed, see last_sync_failure, retried at retry_at.
    sync_state        TEXT NOT NULL DEFAULT 'pending'
                      CHECK (sync_state IN ('pending', 'started', 'synced', 'failed')),
    -- Consecutive failed syncs; drives the exponential backoff, reset on success.
    retry_count       INTEGER NOT NULL DEFAULT 0,
    -- When a failed repository may be tried again (NULL: no wait).
    retry_at          TEXT,
    -- When the last sync started and when the last successful sync ended.
    sync_started_at   TEXT,
    last_synced_at    TEXT,
    -- Why the last sync failed, for the operator (NULL after a success).
    last_sync_failure TEXT,
    created_at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);
CREATE INDEX repositories_by_state ON repositories (sync_state, retry_at);

-- The last-known digest of each tag on the secondary registry, as georeg
-- left it after its last sync of the repository. The registries remain the
-- truth: syncs and verification read them, not this table.
CREATE TABLE tags (
    repository_id INTEGER NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    -- Manifest digest, e.g. 'sha256:66651c...'.
    digest        TEXT NOT NULL,
    synced_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    PRIMARY KEY (repository_id, name)
) WITHOUT ROWID;

-- Blobs georeg has seen in repositories of the secondary registry, so that
-- a blob needed in another repository is mounted there instead of copied.
-- A stale row costs one failed mount attempt and is then removed.
CREATE TABLE blobs (
    digest        TEXT NOT NULL,
    repository_id INTEGER NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    size          INTEGER NOT NULL,
    PRIMARY KEY (digest, repository_id)
) WITHOUT ROWID;
