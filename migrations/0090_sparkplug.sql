-- Sparkplug B ingest (issue 18): the profile format is named `sparkplug_b` (documents that
-- said `sparkplug` are read as the same), and a device knows when its Sparkplug edge node or
-- device last died (NDEATH / DDEATH); any later message from it clears the mark.

ALTER TABLE payload_profiles DROP CONSTRAINT payload_profiles_format_check;
UPDATE payload_profiles
   SET format = 'sparkplug_b', document = jsonb_set(document, '{format}', '"sparkplug_b"')
 WHERE format = 'sparkplug';
ALTER TABLE payload_profiles
    ADD CONSTRAINT payload_profiles_format_check
    CHECK (format IN ('json', 'csv', 'text', 'sparkplug_b'));

ALTER TABLE devices ADD COLUMN offline_at timestamptz;
