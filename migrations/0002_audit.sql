-- The change log doubles as the audit log: who made each change, what it aimed at, and the
-- before/after of every user and group it touched. Never updated or deleted through the API.
ALTER TABLE changes
    ADD COLUMN actor  text,
    ADD COLUMN target text NOT NULL DEFAULT '',
    ADD COLUMN before jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN after  jsonb NOT NULL DEFAULT '{}';

CREATE INDEX changes_by_actor ON changes (tenant_id, actor, revision DESC);
CREATE INDEX changes_by_target ON changes (tenant_id, target, revision DESC);
CREATE INDEX changes_by_time ON changes (tenant_id, committed_at DESC);
