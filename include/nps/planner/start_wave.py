"""The planner's start of one wave: the standard provider's `TriggerDagRunOperator`, imported when
the task runs rather than when the DAG file is parsed (its module pulls in `airflow.models`)."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperator


class StartWaveOperator(BaseOperator):
    """Triggers `trigger_dag_id` with run id `trigger_run_id` and `conf`, once: a run with that id that
    already exists skips the task, and a paused target DAG fails it (the next planner run tries again)."""

    template_fields = ("trigger_run_id", "conf", "note")
    ui_color = "#ffefeb"

    def __init__(
        self,
        *,
        trigger_dag_id: str,
        trigger_run_id: str,
        conf: dict | None = None,
        note: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.trigger_dag_id = trigger_dag_id
        self.trigger_run_id = trigger_run_id
        self.conf = conf
        self.note = note

    def execute(self, context: Any) -> None:
        from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator

        TriggerDagRunOperator(
            task_id=self.task_id,
            trigger_dag_id=self.trigger_dag_id,
            trigger_run_id=self.trigger_run_id,
            conf=self.conf,
            note=self.note,
            logical_date=None,
            skip_when_already_exists=True,
            fail_when_dag_is_paused=True,
            openlineage_inject_parent_info=False,
        ).execute(context)
