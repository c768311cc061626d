-- A wave's audience, in one statement: the contacts listed in the temporary table
-- snapshot_contacts, each with the first exclusion rule that applies.
-- "Recently surveyed": sent an invitation by another wave that opened after :recent_since. The
-- rule is an EXISTS per contact in the select list, where both databases keep it a subquery (in a
-- WHERE, PostgreSQL may turn it into a join whose plan, on stale statistics, scans the outbox once
-- per contact): one look-up in the index outbox_by_recipient per contact, or one pass over the
-- outbox hashed, however many waves came before. MATERIALIZED: evaluated once per contact, though
-- both CASEs read it.
WITH snapshot AS MATERIALIZED (
    SELECT
        contacts.contact_id, contacts.account_id, contacts.email, contacts.name, contacts.locale,
        contacts.opted_out_at, contacts.bounced_at,
        EXISTS (
            SELECT 1
            FROM outbox o
            JOIN waves w ON w.wave_id = o.wave_id
            WHERE o.recipient = contacts.contact_id AND o.kind = 'invitation' AND o.status = 'sent'
              AND o.wave_id <> :wave_id AND w.open_at > :recent_since
        ) AS recent
    FROM contacts
    WHERE contacts.contact_id IN (SELECT contact_id FROM snapshot_contacts)
)
INSERT INTO wave_audience (wave_id, contact_id, account_id, email, name, locale, included, exclusion_reason, snapshot_at)
SELECT
    :wave_id, s.contact_id, s.account_id, s.email, s.name, s.locale,
    CASE
        WHEN s.opted_out_at IS NOT NULL OR s.bounced_at IS NOT NULL THEN FALSE
        WHEN s.recent THEN FALSE
        ELSE TRUE
    END,
    CASE
        WHEN s.opted_out_at IS NOT NULL THEN 'opted_out'
        WHEN s.bounced_at IS NOT NULL THEN 'bounced'
        WHEN s.recent THEN 'surveyed_recently'
    END,
    :now
FROM snapshot s
WHERE true
ON CONFLICT (wave_id, contact_id) DO NOTHING
