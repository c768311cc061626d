"""`make airflow` shows the demo's wave: the local UI and `make demo` resolve one NPS DB."""

from __future__ import annotations

import os

from devkit import demo, localui
from include.nps.core import connections
from include.nps.core.storage import PROJECT_ROOT


def test_the_local_ui_reads_the_database_the_demo_writes(nps_home, monkeypatch):
    monkeypatch.setattr(demo, "DEMO_HOME", nps_home / "demo")  # the demo's folder, here a temporary one
    monkeypatch.delenv("NPS_HOME")
    monkeypatch.delenv("NPS_SECRET_KEY")
    demo.use_demo_home()
    written = connections.db_url()

    monkeypatch.delenv("NPS_HOME")
    monkeypatch.delenv("NPS_SECRET_KEY")
    for name, value in localui.environment(os.environ).items():
        monkeypatch.setenv(name, value)
    assert connections.db_url() == written == f"sqlite:///{nps_home / 'demo' / 'nps.db'}"
    assert os.environ["NPS_SECRET_KEY"] == demo.LOCAL_SECRET  # the demo's links open in `make survey` too


def test_by_default_that_is_var_demo_and_what_the_environment_gives_wins():
    assert localui.environment({})["NPS_HOME"] == str(PROJECT_ROOT / "var" / "demo")
    assert localui.environment({"NPS_HOME": "/srv/nps"})["NPS_HOME"] == "/srv/nps"
    assert localui.environment({"NPS_SECRET_KEY": "s"})["NPS_SECRET_KEY"] == "s"
