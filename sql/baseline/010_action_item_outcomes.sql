-- Action items carry their theme, risk, checkpoints and tracker issue, and, once done, what the
-- customers are told was done ("you told us, we did" in the next wave's flash results).
ALTER TABLE action_items ADD COLUMN theme VARCHAR(64);
ALTER TABLE action_items ADD COLUMN risk VARCHAR(8);
ALTER TABLE action_items ADD COLUMN checkpoints TEXT;
ALTER TABLE action_items ADD COLUMN tracker_issue VARCHAR(500);
ALTER TABLE action_items ADD COLUMN public_note TEXT;
ALTER TABLE action_items ADD COLUMN completed_at TIMESTAMP;
