-- The project's own tables: the workspace row (the state machine), its env
-- (kept apart because it may hold secrets and must never reach job args,
-- events or logs), and the append-only timeline written in the same
-- transaction as every state change.

-- +goose Up
CREATE TABLE workspaces (
    id                uuid        PRIMARY KEY,
    status            text        NOT NULL,
    desired_state     text        NOT NULL,
    instance_id       text        NULL,
    generation        bigint      NOT NULL DEFAULT 1,
    provision_nonce   text        NOT NULL,
    runtime           text        NOT NULL DEFAULT '',
    tier              integer     NOT NULL DEFAULT 0,
    platform_url      text        NOT NULL DEFAULT '',
    last_error        text        NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    status_changed_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT workspaces_status_check CHECK (status IN ('provisioning', 'running', 'stopping', 'stopped', 'removed', 'failed')),
    CONSTRAINT workspaces_desired_check CHECK (desired_state IN ('running', 'stopped', 'deleted')),
    CONSTRAINT workspaces_generation_check CHECK (generation >= 1),
    CONSTRAINT workspaces_instance_id_check CHECK (instance_id IS NULL OR instance_id ~ '^i-[0-9a-f]{8,17}$')
);

-- The sweep scans by status; the oldest-stopping alert reads this too.
CREATE INDEX workspaces_status_changed_idx ON workspaces (status, status_changed_at);
-- The sweep's CP side looks rows up by instance id.
CREATE UNIQUE INDEX workspaces_instance_id_idx ON workspaces (instance_id) WHERE instance_id IS NOT NULL;

CREATE TABLE workspace_env (
    workspace_id uuid  PRIMARY KEY REFERENCES workspaces (id) ON DELETE CASCADE,
    env          jsonb NOT NULL DEFAULT '{}'
);

CREATE TABLE workspace_events (
    id           bigserial   PRIMARY KEY,
    workspace_id uuid        NOT NULL,
    at           timestamptz NOT NULL DEFAULT clock_timestamp(),
    event        text        NOT NULL,
    job_id       bigint      NULL,
    attempt      integer     NULL,
    actor        text        NOT NULL DEFAULT '',
    fields       jsonb       NOT NULL DEFAULT '{}'
);

CREATE INDEX workspace_events_workspace_idx ON workspace_events (workspace_id, at, id);
-- Retention deletes by age.
CREATE INDEX workspace_events_at_idx ON workspace_events (at);

-- +goose Down
DROP TABLE workspace_events;
DROP TABLE workspace_env;
DROP TABLE workspaces;
