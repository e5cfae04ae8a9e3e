-- Sparkplug B sessions outlive an ingestor (issue 18): the alias and data-type tables an edge
-- node's last NBIRTH and DBIRTHs declared, so that a restarted or second ingestor names its
-- DATA without asking for a rebirth. One row per edge node (aliases are unique per node, its
-- devices' included), replaced by a newer NBIRTH, merged by DBIRTHs of the same session,
-- deleted by the session's NDEATH. No customer: a node is mapped to devices by profiles.

CREATE TABLE sparkplug_sessions (
    group_id   text NOT NULL,
    edge_node  text NOT NULL,
    bd_seq     bigint,                     -- the NBIRTH's bdSeq (null if it had none)
    born_ms    bigint NOT NULL,            -- the NBIRTH's payload timestamp: which session
    aliases    jsonb NOT NULL,             -- {"<alias>": ["<metric name>", <data type>]}
    types      jsonb NOT NULL,             -- {"<device or ''>": {"<metric name>": <data type>}}
    devices    text[] NOT NULL,            -- devices born in the session (DBIRTH)
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, edge_node)
);
