"""ledger_drop_sensor: one ledger_files run per day whose system-of-record file appears in the drop, never twice."""

from dagster import DagsterInstance, SkipReason, build_sensor_context

from resources.file_drops import LocalFileDrops
from compliance_assets.ingest.ledger_drop_sensor import ledger_drop_sensor


def tick(drops, cursor=None):
    with DagsterInstance.ephemeral() as instance:
        context = build_sensor_context(instance=instance, cursor=cursor, resources={"file_drops": drops})
        return ledger_drop_sensor(context), context


def test_a_dropped_ledger_file_launches_its_day_once(tmp_path):
    drops = LocalFileDrops(root=str(tmp_path / "drops"))
    result, _ = tick(drops)
    assert isinstance(result, SkipReason)

    drops.write_bytes("system_of_record/2026-04-02.csv", b"transaction_id\n")
    drops.write_bytes("system_of_record/notes.txt", b"not a ledger file")
    result, _ = tick(drops)
    assert [(r.partition_key, r.run_key) for r in result.run_requests] == [("2026-04-02", "ledger-2026-04-02")]

    again, _ = tick(drops, result.cursor)
    assert isinstance(again, SkipReason)
    drops.write_bytes("system_of_record/2026-04-03.csv", b"transaction_id\n")
    later, _ = tick(drops, result.cursor)
    assert [r.partition_key for r in later.run_requests] == ["2026-04-03"]
