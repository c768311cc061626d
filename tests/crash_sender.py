"""One try of a mailing's send task, as its own process for the crash test to kill: the task
function `pipeline.send_mailing_chunk`, without its in-task wait for deferred messages (the test
moves their retry time instead of waiting for it). Airflow's task runner exports the task's ids in
AIRFLOW_CTX_* variables; the test sets the same ones, so every try is the same sender.

    python -m tests.crash_sender WAVE_ID KIND CHUNK
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

from include.nps import pipeline
from include.nps.core.storage import PROJECT_ROOT
from include.nps.delivery import outbox

TASK = {"AIRFLOW_CTX_DAG_ID": "nps_wave", "AIRFLOW_CTX_DAG_RUN_ID": "crash", "AIRFLOW_CTX_TASK_ID": "invite.send"}


def main(wave_id: str, kind: str, chunk: str) -> int:
    pipeline.DEFERRED_WAIT_IN_TASK = dt.timedelta(0)
    try:
        outcome = pipeline.send_mailing_chunk(wave_id, kind, int(chunk))
    except outbox.DeliveryIncomplete as exc:
        print(json.dumps({"incomplete": str(exc)}))
        return 3
    print(json.dumps(outcome))
    return 0


def start_try(wave_id: str, kind: str = "invitation", chunk: int = 0) -> subprocess.Popen:
    """One try of the send task, in a new process with this one's environment and the task's ids."""
    env = {**os.environ, **TASK, "PYTHONPATH": str(PROJECT_ROOT)}
    command = [sys.executable, "-m", "tests.crash_sender", wave_id, kind, str(chunk)]
    return subprocess.Popen(command, env=env, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # noqa: S603


def kill_mid_send(process: subprocess.Popen, tries: Any, after: int) -> bool:
    """SIGKILL the try once the server has seen `after` more recipients (`tries`, a Counter of RCPT
    commands per address); False if the try ended first."""
    seen = tries.total()
    while process.poll() is None:
        if tries.total() >= seen + after:
            process.send_signal(signal.SIGKILL)
            process.wait()
            return True
        time.sleep(0.002)
    return False


def retry_until_done(wave_id: str, time_passes: Any, limit: int = 5) -> int:
    """Airflow's retries: new tries (the deferred messages' time made to come between them) until
    one succeeds; the number of tries."""
    for attempt in range(1, limit + 1):
        finished = start_try(wave_id)
        _, stderr = finished.communicate(timeout=600)
        if finished.returncode == 0:
            return attempt
        if finished.returncode != 3:
            raise RuntimeError(stderr.decode()[-2000:])
        time_passes()
    raise RuntimeError(f"the send task did not finish in {limit} tries")


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
