-- Parts of an earlier classification of a comment beyond the parts of its new one.
DELETE FROM comment_parts WHERE wave_id = :wave_id AND contact_id = :contact_id AND part >= :parts
