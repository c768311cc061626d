SELECT content FROM flash_contents WHERE wave_id = :wave_id
