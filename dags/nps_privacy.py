"""
### NPS privacy: export or erase one person's data, on request

Triggered by CS ops or the data protection officer from the trigger form (or by
`python -m include.nps.privacy` for automation), with the person's email address or contact id:

- **export**: one JSON file and a readable HTML page with everything the NPS DB holds about the
  person, written to `<NPS_HOME>/privacy/exports/`;
- **erase**: every row that names the person is deleted or anonymised (scores stay, so every
  wave's counts and NPS are unchanged), the address and contact id go on the suppression list as
  salted hashes (no later wave imports or emails them), and the raw-data drops and reports that
  already left with them in are listed in the task's result with where they went, to be recalled;
- **export_and_erase**: the export first, then the erasure.

Each request is recorded in the audit trail (who, when, what, counts; no personal data), shown on
the NPS dashboard's audit page. Running it again is safe: an erased person has nothing left to erase.
The salt comes from `NPS_PRIVACY_SALT` or the `nps_privacy` connection's password. See the README's
section for the data protection officer, and `include/nps/privacy/`.

#### Owner
Data protection officer (requests), data engineering (runs).
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import Param, dag, task

from include.nps.monitoring import alerts


@dag(
    dag_id="nps_privacy",
    schedule=None,
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["nps", "privacy"],
    default_args={
        "owner": "data-protection",
        "retries": 1,
        "retry_delay": dt.timedelta(minutes=1),
        "on_failure_callback": alerts.task_failed,
    },
    params={
        "action": Param(
            "export",
            type="string",
            enum=["export", "erase", "export_and_erase"],
            title="What to do",
            description="export: the person's data as JSON and HTML. erase: delete or anonymise it for good. "
            "export_and_erase: both, the export first.",
        ),
        "email": Param(
            None,
            type=["null", "string"],
            title="Email address",
            description="The person's email address (any case). Give it or the contact id.",
        ),
        "contact_id": Param(
            None,
            type=["null", "string"],
            title="Contact id",
            description="The person's contact id, as in the contacts files. Give it or the email address.",
        ),
        "requested_by": Param(
            None,
            type=["null", "string"],
            title="Requested by",
            description="Who asked for it, for the audit trail (default: you, the Airflow user who triggers).",
        ),
        "reason": Param(
            None,
            type=["null", "string"],
            title="Request reference",
            description=(
                "The request's reference, e.g. a ticket number. No personal data: it is kept in the audit trail."
            ),
        ),
    },
)
def nps_privacy() -> None:
    @task
    def handle_request(params: dict | None = None, dag_run=None) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from include.nps.core.connections import nps_engine
        from include.nps.privacy import requests
        from include.nps.privacy.audit import run_actor

        assert params is not None  # Airflow always passes the run's params
        actor = params.get("requested_by") or run_actor(dag_run)
        try:
            return requests.handle(
                nps_engine(),
                params["action"],
                actor,
                params.get("email"),
                params.get("contact_id"),
                params.get("reason") or "",
            )
        except requests.RequestError as exc:
            raise AirflowFailException(str(exc)) from exc

    handle_request()


nps_privacy()
