-- NPS database, version 4: sales decide who follows up a detractor. Decisions are read back
-- from the drop files sales return; a follow-up records whether its owner came from the
-- routing rule or from a sales decision.

CREATE TABLE sales_decisions (
    wave_id         VARCHAR(128) NOT NULL REFERENCES waves (wave_id),
    contact_id      VARCHAR(64) NOT NULL,
    decision        VARCHAR(8) NOT NULL CHECK (decision IN ('sales', 'cs')),
    source          VARCHAR(500) NOT NULL,
    row_number      INTEGER NOT NULL,
    read_at         TIMESTAMP NOT NULL,
    PRIMARY KEY (wave_id, contact_id)
);

ALTER TABLE followups ADD COLUMN owner_source VARCHAR(16) NOT NULL DEFAULT 'rule';
