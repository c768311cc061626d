import datetime as dt


def test_airflow_loads_the_plugin_and_its_business_day_macros():
    from airflow import plugins_manager

    info = {p["name"]: p for p in plugins_manager.get_plugin_info()}
    assert "nps_plugin" in info
    assert "add_business_days" in str(info["nps_plugin"]["macros"])

    import nps_plugin  # on sys.path once Airflow has loaded the plugins folder

    assert nps_plugin.add_business_days("2026-12-24T09:00:00+00:00", 1, "NO") == dt.datetime(
        2026, 12, 28, 9, tzinfo=dt.UTC
    )
    assert nps_plugin.is_business_day(dt.date(2026, 12, 25), "US") is False
