"""
### NPS bounces: late bounces and complaints stop every later email

Runs every 15 minutes (never two runs at once) over the bounce mailbox, for CS ops:

1. **poll_bounce_mailbox**: reads the unread messages of the mailbox of the `nps_bounces`
   connection (IMAP; extra `folder`, `ssl`, `starttls`, `processed_folder`). A delivery status
   notification (RFC 3464) whose recipient failed with a 5.1.x status bounces the address
   (`contacts.bounced_at`); another permanent failure is recorded and suppresses nothing; delays and
   4.x.x statuses are ignored. An abuse report (RFC 5965) is a complaint: the address is opted out.
   Each event is linked to the email it returns by Message-ID (`outbox.message_id`) and kept in
   `delivery_events`. Reports read are marked \\Seen (and moved to `processed_folder`, when set); a
   message that is no report is left unread and counted. Skipped when `nps_bounces` is not defined.

Bounces and complaints posted by an ESP (SendGrid, Amazon SES) reach the survey form's
`/hooks/sendgrid` and `/hooks/ses` instead (`include/nps/web/esp_webhooks.py`). Re-running is safe: an
event already recorded is not applied again.

#### Owner
CS operations (sender reputation), data engineering (runs).
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import dag, task

from include.nps.monitoring import alerts

BOUNCES_CONN_ID = "nps_bounces"


@dag(
    dag_id="nps_bounces",
    schedule=dt.timedelta(minutes=15),
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=dt.timedelta(minutes=30),
    doc_md=__doc__,
    tags=["nps", "delivery", "bounces"],
    default_args={
        "owner": "cs-ops",
        "retries": 2,
        "retry_delay": dt.timedelta(minutes=1),
        "on_failure_callback": alerts.task_failed,
    },
)
def nps_bounces() -> None:
    @task
    def poll_bounce_mailbox() -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from include.nps.core import connections
        from include.nps.core.connections import nps_engine
        from include.nps.delivery import bounce_mailbox

        if not connections.connection_defined(BOUNCES_CONN_ID):
            raise AirflowSkipException(f"connection {BOUNCES_CONN_ID!r} is not defined: no bounce mailbox to read")
        return bounce_mailbox.poll_bounce_mailbox(nps_engine(), BOUNCES_CONN_ID)

    poll_bounce_mailbox()


nps_bounces()
