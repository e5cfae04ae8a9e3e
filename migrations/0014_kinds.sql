-- Asset kinds as data (issue 18). A kind's current definition (the document of its file or
-- of POST /v1/kinds, as validated) is kept with the kind, every applied version in
-- kind_versions; metrics, parts and the older asset_kinds columns are kept in step with it
-- by the kinds loader. A kind with version 0 and no definition is a catalogue row written
-- before definitions existed: the first apply of its file adopts it as version 1.

ALTER TABLE asset_kinds
    ADD COLUMN display_name text,
    ADD COLUMN version      integer NOT NULL DEFAULT 0 CHECK (version >= 0),
    ADD COLUMN definition   jsonb CHECK (jsonb_typeof(definition) = 'object'),
    ADD COLUMN updated_at   timestamptz NOT NULL DEFAULT now(),
    ADD CHECK ((version = 0) = (definition IS NULL));

CREATE TABLE kind_versions (
    kind        text NOT NULL REFERENCES asset_kinds (name),
    version     integer NOT NULL CHECK (version >= 1),
    definition  jsonb NOT NULL CHECK (jsonb_typeof(definition) = 'object'),
    changes     text[] NOT NULL DEFAULT '{}',
    source      text NOT NULL DEFAULT '',
    applied_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, version)
);

-- condition: describes wear; usage: the life counter; regime: an operating setting
ALTER TABLE metrics
    ADD COLUMN role text NOT NULL DEFAULT 'condition'
        CHECK (role IN ('condition', 'usage', 'regime'));
UPDATE metrics m SET role = 'usage'
  FROM asset_kinds k
 WHERE k.name = m.kind AND k.usage_metric = m.name;

-- the version of its kind's definition a wear model was trained on
ALTER TABLE model_versions ADD COLUMN kind_version integer;
