-- The host's own tables, in public, as the real host has them. Every
-- statement is idempotent: the runner applies each file once, but a
-- database restored from a dump without schema_migrations must not fail.
DO $$ BEGIN
    CREATE TYPE public.workspace_status AS ENUM
        ('provisioning', 'online', 'offline', 'degraded', 'failed', 'removed', 'paused', 'hibernated');
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;

CREATE TABLE IF NOT EXISTS public.workspaces (
    id                uuid PRIMARY KEY,
    name              text NOT NULL,
    tier              int NOT NULL DEFAULT 1,
    runtime           text NOT NULL DEFAULT '',
    parent_id         uuid REFERENCES public.workspaces (id),
    status            public.workspace_status NOT NULL DEFAULT 'provisioning',
    instance_id       text,
    last_sample_error text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS workspaces_parent_id_idx ON public.workspaces (parent_id);
