-- A follow-up per detractor. A rule's owner is never replaced; a sales decision replaces the
-- owner of a follow-up nobody has started on yet.
INSERT INTO followups (wave_id, contact_id, account_id, score, owner_type, owner, owner_source, created_at)
VALUES (:wave_id, :contact_id, :account_id, :score, :owner_type, :owner, :owner_source, :now)
ON CONFLICT (wave_id, contact_id) DO UPDATE SET
    owner_type = excluded.owner_type,
    owner = excluded.owner,
    owner_source = excluded.owner_source
WHERE followups.status = 'open' AND excluded.owner_source = 'sales_decision'
