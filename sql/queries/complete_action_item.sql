-- Done, with what customers are told was done; completing an item again updates its note.
UPDATE action_items
SET status = 'done', public_note = :note, completed_at = COALESCE(completed_at, :now)
WHERE wave_id = :w AND item_key = :k
