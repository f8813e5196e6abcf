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
    -- 1: the next sync compares every tag (new repository, resync, or a
    -- failed full sync); 0: the next sync only applies new events.
    full_sync_requested INTEGER NOT NULL DEFAULT 1,
    -- 1 while the running sync is a full one, so that a crash cannot lose
    -- the request: startup moves it back into full_sync_requested.
    full_sync_running   INTEGER NOT NULL DEFAULT 0,
    -- The events table id up to which this repository's events are applied.
    events_done_through INTEGER NOT NULL DEFAULT 0,
    -- 1: left out by replication.include/exclude (selective sync): neither
    -- synced nor verified nor counted in progress.
    excluded          INTEGER NOT NULL DEFAULT 0,
    -- Verification compares a checksum of the repository on the primary and
    -- on the secondary: SHA-256 over its tags sorted by name, one
    -- "name digest\n" line each, read through each registry's API.
    -- pending:   to verify (after each sync);
    -- started:   being verified now;
    -- succeeded: checksums matched at verified_at;
    -- failed:    they differed, see verification_failure; a resync is queued;
    -- disabled:  not verified (excluded by selective sync).
    verification_state      TEXT NOT NULL DEFAULT 'pending'
                            CHECK (verification_state IN ('pending', 'started', 'succeeded', 'failed', 'disabled')),
    verification_started_at TEXT,
    -- When the checksums last matched, and the checksum they matched at.
    verified_at             TEXT,
    verification_checksum   TEXT,
    -- Both checksums and the first tag that differs, when they did not match.
    verification_failure    TEXT,
    -- Consecutive failed verifications (reset when one succeeds).
    verification_retry_count INTEGER NOT NULL DEFAULT 0,
    created_at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);
CREATE INDEX repositories_by_state ON repositories (sync_state, retry_at);
CREATE INDEX repositories_by_verification ON repositories (verification_state, verified_at);

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

-- Registry notifications georeg acts on, in arrival order. On a primary
-- this is the append-only log secondaries read (GET /api/v1/events); on a
-- secondary it is what the primary's log or the registry delivered, and
-- each repository applies its events in id order.
CREATE TABLE events (
    -- Increasing, never reused: the log position.
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    -- The registry's event id; a redelivered event is stored once.
    event_id         TEXT NOT NULL UNIQUE,
    received_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    repository       TEXT NOT NULL,
    -- push: a manifest was pushed (tag set when pushed by tag);
    -- delete: a tag (tag set), a manifest (digest set) or the whole
    -- repository (neither set) was deleted.
    action           TEXT NOT NULL CHECK (action IN ('push', 'delete')),
    tag              TEXT,
    digest           TEXT,
    media_type       TEXT,
    -- On a secondary following a primary georeg: the id in the primary's log.
    primary_event_id INTEGER
);
CREATE INDEX events_by_repository ON events (repository, id);

-- A secondary's position in the primary georeg's event log (one row).
CREATE TABLE cursor (
    id                    INTEGER PRIMARY KEY CHECK (id = 1),
    -- The last primary log id stored in events; reading resumes after it.
    last_event_id         INTEGER NOT NULL DEFAULT 0,
    -- The newest id the primary reported, and when it was read.
    primary_last_event_id INTEGER NOT NULL DEFAULT 0,
    updated_at            TEXT,
    -- Why the last read failed (NULL when it worked).
    last_error            TEXT
);
INSERT INTO cursor (id) VALUES (1);

-- On a primary: the last status each secondary reported (every 60 s).
CREATE TABLE nodes (
    -- The secondary's node_name.
    name           TEXT PRIMARY KEY,
    reported_at    TEXT NOT NULL,
    -- 1 when the secondary reported no problem; else health_message says what.
    healthy        INTEGER NOT NULL,
    health_message TEXT,
    -- The report itself: JSON of the shape of GET /api/v1/status.
    status         TEXT NOT NULL
);

-- @version 2

-- No table changes. The columns below are written by georeg for operators
-- and never read back by georeg itself: they answer at the sqlite3 prompt
-- what the pages do not show.
--   repositories.verification_checksum    the checksum both registries matched at, last time
--   repositories.verification_retry_count consecutive failed verifications
--   tags.synced_at                         when georeg last set the tag to its digest
--   blobs.size                             the size of each blob a repository holds
--   events.primary_event_id                on a secondary: the event's id in the primary's log
-- Every other column is read by georeg too.

-- @version 3

-- Claims: a worker that claims a repository (to sync or to verify it)
-- writes a fresh id here, and records the outcome only where the id is
-- still its own; recovery after a crash clears them.
ALTER TABLE repositories ADD COLUMN claim_id TEXT /* the claim of the worker syncing it (NULL: none) */;
ALTER TABLE repositories ADD COLUMN verification_claim_id TEXT /* the claim of the worker verifying it */;
-- 1: an operator's `georeg sync` or `georeg backfill` asked the running
-- daemon for this sync; it goes before other work.
ALTER TABLE repositories ADD COLUMN sync_priority INTEGER NOT NULL DEFAULT 0 /* 1: an operator asked for this sync */;
-- 1: `georeg verify` asked the running daemon to verify the repository;
-- 2: with --blobs. Cleared when the verification ends.
ALTER TABLE repositories ADD COLUMN verification_requested INTEGER NOT NULL DEFAULT 0 /* 1: georeg verify asked; 2: with --blobs */;
-- What the last successful sync did ("2 tags copied, 0 unchanged, ..."),
-- so that a command following the daemon's work can say it.
ALTER TABLE repositories ADD COLUMN last_sync_report TEXT /* what the last successful sync did */;

-- @version 4

-- The event log's identity, made with the state file: a secondary that
-- finds another epoch on the primary is reading a different log (a rebuilt
-- or restored primary state file), whose ids say nothing about its own.
CREATE TABLE log_epoch (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    epoch TEXT NOT NULL
);
INSERT INTO log_epoch (id, epoch) VALUES (1, lower(hex(randomblob(16))));
-- The epoch of the primary's log the cursor's ids belong to (NULL: none
-- read yet), and the last time the secondary found it could not trust its
-- place in that log (events pruned before it read them, another epoch, a
-- log behind the cursor): when, and what it did about it.
ALTER TABLE cursor ADD COLUMN primary_epoch TEXT /* the epoch of the primary's log the ids belong to */;
ALTER TABLE cursor ADD COLUMN gap_detected_at TEXT /* when the place in the log could last not be trusted */;
ALTER TABLE cursor ADD COLUMN gap_message TEXT /* why, and what was done about it */;

-- @version 5

-- Tags the secondary registry refuses to hold as the primary has them: a
-- Docker schema 1 manifest where the secondary has
-- compatibility.schema1.enabled false. Counted on the dashboard, in
-- georeg status and in /metrics; verification expects these tags missing
-- from the secondary (while the primary's digest is still this one), and
-- every full sync tries them again.
CREATE TABLE unsupported_tags (
    repository_id INTEGER NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    tag           TEXT NOT NULL,
    -- The primary's manifest digest the secondary refused.
    digest        TEXT NOT NULL,
    -- What the secondary answered, and what to change.
    reason        TEXT NOT NULL,
    seen_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    PRIMARY KEY (repository_id, tag)
) WITHOUT ROWID;

-- @version 6

-- When the repository's current run of failed syncs began (NULL while its
-- last sync succeeded): how long it has been failing, for the dashboard,
-- georeg status and the health check (replication.failing_alert_seconds).
ALTER TABLE repositories ADD COLUMN failing_since TEXT /* when its current run of failed syncs began */;

-- @version 7

-- On a secondary: one sample per report interval of the lag and of the
-- bytes copied so far by the running process, kept for a day, for the
-- dashboard's chart of the last 24 hours.
CREATE TABLE samples (
    at            TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    lag_seconds   INTEGER NOT NULL,
    copied_bytes  INTEGER NOT NULL
);
CREATE INDEX samples_by_time ON samples (at);

-- @version 8

-- Blobs larger than replication.chunk_size are copied in chunks; after
-- each chunk the secondary accepts, its upload's state is recorded here,
-- so that a restart continues the blob where the upload stands instead of
-- from byte 0. A row lives from the first chunk until the blob is complete
-- or its upload is found gone (then the blob starts again, logged).
CREATE TABLE uploads (
    repository_id INTEGER NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    digest        TEXT NOT NULL,
    size          INTEGER NOT NULL,
    -- The secondary's upload URL, as its answer to the last chunk gave it.
    location      TEXT NOT NULL,
    -- Bytes the secondary's upload holds.
    bytes_done    INTEGER NOT NULL,
    -- The SHA-256 state after those bytes: 'LENGTH:64 hex digits' ('' when
    -- the blob is whole and only its completion is left).
    hash_state    TEXT NOT NULL,
    -- Where the copy was taken up again after a restart (NULL: never).
    resumed_from  INTEGER,
    started_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    updated_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    PRIMARY KEY (repository_id, digest)
) WITHOUT ROWID;

-- @version 9

-- Transfer bundles imported into an air-gapped secondary (`georeg
-- import`), one row each. The last one imported, and its age, show on the
-- dashboard and in `georeg status`; a bundle exported before the newest
-- one here is refused (unless forced).
CREATE TABLE bundles (
    -- The bundle's id (its georeg-bundle.json), random at export.
    id            TEXT PRIMARY KEY,
    -- The primary registry it was exported from.
    primary_url   TEXT NOT NULL,
    -- When it was exported: 'YYYY-MM-DDTHH:MM:SS.mmmZ', with milliseconds
    -- so that two bundles exported within a second still order.
    created_at    TEXT NOT NULL,
    -- The inventory it is incremental to (NULL: a full bundle).
    inventory_id  TEXT,
    -- The file it was imported from, as the command named it.
    file          TEXT NOT NULL,
    -- How many repositories it names (deleted ones included).
    repositories  INTEGER NOT NULL,
    -- When its import began (the latest run), and when every repository of
    -- it was imported (NULL: not finished; the same command again finishes
    -- it).
    started_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    imported_at   TEXT,
    -- What the import did, for the operator.
    report        TEXT,
    -- The refusals an operator overrode ('--force-primary', '--force-older').
    forced        TEXT
);
CREATE INDEX bundles_by_export ON bundles (created_at);

-- The repositories of a bundle already imported, so that an import cut
-- short (kill, Ctrl-C, a failed repository) and run again goes on with
-- the others. Blobs copied in chunks resume through `uploads`.
CREATE TABLE bundle_repositories (
    bundle_id   TEXT NOT NULL REFERENCES bundles (id) ON DELETE CASCADE,
    repository  TEXT NOT NULL,
    imported_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    PRIMARY KEY (bundle_id, repository)
) WITHOUT ROWID;

-- @version 10

-- The verification queue, read by every idle worker every few seconds and
-- whenever work arrives: the next pending verification, and the one
-- verified longest ago, are each the first entry of this index, instead
-- of the result of sorting the whole table (tens of milliseconds at
-- 100,000 repositories, holding the state file). And the few an operator
-- asked for (`georeg verify` while the daemon runs), apart.
CREATE INDEX repositories_verification_queue ON repositories (verification_state, sync_state, excluded, verified_at);
CREATE INDEX repositories_verification_asked ON repositories (verification_requested) WHERE verification_requested > 0;

-- What the dashboard, the status API, /metrics and `georeg status` read on
-- every view, from indexes rather than the whole table: the counts by
-- state and the repository list (its filters and its order, failing first
-- then by name, all in this one index), and when a repository last
-- finished syncing and was last verified.
CREATE INDEX repositories_listing ON repositories (excluded, sync_state, verification_state, name);
CREATE INDEX repositories_by_last_sync ON repositories (last_synced_at);
CREATE INDEX repositories_by_verified_at ON repositories (verified_at);

-- The sync queue in the order workers claim from it (the ORDER BY of the
-- claim, word for word), for the repositories that can be in it: with
-- 100,000 repositories queued at once (a first pass through the daemon,
-- `georeg backfill` while it runs, a resync of everything after the
-- cursor lost its place) each claim is the first entry of this index
-- instead of a sort of the whole queue.
CREATE INDEX repositories_claim_order ON repositories (
    excluded, sync_priority DESC,
    (CASE WHEN sync_state = 'pending' AND full_sync_requested = 0 THEN 0
          WHEN last_synced_at IS NULL THEN 1
          WHEN sync_state = 'pending' THEN 2
          ELSE 3 END),
    retry_at)
    WHERE sync_state IN ('pending', 'failed');

-- @version 11

-- Removals georeg would apply to the secondary registry because the
-- primary no longer has something: a tag gone, a manifest deleted, a whole
-- repository emptied. With replication.delete_delay_hours above 0 each
-- waits here, held, until applies_at; `georeg deletions` lists them and
-- applies or cancels them early. With a delay of 0 they are applied at once
-- and recorded as applied, for the burst alarm and as a history.
CREATE TABLE removals (
    id            INTEGER PRIMARY KEY,
    repository_id INTEGER NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    -- tag:      one tag (distribution 2.8 cannot delete a tag by name, so
    --           georeg removes it without touching sibling tags);
    -- manifest: a manifest by digest, and with it every tag pointing at it.
    kind          TEXT NOT NULL CHECK (kind IN ('tag', 'manifest')),
    -- The tag (kind tag).
    tag           TEXT,
    -- kind manifest: the manifest; kind tag: the digest the tag had on the
    -- secondary when the removal was seen.
    digest        TEXT,
    -- What happened on the primary: 'tag removed', 'manifest deleted',
    -- 'repository emptied'.
    cause         TEXT NOT NULL,
    -- Tags the removal takes off the secondary (the burst alarm counts them).
    tags          INTEGER NOT NULL DEFAULT 1,
    -- held:      waiting for applies_at;
    -- applying:  a worker is applying it now (a crash puts it back to held);
    -- applied:   done (or nothing was left to remove);
    -- cancelled: an operator chose to keep it: the secondary keeps what the
    --            primary lost, and verification expects the difference;
    -- dropped:   the primary has it again, so there is nothing to remove.
    state         TEXT NOT NULL DEFAULT 'held'
                  CHECK (state IN ('held', 'applying', 'applied', 'cancelled', 'dropped')),
    seen_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    -- When the delay ends (seen_at itself with a delay of 0, or when an
    -- operator asked to apply it now).
    applies_at    TEXT NOT NULL,
    -- When it left 'held', and who decided: the delay ran out, an operator
    -- (`georeg deletions --apply/--cancel`), or the primary (it has it again).
    decided_at    TEXT,
    decided_by    TEXT CHECK (decided_by IN ('delay', 'operator', 'primary')),
    -- Why the last attempt to apply it failed (NULL when none did).
    last_error    TEXT,
    -- Set when this removal came in a burst (more than
    -- replication.delete_burst_share of a repository's or the registry's
    -- tags within an hour): the alarm's text. The node is unhealthy while
    -- such a removal is held and no operator decided on it.
    burst         TEXT
);
-- One open removal per tag or manifest.
CREATE UNIQUE INDEX removals_open ON removals (repository_id, kind, COALESCE(tag, digest))
    WHERE state IN ('held', 'applying', 'cancelled');
CREATE INDEX removals_by_state ON removals (state, applies_at);
CREATE INDEX removals_by_time ON removals (seen_at);
-- The few removals that came in a burst, which every status reads.
CREATE INDEX removals_in_bursts ON removals (state, seen_at) WHERE burst IS NOT NULL;

-- Drills: a random sample of tags pulled from the secondary registry as a
-- client would (manifest by tag, every child manifest and blob read in
-- full and hashed, referrers included), every
-- replication.drill_interval_seconds and on `georeg drill`. One row per
-- drill, written when it ends.
CREATE TABLE drills (
    id          INTEGER PRIMARY KEY,
    started_at  TEXT NOT NULL,
    finished_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    -- 'schedule' (the daemon) or 'command' (`georeg drill`).
    trigger     TEXT NOT NULL,
    -- Tags pulled, and what they took: manifests and blobs read and hashed.
    tags        INTEGER NOT NULL,
    manifests   INTEGER NOT NULL,
    blobs       INTEGER NOT NULL,
    bytes       INTEGER NOT NULL,
    -- Tags that could not be pulled whole; the first one's failure.
    failures    INTEGER NOT NULL,
    first_failure        TEXT,
    first_failing_digest TEXT
);

-- What each drill found wrong, one row per tag that failed. A failure
-- queues a full sync of its repository, which copies the failing blob or
-- manifest again and reads it back (repaired_at set when that succeeds).
CREATE TABLE drill_failures (
    drill_id      INTEGER NOT NULL REFERENCES drills (id) ON DELETE CASCADE,
    repository_id INTEGER NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    tag           TEXT NOT NULL,
    -- blob, manifest (read back damaged or missing), or tag (missing).
    kind          TEXT NOT NULL CHECK (kind IN ('blob', 'manifest', 'tag')),
    digest        TEXT NOT NULL,
    message       TEXT NOT NULL,
    repaired_at   TEXT
);
CREATE INDEX drill_failures_open ON drill_failures (repository_id, repaired_at);

-- @version 12

-- One name for deletions held back in every layer (the command `georeg
-- deletions`, replication.delete_delay_hours, the georeg_deletions_*
-- metrics): the table of version 11 and its indexes take it too.
ALTER TABLE removals RENAME TO deletions;
DROP INDEX removals_open;
DROP INDEX removals_by_state;
DROP INDEX removals_by_time;
DROP INDEX removals_in_bursts;
CREATE UNIQUE INDEX deletions_open ON deletions (repository_id, kind, COALESCE(tag, digest))
    WHERE state IN ('held', 'applying', 'cancelled');
CREATE INDEX deletions_by_state ON deletions (state, applies_at);
CREATE INDEX deletions_by_time ON deletions (seen_at);
CREATE INDEX deletions_in_bursts ON deletions (state, seen_at) WHERE burst IS NOT NULL;

-- Reconciliation (replication.reconcile_interval_seconds): notifications
-- are best effort, so every replicated repository is compared with the
-- primary again and again, and a node says it is ready for failover only
-- when each was compared within the window. compared_at: when this node's
-- repository was last found equal to the primary's (a reconciliation pass,
-- a full sync, a verification); sync_reason: why the queued sync was asked
-- for (`reconcile: tags differ`, `write made on the secondary`...).
ALTER TABLE repositories ADD COLUMN compared_at TEXT /* when last found equal to the primary (NULL: never) */;
ALTER TABLE repositories ADD COLUMN sync_reason TEXT /* why the queued sync was asked for (NULL: an event, a new repository) */;
CREATE INDEX repositories_by_compared_at ON repositories (excluded, compared_at);

-- A verification that could not reach a registry proved nothing either
-- way: the state it replaced is put back (never "failed", which failover
-- readiness would count as a loss) and it is tried again at
-- verification_retry_at.
ALTER TABLE repositories ADD COLUMN verification_before TEXT /* the state a running verification replaced */;
ALTER TABLE repositories ADD COLUMN verification_retry_at TEXT /* when a verification that could not run is tried again */;
CREATE INDEX repositories_verification_retry ON repositories (verification_retry_at) WHERE verification_retry_at IS NOT NULL;

-- The fingerprint of each repository of this node's own registry: SHA-256
-- over its tags sorted by name, one "name digest\n" line each (the
-- verification checksum), read through the registry's API. A primary
-- serves them to its followers in pages (GET /api/v1/fingerprints), so that
-- a pass over 100,000 unchanged repositories costs a request or two across
-- the WAN; a secondary compares its own with them. Events mark a
-- repository stale, and a paced pass refreshes every one within half the
-- window.
CREATE TABLE fingerprints (
    repository  TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    tags        INTEGER NOT NULL,
    -- When the registry was read for it.
    checked_at  TEXT NOT NULL,
    -- 1: an event named it since; read it again first.
    stale       INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX fingerprints_due ON fingerprints (stale DESC, checked_at);

-- Reconciliation passes, one row each when it ends: how long it took, what
-- it cost, what it found (differences by kind, as JSON) and queued.
CREATE TABLE reconcile_passes (
    id           INTEGER PRIMARY KEY,
    started_at   TEXT NOT NULL,
    finished_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    -- 'fingerprints' (pages from the primary georeg) or 'direct' (the
    -- primary registry's tag lists).
    mode         TEXT NOT NULL CHECK (mode IN ('fingerprints', 'direct')),
    repositories INTEGER NOT NULL,
    compared     INTEGER NOT NULL,
    -- Requests to the primary registry and to the primary georeg.
    requests     INTEGER NOT NULL,
    differences  TEXT NOT NULL DEFAULT '{}',
    queued       INTEGER NOT NULL
);

-- When this node last read the primary's list of repositories (a catalog
-- scan, the start of a reconciliation pass): a repository new on the
-- primary is known here within the window only if this is recent.
CREATE TABLE primary_listing (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    listed_at TEXT NOT NULL,
    -- 'catalog', 'fingerprints' (the primary georeg's pages) or 'direct'.
    how       TEXT NOT NULL
);

-- What the node should be paged about that no row elsewhere says: refused
-- notifications (a wrong secret on the primary), a primary georeg that
-- cannot be read. One row per alarm while it stands; health reads them.
CREATE TABLE alarms (
    name     TEXT PRIMARY KEY,
    message  TEXT NOT NULL,
    -- Where it came from (a client address), when known.
    source   TEXT,
    first_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    last_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    count    INTEGER NOT NULL DEFAULT 1
) WITHOUT ROWID;

-- The daemon's last health check (its own registry, the primary), so that
-- `georeg status`, the status API, /metrics, readiness and the dashboard
-- all tell the same health.
CREATE TABLE health_check (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    -- What keeps the node from working (NULL: nothing).
    problem      TEXT,
    -- Why this node's own registry did not answer (NULL: it did); readiness.
    own_registry TEXT,
    checked_at   TEXT NOT NULL
);

-- @version 13
-- When the repository's last sync ran past replication.sync_budget_seconds
-- and was stopped (NULL: it did not, or a sync has succeeded since). Such
-- repositories hold at most half the workers at a time, so that hostile
-- or very slow ones cannot starve the rest.
ALTER TABLE repositories ADD COLUMN overran_at TEXT /* when its last sync ran past replication.sync_budget_seconds */;
CREATE INDEX repositories_overran ON repositories (sync_state) WHERE overran_at IS NOT NULL;

-- @version 14
-- On a secondary: what it applied to its own registry, in order (pushes,
-- re-pointed tags, removals actually made, a held removal only once
-- applied). This is the log its own followers read (GET /api/v1/events),
-- as a primary's followers read its events: a relay. Pruned as a
-- primary prunes its events, once every follower reporting in has read it.
CREATE TABLE applied (
    -- Increasing, never reused: the position in this relay's log.
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    -- Unique to this change; what followers store it under.
    event_id    TEXT NOT NULL UNIQUE DEFAULT (lower(hex(randomblob(16)))),
    received_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    repository  TEXT NOT NULL,
    action      TEXT NOT NULL CHECK (action IN ('push', 'delete')),
    tag         TEXT,
    digest      TEXT,
    media_type  TEXT
);
-- What the node this one follows said of itself at the last read: its
-- chain of upstreams up to the primary, and why it is behind the primary
-- (NULL: it is not). This node's readiness includes its upstream's.
ALTER TABLE cursor ADD COLUMN upstream_chain TEXT /* JSON list of node names, nearest first, up to the primary */;
ALTER TABLE cursor ADD COLUMN upstream_behind TEXT /* why the upstream is behind the primary (NULL: it is not) */;

-- @version 15
-- How many repositories are in each (excluded, sync state, verification
-- state), kept by the triggers below as rows change, whoever changes
-- them: the status snapshot (dashboard, status API, /metrics, `georeg
-- status`, reports) reads these few rows instead of counting every
-- repository on every view (30 ms and more at 100,000 repositories).
CREATE TABLE repository_counts (
    is_excluded        INTEGER NOT NULL,
    sync_state         TEXT NOT NULL,
    verification_state TEXT NOT NULL,
    n                  INTEGER NOT NULL,
    PRIMARY KEY (is_excluded, sync_state, verification_state)
) WITHOUT ROWID;
INSERT INTO repository_counts (is_excluded, sync_state, verification_state, n)
    SELECT excluded, sync_state, verification_state, COUNT(*) FROM repositories GROUP BY 1, 2, 3;
CREATE TRIGGER repository_counts_insert AFTER INSERT ON repositories BEGIN
    INSERT INTO repository_counts VALUES (NEW.excluded, NEW.sync_state, NEW.verification_state, 1)
        ON CONFLICT DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER repository_counts_delete AFTER DELETE ON repositories BEGIN
    UPDATE repository_counts SET n = n - 1
        WHERE is_excluded = OLD.excluded AND sync_state = OLD.sync_state
          AND verification_state = OLD.verification_state;
END;
CREATE TRIGGER repository_counts_update AFTER UPDATE OF excluded, sync_state, verification_state ON repositories
    WHEN OLD.excluded IS NOT NEW.excluded OR OLD.sync_state IS NOT NEW.sync_state
      OR OLD.verification_state IS NOT NEW.verification_state
BEGIN
    UPDATE repository_counts SET n = n - 1
        WHERE is_excluded = OLD.excluded AND sync_state = OLD.sync_state
          AND verification_state = OLD.verification_state;
    INSERT INTO repository_counts VALUES (NEW.excluded, NEW.sync_state, NEW.verification_state, 1)
        ON CONFLICT DO UPDATE SET n = n + 1;
END;

-- @version 16
-- The repository list's name filter (a part of the name, anywhere in it):
-- the names' trigrams, kept by the triggers below, find the few that match
-- without reading every name (40 ms at 100,000 repositories). The list's
-- order and its other filters come from repositories_listing.
CREATE VIRTUAL TABLE repository_names USING fts5 (
    name, content = 'repositories', content_rowid = 'id', tokenize = 'trigram', detail = 'none'
);
INSERT INTO repository_names (repository_names) VALUES ('rebuild');
CREATE TRIGGER repository_names_insert AFTER INSERT ON repositories BEGIN
    INSERT INTO repository_names (rowid, name) VALUES (NEW.id, NEW.name);
END;
CREATE TRIGGER repository_names_delete AFTER DELETE ON repositories BEGIN
    INSERT INTO repository_names (repository_names, rowid, name) VALUES ('delete', OLD.id, OLD.name);
END;
CREATE TRIGGER repository_names_update AFTER UPDATE OF name ON repositories WHEN OLD.name IS NOT NEW.name BEGIN
    INSERT INTO repository_names (repository_names, rowid, name) VALUES ('delete', OLD.id, OLD.name);
    INSERT INTO repository_names (rowid, name) VALUES (NEW.id, NEW.name);
END;

-- @version 17
-- A deletion an import asked for (the bundle no longer lists the tag):
-- held like one the primary asked for, and applied when due by the next
-- import that still lists it as gone, or by an operator; `georeg
-- deletions` names the bundle.
ALTER TABLE deletions ADD COLUMN bundle TEXT /* the transfer bundle whose import asked for it (NULL: the primary) */;

-- @version 18
-- An overwrite is a deletion too: when a tag moves on the primary, the
-- digest it pointed to is what a secondary would lose. With
-- replication.delete_delay_hours above 0 the tag moves on the secondary at
-- once, and the digest it left stays reachable there for the delay under a
-- backup tag (`georeg-kept-sha256-<hex>`), recorded here as kind
-- 'overwrite': `tag` the tag, `digest` the digest it left, `replaced_by`
-- the digest the primary moved it to. `georeg deletions --cancel` puts the
-- tag back to `digest` on the secondary, which keeps it there while the
-- primary has the tag at `replaced_by`. The kind's CHECK changes, so the
-- table is rebuilt; a tag overwritten twice within the delay keeps both
-- digests, so an overwrite is open once per tag and digest.
CREATE TABLE deletions_v18 (
    id            INTEGER PRIMARY KEY,
    repository_id INTEGER NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    kind          TEXT NOT NULL CHECK (kind IN ('tag', 'manifest', 'overwrite')),
    tag           TEXT,
    digest        TEXT,
    cause         TEXT NOT NULL,
    tags          INTEGER NOT NULL DEFAULT 1,
    state         TEXT NOT NULL DEFAULT 'held'
                  CHECK (state IN ('held', 'applying', 'applied', 'cancelled', 'dropped')),
    seen_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    applies_at    TEXT NOT NULL,
    decided_at    TEXT,
    decided_by    TEXT CHECK (decided_by IN ('delay', 'operator', 'primary')),
    last_error    TEXT,
    burst         TEXT,
    bundle        TEXT,
    replaced_by   TEXT /* kind overwrite: the digest the primary moved the tag to */
);
INSERT INTO deletions_v18 (id, repository_id, kind, tag, digest, cause, tags, state, seen_at, applies_at,
                           decided_at, decided_by, last_error, burst, bundle)
    SELECT id, repository_id, kind, tag, digest, cause, tags, state, seen_at, applies_at,
           decided_at, decided_by, last_error, burst, bundle FROM deletions;
DROP TABLE deletions;
ALTER TABLE deletions_v18 RENAME TO deletions;
CREATE UNIQUE INDEX deletions_open ON deletions
    (repository_id, kind, COALESCE(tag, digest), CASE kind WHEN 'overwrite' THEN digest ELSE '' END)
    WHERE state IN ('held', 'applying', 'cancelled');
CREATE INDEX deletions_by_state ON deletions (state, applies_at);
CREATE INDEX deletions_by_time ON deletions (seen_at);
CREATE INDEX deletions_in_bursts ON deletions (state, seen_at) WHERE burst IS NOT NULL;
