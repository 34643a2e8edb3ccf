-- Per-workspace env values, encrypted at rest (AES-256-GCM, see package
-- secrets). They are decrypted only in the worker's env hook, at the
-- moment a provision calls the CP; the worker never stores a copy.
CREATE TABLE IF NOT EXISTS public.workspace_secrets (
    workspace_id       uuid NOT NULL REFERENCES public.workspaces (id) ON DELETE CASCADE,
    key                text NOT NULL,
    encrypted_value    bytea NOT NULL,
    encryption_version int NOT NULL,
    PRIMARY KEY (workspace_id, key)
);
