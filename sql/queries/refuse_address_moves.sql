-- An address moves to another contact id only when its holder is in the file too (with a new
-- address): the other moves are refused. Their rows then leave contacts_staging, which may take
-- another move's holder away: run it again until it refuses none.
UPDATE address_moves SET refused = TRUE
WHERE NOT refused
  AND NOT EXISTS (SELECT 1 FROM contacts_staging s WHERE s.contact_id = address_moves.holder)
