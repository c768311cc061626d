-- NPS database, version 3: data checks keep their warnings and their cost; responses that
-- break the wave's rules (outside the window, not invited, out of scale) are set aside with
-- their reason instead of failing the wave or silently counting.

ALTER TABLE check_results ADD COLUMN warnings INTEGER NOT NULL DEFAULT 0;
ALTER TABLE check_results ADD COLUMN duration_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE responses ADD COLUMN quarantine_reason VARCHAR(1000);
