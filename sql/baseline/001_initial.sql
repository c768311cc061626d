-- NPS database, version 1. Portable SQL: the same file runs on SQLite and PostgreSQL.
-- Natural keys everywhere so every write can be an idempotent upsert (ON CONFLICT).
-- Timestamps are stored in UTC.

CREATE TABLE accounts (
    account_id      VARCHAR(64) PRIMARY KEY,
    name            VARCHAR(200) NOT NULL,
    country         VARCHAR(2),
    tier            VARCHAR(32),
    sales_owner     VARCHAR(254),
    csm             VARCHAR(254),
    vip             BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at      TIMESTAMP NOT NULL
);

CREATE TABLE contacts (
    contact_id      VARCHAR(64) PRIMARY KEY,
    account_id      VARCHAR(64) NOT NULL REFERENCES accounts (account_id),
    email           VARCHAR(254) NOT NULL UNIQUE,
    name            VARCHAR(200) NOT NULL,
    role            VARCHAR(100),
    locale          VARCHAR(16) NOT NULL DEFAULT 'en',
    opted_out_at    TIMESTAMP,
    bounced_at      TIMESTAMP,
    updated_at      TIMESTAMP NOT NULL
);

CREATE TABLE waves (
    wave_id         VARCHAR(128) PRIMARY KEY,
    program         VARCHAR(100) NOT NULL,
    name            VARCHAR(200) NOT NULL,
    country         VARCHAR(2) NOT NULL,
    status          VARCHAR(16) NOT NULL,
    params          TEXT NOT NULL,
    open_at         TIMESTAMP NOT NULL,
    close_at        TIMESTAMP NOT NULL,
    closed_at       TIMESTAMP,
    created_at      TIMESTAMP NOT NULL
);
CREATE INDEX waves_program_close ON waves (program, close_at);

CREATE TABLE wave_milestones (
    wave_id         VARCHAR(128) NOT NULL REFERENCES waves (wave_id),
    milestone       VARCHAR(32) NOT NULL,
    due_at          TIMESTAMP NOT NULL,
    done_at         TIMESTAMP,
    PRIMARY KEY (wave_id, milestone)
);

CREATE TABLE wave_audience (
    wave_id         VARCHAR(128) NOT NULL REFERENCES waves (wave_id),
    contact_id      VARCHAR(64) NOT NULL REFERENCES contacts (contact_id),
    account_id      VARCHAR(64) NOT NULL,
    email           VARCHAR(254) NOT NULL,
    name            VARCHAR(200) NOT NULL,
    locale          VARCHAR(16) NOT NULL,
    included        BOOLEAN NOT NULL,
    exclusion_reason VARCHAR(200),
    snapshot_at     TIMESTAMP NOT NULL,
    PRIMARY KEY (wave_id, contact_id)
);

CREATE TABLE quarantine (
    wave_id         VARCHAR(128) NOT NULL,
    source          VARCHAR(500) NOT NULL,
    row_number      INTEGER NOT NULL,
    field           VARCHAR(64) NOT NULL,
    value           TEXT,
    reason          VARCHAR(500) NOT NULL,
    PRIMARY KEY (wave_id, source, row_number, field)
);

-- The message ledger: one row per wave, kind and recipient, written before the message is sent.
-- recipient is a contact id for customers, an email address for internal recipients.
CREATE TABLE outbox (
    wave_id         VARCHAR(128) NOT NULL,
    kind            VARCHAR(32) NOT NULL,
    recipient       VARCHAR(254) NOT NULL,
    channel         VARCHAR(16) NOT NULL DEFAULT 'email',
    chunk           INTEGER NOT NULL DEFAULT 0,
    address         VARCHAR(500) NOT NULL,
    status          VARCHAR(16) NOT NULL DEFAULT 'pending',
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      VARCHAR(1000),
    message_id      VARCHAR(254),
    created_at      TIMESTAMP NOT NULL,
    sent_at         TIMESTAMP,
    PRIMARY KEY (wave_id, kind, recipient)
);
CREATE INDEX outbox_status ON outbox (wave_id, kind, chunk, status);

CREATE TABLE responses (
    wave_id         VARCHAR(128) NOT NULL REFERENCES waves (wave_id),
    contact_id      VARCHAR(64) NOT NULL REFERENCES contacts (contact_id),
    score           INTEGER NOT NULL CHECK (score BETWEEN 0 AND 10),
    comment         TEXT,
    pillar_answers  TEXT NOT NULL DEFAULT '{}',
    answered_at     TIMESTAMP NOT NULL,
    updated_at      TIMESTAMP NOT NULL,
    PRIMARY KEY (wave_id, contact_id)
);

CREATE TABLE followups (
    wave_id         VARCHAR(128) NOT NULL REFERENCES waves (wave_id),
    contact_id      VARCHAR(64) NOT NULL REFERENCES contacts (contact_id),
    account_id      VARCHAR(64) NOT NULL,
    score           INTEGER NOT NULL,
    owner_type      VARCHAR(16) NOT NULL,
    owner           VARCHAR(254) NOT NULL,
    status          VARCHAR(16) NOT NULL DEFAULT 'open',
    created_at      TIMESTAMP NOT NULL,
    PRIMARY KEY (wave_id, contact_id)
);

CREATE TABLE action_items (
    wave_id         VARCHAR(128) NOT NULL REFERENCES waves (wave_id),
    item_key        VARCHAR(200) NOT NULL,
    title           VARCHAR(300) NOT NULL,
    reason          TEXT NOT NULL,
    owner           VARCHAR(254) NOT NULL,
    priority        VARCHAR(8) NOT NULL CHECK (priority IN ('high', 'medium', 'low')),
    due_date        DATE NOT NULL,
    status          VARCHAR(16) NOT NULL DEFAULT 'open',
    created_at      TIMESTAMP NOT NULL,
    PRIMARY KEY (wave_id, item_key)
);

CREATE TABLE check_results (
    wave_id         VARCHAR(128) NOT NULL,
    step            VARCHAR(64) NOT NULL,
    suite           VARCHAR(64) NOT NULL,
    success         BOOLEAN NOT NULL,
    evaluated       INTEGER NOT NULL,
    failed          INTEGER NOT NULL,
    summary         TEXT NOT NULL,
    details         TEXT NOT NULL,
    checked_at      TIMESTAMP NOT NULL,
    PRIMARY KEY (wave_id, step)
);
