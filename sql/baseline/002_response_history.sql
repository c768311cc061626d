-- NPS database, version 2: every submission of a response is kept.
-- A respondent may change the answer until the wave closes; `responses` holds the latest
-- revision and `response_history` every revision, in order.

ALTER TABLE responses ADD COLUMN revision INTEGER NOT NULL DEFAULT 1;

CREATE TABLE response_history (
    wave_id         VARCHAR(128) NOT NULL,
    contact_id      VARCHAR(64) NOT NULL,
    revision        INTEGER NOT NULL,
    score           INTEGER NOT NULL CHECK (score BETWEEN 0 AND 10),
    comment         TEXT,
    pillar_answers  TEXT NOT NULL DEFAULT '{}',
    submitted_at    TIMESTAMP NOT NULL,
    PRIMARY KEY (wave_id, contact_id, revision),
    FOREIGN KEY (wave_id, contact_id) REFERENCES responses (wave_id, contact_id)
);
