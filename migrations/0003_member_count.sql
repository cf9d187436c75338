-- A custom group's member count, kept by statement-level triggers on memberships: reading a
-- group (and every write's before/after snapshot of it) no longer counts its members, which
-- took ~50 ms for a 100,000-member group.
ALTER TABLE groups ADD COLUMN member_count bigint NOT NULL DEFAULT 0;

UPDATE groups g SET member_count = c.n
FROM (SELECT tenant_id, group_key, count(*) AS n FROM memberships GROUP BY 1, 2) c
WHERE g.tenant_id = c.tenant_id AND g.group_key = c.group_key;

CREATE FUNCTION memberships_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE groups g SET member_count = g.member_count + d.n
    FROM (SELECT tenant_id, group_key, count(*) AS n FROM added GROUP BY 1, 2) d
    WHERE g.tenant_id = d.tenant_id AND g.group_key = d.group_key;
    RETURN NULL;
END $$;

CREATE FUNCTION memberships_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE groups g SET member_count = g.member_count - d.n
    FROM (SELECT tenant_id, group_key, count(*) AS n FROM removed GROUP BY 1, 2) d
    WHERE g.tenant_id = d.tenant_id AND g.group_key = d.group_key;
    RETURN NULL;
END $$;

CREATE TRIGGER memberships_count_added AFTER INSERT ON memberships
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION memberships_added();
CREATE TRIGGER memberships_count_removed AFTER DELETE ON memberships
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION memberships_removed();
