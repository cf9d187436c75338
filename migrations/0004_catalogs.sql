-- The catalogs a database has been served with, oldest first: the newest row is the catalog the
-- database records. Rows are only ever added: by the first start, by a start with a compatible
-- catalog, and by `authzd catalog apply`.
CREATE TABLE catalogs (
    id           bigserial PRIMARY KEY,
    fingerprint  text NOT NULL,
    name         text NOT NULL,
    version      text NOT NULL,
    -- The catalog file as it was read.
    source       text NOT NULL,
    -- The system group keys, so a write can refuse a custom group key the newest catalog
    -- reserves without parsing it.
    system_groups text[] NOT NULL DEFAULT '{}',
    -- `initial`, `compatible` (a start with a compatible catalog) or `apply`.
    how          text NOT NULL,
    -- What `apply` was told to do with stored data (JSON), and its summary.
    mappings     jsonb NOT NULL DEFAULT '{}',
    recorded_at  timestamptz NOT NULL DEFAULT now()
);
