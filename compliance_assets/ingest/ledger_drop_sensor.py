"""Inbound file drops: launch `ledger_files` for each day whose system-of-record file has appeared in the file
drop (a folder locally, an Azure Blob container in Azure), once per day, so the ledger is landed before the
02:00 daily pipeline reconciles against it (a corrected re-drop is landed by materialising the day again)."""

import json
import re

from dagster import AssetKey, DefaultSensorStatus, RunRequest, SensorEvaluationContext, SensorResult, SkipReason, sensor

from compliance_assets.ingest.ledger_drops import ASSET
from partitions import daily_partitions
from resources.file_drops import FileDropResource

LEDGER_PREFIX = "system_of_record/"
LEDGER_NAME = re.compile(r"^system_of_record/(\d{4}-\d{2}-\d{2})\.csv$")


def new_ledger_days(names: list[str], seen: set[str]) -> list[str]:
    """Days with a ledger file in the drop that were not launched before."""
    days = sorted({m.group(1) for m in map(LEDGER_NAME.match, names) if m})
    return [d for d in days if d not in seen]


@sensor(
    name="ledger_drop_sensor",
    asset_selection=[AssetKey(ASSET)],
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.STOPPED,
    description=(
        "Lands each day's system-of-record file as soon as it is dropped (system_of_record/<day>.csv in the file drop): "
        "one ledger_files run per new day. Turn it on where the core ledger delivers into the drop (Azure Blob)."
    ),
)
def ledger_drop_sensor(context: SensorEvaluationContext, file_drops: FileDropResource):
    seen = set(json.loads(context.cursor)) if context.cursor else set()
    names = file_drops.list_names(LEDGER_PREFIX)
    days = new_ledger_days(names, seen)
    valid = [d for d in days if daily_partitions.has_partition_key(d)]
    if not days:
        return SkipReason(f"no new system-of-record file under {file_drops.uri(LEDGER_PREFIX)}")
    return SensorResult(
        run_requests=[RunRequest(run_key=f"ledger-{d}", partition_key=d) for d in valid],
        cursor=json.dumps(sorted(seen | set(days))[-400:]),
    )
