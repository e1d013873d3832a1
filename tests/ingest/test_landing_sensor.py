"""The landing sensor launches daily_ingest for completed deliveries only."""

import os

from dagster import RunRequest, SkipReason, build_sensor_context

from resources import LakeResource
from compliance_assets.ingest.landing_sensor import landing_delivery_sensor


def evaluate(tmp_path):
    context = build_sensor_context(resources={"lake": LakeResource(root=str(tmp_path))})
    return landing_delivery_sensor(context)


def test_no_landing_folder_skips(tmp_path):
    assert isinstance(evaluate(tmp_path), SkipReason)


def test_only_completed_deliveries_are_launched_and_redelivery_relaunches(tmp_path):
    landing = tmp_path / "landing" / "transactions"
    for day in ("2026-03-01", "2026-03-02", "not-a-date"):
        (landing / f"event_date={day}").mkdir(parents=True)
        (landing / f"event_date={day}" / "part-00000.jsonl").write_text("{}\n")
    (landing / "event_date=2026-03-02" / "_SUCCESS").touch()
    (landing / "event_date=not-a-date" / "_SUCCESS").touch()

    requests = evaluate(tmp_path)
    assert [type(r) for r in requests] == [RunRequest]
    assert requests[0].partition_key == "2026-03-02"
    first_key = requests[0].run_key

    marker = landing / "event_date=2026-03-02" / "_SUCCESS"
    os.utime(marker, (marker.stat().st_atime, marker.stat().st_mtime + 60))  # a redelivery
    again = evaluate(tmp_path)
    assert again[0].partition_key == "2026-03-02" and again[0].run_key != first_key
