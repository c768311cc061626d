"""The wave's human-in-the-loop tasks: Airflow's HITL operators with the project's glue.

Both wait in Airflow's Required Actions (state `awaiting_input`: no worker, no triggerer held)
until a person answers through the UI or the REST API, or until their deadline, when the default
stands (the scheduler's timeout sweep writes it as the answer). Their subject and body are
rendered by the domain (`include/templates/hitl/`, customer text escaped for Markdown) and are
never rendered again as Jinja templates here: a comment holding `{{ ... }}` stays text.

The DAG file imports this at parse time: only Airflow's operators; `pipeline` when a task runs.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator, HITLOperator
from airflow.sdk.exceptions import AirflowSkipException

SHORTEST_WAIT = dt.timedelta(seconds=1)  # a deadline already past: the default stands at once


def _until(deadline: str) -> dt.timedelta:
    """The time left until `deadline` (ISO 8601), at least SHORTEST_WAIT."""
    return max(dt.datetime.fromisoformat(deadline) - dt.datetime.now(dt.UTC), SHORTEST_WAIT)


def _answered_by(answer: dict[str, Any], event: dict[str, Any]) -> str | None:
    """Who answered; None when nobody did and the default stood at the deadline."""
    user = answer.get("responded_by_user")
    return None if event.get("timedout") or not user else str(user.get("name") or user.get("id"))


class DecideFollowupOwner(HITLOperator):
    """Sales or CS follows up one detractor: asked to the account's salesperson, the routing
    rule's proposal standing at `decide_by`; the answer is applied to routing at once, exactly as
    a returned drop file's decision (`pipeline.apply_sales_decision`)."""

    template_fields = ()  # the body holds customer text: rendered once, by the domain

    def __init__(
        self, *, wave_id: str, contact_id: str, decide_by: str, request_label: str = "", **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.wave_id, self.contact_id, self.decide_by = wave_id, contact_id, decide_by
        self.request_label = request_label  # the mapped task instance's name in the UI

    def execute(self, context: Any) -> Any:
        """Ask, unless a person's answer is kept already: a retry (after a failure while applying
        it, or Airflow marking a task answered within seconds of pausing as changed externally)
        applies that answer again rather than asking the person twice."""
        from include.nps import pipeline

        if kept := pipeline.kept_sales_decision(self.wave_id, self.contact_id):
            decision, user = kept
            return pipeline.apply_sales_decision(self.wave_id, self.contact_id, decision, user)
        self.response_timeout = _until(self.decide_by)
        return super().execute(context)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        from include.nps import pipeline

        answer = super().execute_complete(context, event)
        decision = answer["chosen_options"][0]
        return pipeline.apply_sales_decision(self.wave_id, self.contact_id, decision, _answered_by(answer, event))


class ApproveFlashResults(ApprovalOperator):
    """Approve or reject the flash results before they go to every contact, when the wave was
    started with `approve_flash_results` (skipped otherwise). The request shows the figures and a
    sample email; at the flash-results time the wave's `flash_approval_on_timeout` stands. A
    rejection is recorded, then skips every task after it (the flash-results wait and mailing)
    except `runs_anyway` and what follows them (the retrospective)."""

    template_fields = ()

    def __init__(self, *, runs_anyway: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init__(subject="Approve the flash results", **kwargs)
        self.runs_anyway = runs_anyway

    def execute(self, context: Any) -> Any:
        from include.nps import pipeline

        params = context["params"]
        if not params.get("approve_flash_results"):
            raise AirflowSkipException("this wave sends its flash results without an approval")
        on_timeout = params.get("flash_approval_on_timeout") or "approve"
        request = pipeline.flash_approval_request(_wave_id(context), on_timeout)
        self.subject, self.body = request["subject"], request["body"]
        self.defaults = [self.APPROVE if on_timeout == "approve" else self.REJECT]
        self.response_timeout = _until(request["decide_by"])
        return super().execute(context)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        from include.nps import pipeline

        answer = HITLOperator.execute_complete(self, context, event)
        approved = answer["chosen_options"][0] == self.APPROVE
        self.log.info("%s", pipeline.record_flash_approval(_wave_id(context), approved, _answered_by(answer, event)))
        if not approved:  # recorded first: the skip ends the task
            self.skip(ti=context["ti"], tasks=self.not_sent(context["task"]))
        return answer

    def not_sent(self, task: Any) -> list[Any]:
        """What a rejection skips: every task after this one but `runs_anyway` and their followers."""
        after = task.get_flat_relatives(upstream=False)
        kept = {t.task_id for t in after if t.task_id in self.runs_anyway}
        kept |= {
            f.task_id for t in after if t.task_id in self.runs_anyway for f in t.get_flat_relatives(upstream=False)
        }
        return sorted((t for t in after if t.task_id not in kept and not t.is_teardown), key=lambda t: t.task_id)


def _wave_id(context: Any) -> str:
    return context["ti"].xcom_pull(task_ids="plan_wave")["wave_id"]
