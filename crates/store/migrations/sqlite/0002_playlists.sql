-- Playlists: a `download` with `playlist: true` expands into child jobs, one per item.
--
-- While its children run, the parent stays `running` under the sentinel lease owner
-- 'children', whose lease never expires, so that no worker claims it and no reaper fails it.
-- The trigger below keeps the parent's progress at the mean of its children's and ends the
-- parent when its last child ends: `canceled` if its cancel was requested, `succeeded` if at
-- least one item was downloaded, else `failed`. Doing this in the database means every path
-- that ends a child (success, failure, cancel, a reaped crash) settles the parent in the same
-- transaction.

ALTER TABLE jobs ADD COLUMN parent_id TEXT REFERENCES jobs (id) ON DELETE SET NULL;
CREATE INDEX jobs_parent ON jobs (parent_id) WHERE parent_id IS NOT NULL;

CREATE TRIGGER jobs_settle_parent
AFTER UPDATE OF state, progress ON jobs
WHEN NEW.parent_id IS NOT NULL
BEGIN
    UPDATE jobs SET progress = (
        SELECT SUM(CASE WHEN c.state IN ('succeeded', 'failed', 'canceled') THEN 1.0
                        ELSE c.progress END) / COUNT(*)
        FROM jobs AS c WHERE c.parent_id = NEW.parent_id)
    WHERE id = NEW.parent_id AND state = 'running' AND lease_owner = 'children';

    UPDATE jobs SET
        state = CASE
            WHEN cancel_requested = 1 THEN 'canceled'
            WHEN EXISTS (SELECT 1 FROM jobs AS c
                         WHERE c.parent_id = NEW.parent_id AND c.state = 'succeeded')
                THEN 'succeeded'
            ELSE 'failed' END,
        error = CASE
            WHEN cancel_requested = 0
             AND NOT EXISTS (SELECT 1 FROM jobs AS c
                             WHERE c.parent_id = NEW.parent_id AND c.state = 'succeeded')
                THEN '{"code":"download_failed","message":"no item of the playlist could be downloaded"}'
            ELSE NULL END,
        progress = 1,
        finished_at = COALESCE(NEW.finished_at, NEW.started_at, NEW.created_at),
        lease_owner = NULL,
        lease_expires_at = NULL
    WHERE id = NEW.parent_id AND state = 'running' AND lease_owner = 'children'
      AND NOT EXISTS (SELECT 1 FROM jobs AS c
                      WHERE c.parent_id = NEW.parent_id
                        AND c.state NOT IN ('succeeded', 'failed', 'canceled'));
END;
