-- The orphan sweep's database side pages through suspect rows in id order
-- (store.SuspectRows). Without an index over just those rows, each page's
-- `ORDER BY id LIMIT n` walks the whole primary key and reads every row's
-- heap tuple to test the filter: with few suspects, the whole table per
-- sweep (7 s at 1M rows once it no longer fits shared_buffers). This index
-- holds only the rows store.suspectWhere can keep, minus its now() part
-- (an index predicate must be immutable), so a page reads suspects only.
-- It must stay implied by suspectWhere, or the planner stops using it.
--
-- Built CONCURRENTLY (hence no transaction) so migrating a live fleet's
-- table does not block its writes; a failed concurrent build leaves an
-- invalid index behind, which the DROP clears on the next attempt.

-- +goose NO TRANSACTION

-- +goose Up
DROP INDEX CONCURRENTLY IF EXISTS workspaces_suspect_idx;
CREATE INDEX CONCURRENTLY workspaces_suspect_idx ON workspaces (id)
    WHERE (status IN ('stopped', 'removed', 'failed') AND instance_id IS NOT NULL)
        OR status IN ('stopping', 'provisioning');

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS workspaces_suspect_idx;
