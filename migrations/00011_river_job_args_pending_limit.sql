-- River's GIN index on river_job.args (jsonb_ops, fastupdate on) takes
-- new entries into a pending list that every args @> lookup reads whole
-- (store.LiveJobs and its kin) until a vacuum, an autoanalyze or an
-- insert that finds the list over gin_pending_list_limit flushes it. At
-- the server default of 4 MB a lookup read ~380 pages and took 40 ms of
-- CPU once the list was full (the soak, 200 jobs/s, fills it in ~30 s);
-- every job version adds to it, since River's state changes are no HOT
-- updates. 256 kB bounds a lookup's pending read at 32 pages; flushes
-- come 16 times as often, each 16 times smaller.

-- +goose Up
ALTER INDEX river_job_args_index SET (gin_pending_list_limit = 256);

-- +goose Down
ALTER INDEX river_job_args_index RESET (gin_pending_list_limit);
