"""The supervisors keep exactly one run of each lane alive (the decision service and the transaction stream):
each launches when there is none, never launches a second, relaunches failures with a capped exponential
backoff and leaves a run stopped from the UI stopped. Runs are records in a real (temporary) Dagster
instance; nothing starts Spark or Kafka."""

import json
import time
from dataclasses import dataclass

import pytest
from dagster import DagsterRunStatus, SensorDefinition, build_sensor_context, instance_for_test, validate_run_config
from dagster._core.remote_origin import RegisteredCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin

from compliance_assets.definitions import defs
from compliance_assets.realtime.job import DECISION_SERVICE_JOB
from compliance_assets.streaming.job import STREAM_JOB
from compliance_assets.streaming.supervisor import Backoff, FinishedRun, decide, decision_service_supervisor_sensor, next_generation, stream_supervisor_sensor

CONFIG = {"ops": {"run_transaction_stream": {"config": {"source": "kafka"}}}}


@dataclass(frozen=True)
class Lane:
    """A supervised job as the tests see it: its sensor, run keys, backoff variable and a run config."""

    sensor: SensorDefinition
    job: str
    prefix: str
    backoff_env: str
    config: dict


STREAM = Lane(stream_supervisor_sensor, STREAM_JOB, "stream-", "STREAM_RESTART_BACKOFF_SECONDS", CONFIG)
DECISIONS = Lane(decision_service_supervisor_sensor, DECISION_SERVICE_JOB, "decisions-", "DECISION_SERVICE_RESTART_BACKOFF_SECONDS", {})
ENV = ("STREAM_SOURCE", *(f"{p}_RESTART_BACKOFF{s}_SECONDS" for p in ("STREAM", "DECISION_SERVICE") for s in ("", "_MAX")))


@pytest.fixture(params=[STREAM, DECISIONS], ids=["stream", "decisions"])
def lane(request) -> Lane:
    return request.param


@pytest.fixture
def instance():
    with instance_for_test() as instance:
        yield instance


@pytest.fixture(autouse=True)
def default_env(monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def tick(instance, cursor=None, last_sensor_start_time=None, lane=STREAM):
    context = build_sensor_context(instance=instance, cursor=cursor, definitions=defs, last_sensor_start_time=last_sensor_start_time)
    return lane.sensor.evaluate_tick(context)


def lane_run(instance, lane, status=None, run_key=None):
    """A run of the lane's real job, as its sensor would have launched it."""
    tags = {"dagster/run_key": run_key} if run_key else None
    # A QUEUED run must name the code location it came from (the queue launches it from there).
    origin = RemoteJobOrigin(RemoteRepositoryOrigin(RegisteredCodeLocationOrigin("compliance"), "__repository__"), lane.job)
    return instance.create_run_for_job(
        job_def=defs.get_job_def(lane.job), run_config=lane.config, status=status, tags=tags, remote_job_origin=origin,
    )


def failed_run(instance, lane, run_key=None):
    run = lane_run(instance, lane, DagsterRunStatus.STARTED, run_key)
    instance.report_run_failed(run)
    return run


def generation(n: int) -> str:
    return json.dumps({"generation": n})


def test_no_run_yet_launches_exactly_one(instance, lane):
    result = tick(instance, lane=lane)
    assert len(result.run_requests) == 1
    request = result.run_requests[0]
    assert request.run_key == f"{lane.prefix}1"
    assert request.tags.items() >= {"trigger": lane.sensor.name, "restart_attempt": "0"}.items()
    assert json.loads(result.cursor) == {"generation": 1}
    validate_run_config(defs.get_job_def(lane.job), request.run_config)  # raises if the job rejects it
    assert defs.get_sensor_def(lane.sensor.name).job_name == lane.job


def test_the_stream_reads_the_decisions_topic_by_default(instance, monkeypatch):
    [default] = tick(instance).run_requests
    assert default.run_config == {"ops": {"run_transaction_stream": {"config": {"source": "decisions"}}}}
    for source in ("kafka", "files"):
        monkeypatch.setenv("STREAM_SOURCE", source)
        [request] = tick(instance).run_requests
        assert request.run_config == {"ops": {"run_transaction_stream": {"config": {"source": source}}}}
        validate_run_config(defs.get_job_def(STREAM_JOB), request.run_config)


@pytest.mark.parametrize("status", [DagsterRunStatus.QUEUED, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING])
def test_run_in_flight_is_never_doubled(instance, lane, status):
    run = lane_run(instance, lane, status, f"{lane.prefix}1")
    for _ in range(2):
        result = tick(instance, cursor=generation(1), lane=lane)
        assert not result.run_requests
        assert run.run_id in result.skip_message and f"{lane.job} run" in result.skip_message


def test_lanes_are_supervised_independently(instance):
    lane_run(instance, STREAM, DagsterRunStatus.STARTED, "stream-1")
    [request] = tick(instance, lane=DECISIONS).run_requests  # the stream's run does not hold the decision service
    assert request.run_key == "decisions-1"
    lane_run(instance, DECISIONS, DagsterRunStatus.QUEUED, "decisions-1")
    assert not tick(instance, cursor=generation(1), lane=STREAM).run_requests


def test_failed_run_waits_for_the_backoff_then_relaunches_with_a_new_key(instance, lane, monkeypatch):
    failed_run(instance, lane, f"{lane.prefix}1")
    waiting = tick(instance, cursor=generation(1), lane=lane)
    assert not waiting.run_requests
    assert "relaunching at" in waiting.skip_message and "backoff 30s" in waiting.skip_message
    assert waiting.skip_message.startswith(f"{lane.job} run ")

    monkeypatch.setenv(lane.backoff_env, "0")
    result = tick(instance, cursor=generation(1), lane=lane)
    [request] = result.run_requests
    assert request.run_key == f"{lane.prefix}2"
    assert request.tags["restart_attempt"] == "1"
    assert json.loads(result.cursor) == {"generation": 2}


def test_decision_service_backoff_has_its_own_variables_and_falls_back_to_the_streams(instance, monkeypatch):
    failed_run(instance, DECISIONS, "decisions-1")
    monkeypatch.setenv("STREAM_RESTART_BACKOFF_SECONDS", "45")
    assert "backoff 45s" in tick(instance, cursor=generation(1), lane=DECISIONS).skip_message
    monkeypatch.setenv("DECISION_SERVICE_RESTART_BACKOFF_SECONDS", "700")
    monkeypatch.setenv("DECISION_SERVICE_RESTART_BACKOFF_MAX_SECONDS", "90")
    assert "backoff 90s" in tick(instance, cursor=generation(1), lane=DECISIONS).skip_message
    assert Backoff.from_env() == Backoff(45, 600)  # the stream's own values are untouched


def test_consecutive_failures_are_counted_from_the_run_history(instance, lane, monkeypatch):
    monkeypatch.setenv(lane.backoff_env, "0")
    lane_run(instance, lane, DagsterRunStatus.SUCCESS, f"{lane.prefix}1")
    for n in (2, 3, 4):
        failed_run(instance, lane, f"{lane.prefix}{n}")
    # A cleared cursor does not reuse a run key Dagster would skip: the next key follows the history.
    [request] = tick(instance, cursor=None, lane=lane).run_requests
    assert request.tags["restart_attempt"] == "3"
    assert request.run_key == f"{lane.prefix}5"


def test_canceled_run_is_not_relaunched_until_the_sensor_is_restarted(instance, lane):
    run = lane_run(instance, lane, DagsterRunStatus.STARTED, f"{lane.prefix}1")
    instance.report_run_canceled(run)
    started_before_cancel = time.time() - 3600
    for _ in range(2):
        result = tick(instance, cursor=generation(1), last_sensor_start_time=started_before_cancel, lane=lane)
        assert not result.run_requests
        assert "stopped from the UI at" in result.skip_message and f"launch {lane.job} from the Launchpad" in result.skip_message

    restarted = tick(instance, cursor=generation(1), last_sensor_start_time=time.time() + 1, lane=lane)
    assert [r.run_key for r in restarted.run_requests] == [f"{lane.prefix}2"]


def test_manual_launch_after_cancel_resumes_supervision(instance, lane, monkeypatch):
    monkeypatch.setenv(lane.backoff_env, "0")
    instance.report_run_canceled(lane_run(instance, lane, DagsterRunStatus.STARTED, f"{lane.prefix}1"))
    manual = lane_run(instance, lane, DagsterRunStatus.STARTED)  # from the Launchpad: no run key
    assert manual.run_id in tick(instance, lane=lane).skip_message
    instance.report_run_failed(manual)
    [request] = tick(instance, cursor=generation(1), lane=lane).run_requests
    assert request.run_key == f"{lane.prefix}2" and request.tags["restart_attempt"] == "1"


def test_successful_run_is_followed_by_the_next(instance, lane):
    lane_run(instance, lane, DagsterRunStatus.SUCCESS, f"{lane.prefix}3")
    [request] = tick(instance, cursor=generation(3), lane=lane).run_requests
    assert request.run_key == f"{lane.prefix}4" and request.tags["restart_attempt"] == "0"


def test_unknown_source_fails_the_tick(instance, monkeypatch):
    monkeypatch.setenv("STREAM_SOURCE", "eventhub")
    with pytest.raises(Exception, match="STREAM_SOURCE"):
        tick(instance)


# The pure decision function.

def failures(n: int, end_time: float) -> list[FinishedRun]:
    return [FinishedRun(f"f{i}", DagsterRunStatus.FAILURE, end_time) for i in range(n)] + [FinishedRun("ok", DagsterRunStatus.SUCCESS, 0.0)]


def test_backoff_doubles_and_is_capped():
    backoff = Backoff(base_seconds=30, max_seconds=100)
    assert [backoff.delay(n) for n in range(0, 6)] == [0, 30, 60, 100, 100, 100]
    assert backoff.delay(10_000) == 100


@pytest.mark.parametrize("n, delay", [(1, 30), (2, 60), (3, 120), (4, 200), (7, 200)])
def test_decide_waits_the_doubled_backoff_after_consecutive_failures(n, delay):
    backoff = Backoff(base_seconds=30, max_seconds=200)
    history = failures(n, end_time=1000.0)
    waiting = decide([], history, now=1000.0 + delay - 1, backoff=backoff)
    assert not waiting.launch and waiting.failures == n and waiting.relaunch_at == 1000.0 + delay
    ready = decide([], history, now=1000.0 + delay, backoff=backoff)
    assert ready.launch and ready.failures == n


def test_decide_never_launches_beside_a_run_in_flight():
    decision = decide(["abc"], failures(1, 0.0), now=1e9, backoff=Backoff())
    assert not decision.launch and "abc" in decision.reason


@pytest.mark.parametrize("job", [STREAM_JOB, DECISION_SERVICE_JOB])
def test_decide_names_the_supervised_job(job):
    other = DECISION_SERVICE_JOB if job == STREAM_JOB else STREAM_JOB
    reasons = [
        decide(["abc"], [], now=0.0, backoff=Backoff(), job_name=job).reason,
        decide([], [], now=0.0, backoff=Backoff(), job_name=job).reason,
        decide([], failures(1, 0.0), now=0.0, backoff=Backoff(), job_name=job).reason,
        decide([], [FinishedRun("c", DagsterRunStatus.CANCELED, 1.0)], now=2.0, backoff=Backoff(), job_name=job).reason,
    ]
    assert all(job in r and other not in r for r in reasons)


def test_decide_counts_failures_only_up_to_a_cancel():
    history = [FinishedRun("f", DagsterRunStatus.FAILURE, 100.0), FinishedRun("c", DagsterRunStatus.CANCELED, 50.0), *failures(3, 10.0)]
    decision = decide([], history, now=100.0, backoff=Backoff(base_seconds=10, max_seconds=600))
    assert not decision.launch and decision.failures == 1 and decision.relaunch_at == 110.0


def test_decide_cancel_needs_a_sensor_start_after_it():
    history = [FinishedRun("c", DagsterRunStatus.CANCELED, 100.0)]
    assert not decide([], history, now=1e9, backoff=Backoff()).launch
    assert not decide([], history, now=1e9, backoff=Backoff(), sensor_started_at=99.0).launch
    assert decide([], history, now=1e9, backoff=Backoff(), sensor_started_at=101.0).launch


def test_next_generation_survives_a_cleared_or_edited_cursor():
    assert next_generation(None, []) == 1
    assert next_generation('{"generation": 4}', ["stream-2", None, "other"]) == 5
    assert next_generation("", ["stream-9"]) == 10
    assert next_generation("not json", []) == 1
    assert next_generation(None, ["stream-7", "decisions-3"], prefix="decisions-") == 4


def test_through_the_sensor_daemon(monkeypatch):
    """The real tick path (code server, run queue, stored cursor and run-key de-duplication), driven with
    Dagster's own test helpers (private modules: adjust them if a Dagster upgrade moves them)."""
    import datetime as dt
    import logging

    from dagster import RunsFilter
    from dagster._core.test_utils import create_test_daemon_workspace_context, freeze_time, load_remote_repo
    from dagster._core.workspace.load_target import ModuleTarget
    from dagster._daemon.sensor import execute_sensor_iteration
    from dagster._time import get_current_datetime

    monkeypatch.setenv("STREAM_RESTART_BACKOFF_SECONDS", "0")  # the decision service's backoff falls back to it
    queued = {"run_coordinator": {"module": "dagster.core.run_coordinator", "class": "QueuedRunCoordinator"}}
    target = ModuleTarget(module_name="compliance_assets.definitions", attribute=None, working_directory=None, location_name="compliance")
    with instance_for_test(overrides=queued) as instance, create_test_daemon_workspace_context(target, instance) as workspace:
        repo = load_remote_repo(workspace, "__repository__")
        sensors = {lane.job: repo.get_sensor(lane.sensor.name) for lane in (STREAM, DECISIONS)}
        for sensor in sensors.values():
            instance.start_sensor(sensor)
        clock = [get_current_datetime()]

        def runs(job: str) -> list:
            return [(r.status, r.tags.get("dagster/run_key"), r.tags.get("restart_attempt")) for r in instance.get_runs(RunsFilter(job_name=job))]

        def tick_and_runs() -> tuple[list, list]:
            clock[0] += dt.timedelta(seconds=31)  # past minimum_interval_seconds
            with freeze_time(clock[0]):
                list(execute_sensor_iteration(workspace, logging.getLogger(__name__), None, None))
            return runs(STREAM_JOB), runs(DECISION_SERVICE_JOB)

        first = ([(DagsterRunStatus.QUEUED, "stream-1", "0")], [(DagsterRunStatus.QUEUED, "decisions-1", "0")])
        assert tick_and_runs() == first
        assert tick_and_runs() == first
        instance.report_run_failed(instance.get_runs(RunsFilter(job_name=DECISION_SERVICE_JOB))[0])
        stream, decisions = tick_and_runs()
        assert stream == first[0] and decisions[0] == (DagsterRunStatus.QUEUED, "decisions-2", "1")
        for job, generation in ((STREAM_JOB, 1), (DECISION_SERVICE_JOB, 2)):
            state = instance.get_instigator_state(sensors[job].get_remote_origin_id(), sensors[job].selector_id)
            assert json.loads(state.instigator_data.cursor) == {"generation": generation}
