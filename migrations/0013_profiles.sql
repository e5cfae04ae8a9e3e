-- Payload profiles (issue 18): how ingest reads a device family's messages without code.
-- The document is the checked profile as applied (YAML/JSON file or POST /v1/profiles); the
-- version grows with each change. A device names the profile it speaks (NULL: native v1).

CREATE TABLE payload_profiles (
    name        text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
    format      text NOT NULL CHECK (format IN ('json', 'csv', 'text', 'sparkplug')),
    document    jsonb NOT NULL CHECK (jsonb_typeof(document) = 'object'),
    version     integer NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE devices ADD COLUMN profile text REFERENCES payload_profiles (name);
