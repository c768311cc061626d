-- Alerts to data engineers and CS ops, one row per event, claimed before the alert is sent and
-- updated with its outcome after: whoever claims an event first sends it, nobody sends it twice.
-- An event is (kind, scope, subject, attempt), for example
--   task_failed     nps_wave/<run id>   send_invitations.send[3]   <try number>
--   milestone_late  <wave id>           flash                      0
--   wave_overdue    nps_wave/<run id>   ''                         0
--   low_response    <wave id>           reminder                   0
-- status: claimed (being sent), sent, partial (a channel failed), failed, unsent (no channel
-- configured: the message is kept here and in the log).

CREATE TABLE alerts (
    kind            VARCHAR(32) NOT NULL,
    scope           VARCHAR(600) NOT NULL,
    subject         VARCHAR(300) NOT NULL DEFAULT '',
    attempt         INTEGER NOT NULL DEFAULT 0,
    wave_id         VARCHAR(128),
    status          VARCHAR(16) NOT NULL DEFAULT 'claimed',
    channels        VARCHAR(200),
    message         TEXT,
    error           VARCHAR(1000),
    created_at      TIMESTAMP NOT NULL,
    sent_at         TIMESTAMP,
    PRIMARY KEY (kind, scope, subject, attempt)
);
CREATE INDEX alerts_wave ON alerts (wave_id, kind);
