-- authz schema, version 1. Every key starts with the tenant: nothing crosses tenants.

CREATE TABLE tenants (
    tenant_id    text PRIMARY KEY,
    display_name text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    -- Bumped by every write transaction of the tenant, which locks this row: it serialises the
    -- tenant's writes, so revision order is commit order.
    revision     bigint NOT NULL DEFAULT 1 CHECK (revision > 0)
);

CREATE TABLE users (
    tenant_id    text NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    user_id      text NOT NULL,
    display_name text NOT NULL DEFAULT '',
    email        text NOT NULL DEFAULT '',
    status       text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'blocked')),
    -- Unscoped direct grants: permission keys.
    direct       text[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, user_id)
);

CREATE TABLE groups (
    tenant_id   text NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    group_key   text NOT NULL,
    name        text NOT NULL,
    description text NOT NULL DEFAULT '',
    permissions text[] NOT NULL DEFAULT '{}',
    version     bigint NOT NULL DEFAULT 1 CHECK (version > 0),
    PRIMARY KEY (tenant_id, group_key)
);

-- Memberships in custom groups and in catalog system groups (which have no row in `groups`).
CREATE TABLE memberships (
    tenant_id text NOT NULL,
    user_id   text NOT NULL,
    group_key text NOT NULL,
    PRIMARY KEY (tenant_id, user_id, group_key),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, user_id) ON DELETE CASCADE
);
CREATE INDEX memberships_by_group ON memberships (tenant_id, group_key, user_id);

CREATE TABLE user_scoped_grants (
    tenant_id     text NOT NULL,
    user_id       text NOT NULL,
    permission    text NOT NULL,
    resource_type text NOT NULL,
    resource_id   text NOT NULL,
    PRIMARY KEY (tenant_id, user_id, permission, resource_type, resource_id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, user_id) ON DELETE CASCADE
);

CREATE TABLE group_scoped_grants (
    tenant_id     text NOT NULL,
    group_key     text NOT NULL,
    permission    text NOT NULL,
    resource_type text NOT NULL,
    resource_id   text NOT NULL,
    PRIMARY KEY (tenant_id, group_key, permission, resource_type, resource_id),
    FOREIGN KEY (tenant_id, group_key) REFERENCES groups (tenant_id, group_key) ON DELETE CASCADE
);

CREATE TABLE restrictions (
    tenant_id     text NOT NULL,
    user_id       text NOT NULL,
    resource_type text NOT NULL,
    resource_ids  text[] NOT NULL CHECK (cardinality(resource_ids) > 0),
    PRIMARY KEY (tenant_id, user_id, resource_type),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, user_id) ON DELETE CASCADE
);

-- The change log behind AuthzService.Watch: one row per committed write.
CREATE TABLE changes (
    tenant_id   text NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    revision    bigint NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT now(),
    operation   text NOT NULL,
    users       text[] NOT NULL DEFAULT '{}',
    groups      text[] NOT NULL DEFAULT '{}',
    -- True when the change touched more users than it lists (a bulk change).
    all_users   boolean NOT NULL DEFAULT false,
    PRIMARY KEY (tenant_id, revision)
);
