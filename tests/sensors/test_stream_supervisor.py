"""The stream supervisor keeps exactly one transaction_stream run alive: it launches when there is none,
never launches a second, relaunches failures with a capped exponential backoff and leaves a run stopped
from the UI stopped. Runs are records in a real (temporary) Dagster instance; nothing starts Spark."""

import json
import time

import pytest
from dagster import DagsterRunStatus, build_sensor_context, instance_for_test, validate_run_config
from dagster._core.remote_origin import RegisteredCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin

from compliance_assets.definitions import defs
from compliance_assets.streaming.job import STREAM_JOB
from sensors.streaming import Backoff, FinishedRun, decide, next_generation, stream_supervisor_sensor

CONFIG = {"ops": {"run_transaction_stream": {"config": {"source": "kafka"}}}}


@pytest.fixture
def instance():
    with instance_for_test() as instance:
        yield instance


@pytest.fixture(autouse=True)
def default_env(monkeypatch):
    for name in ("STREAM_SOURCE", "STREAM_RESTART_BACKOFF_SECONDS", "STREAM_RESTART_BACKOFF_MAX_SECONDS"):
        monkeypatch.delenv(name, raising=False)


def tick(instance, cursor=None, last_sensor_start_time=None):
    context = build_sensor_context(instance=instance, cursor=cursor, definitions=defs, last_sensor_start_time=last_sensor_start_time)
    return stream_supervisor_sensor.evaluate_tick(context)


def stream_run(instance, status=None, run_key=None):
    """A run of the real transaction_stream job, as the sensor would have launched it."""
    tags = {"dagster/run_key": run_key} if run_key else None
    # A QUEUED run must name the code location it came from (the queue launches it from there).
    origin = RemoteJobOrigin(RemoteRepositoryOrigin(RegisteredCodeLocationOrigin("compliance"), "__repository__"), STREAM_JOB)
    return instance.create_run_for_job(
        job_def=defs.get_job_def(STREAM_JOB), run_config=CONFIG, status=status, tags=tags, remote_job_origin=origin,
    )


def failed_run(instance, run_key=None):
    run = stream_run(instance, DagsterRunStatus.STARTED, run_key)
    instance.report_run_failed(run)
    return run


def test_no_run_yet_launches_exactly_one(instance, monkeypatch):
    monkeypatch.setenv("STREAM_SOURCE", "files")
    result = tick(instance)
    assert len(result.run_requests) == 1
    request = result.run_requests[0]
    assert request.run_key == "stream-1"
    assert request.run_config == {"ops": {"run_transaction_stream": {"config": {"source": "files"}}}}
    assert request.tags.items() >= {"trigger": "stream_supervisor_sensor", "restart_attempt": "0"}.items()
    assert json.loads(result.cursor) == {"generation": 1}
    validate_run_config(defs.get_job_def(STREAM_JOB), request.run_config)  # raises if the job rejects it


@pytest.mark.parametrize("status", [DagsterRunStatus.QUEUED, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING])
def test_run_in_flight_is_never_doubled(instance, status):
    run = stream_run(instance, status, "stream-1")
    for _ in range(2):
        result = tick(instance, cursor=json.dumps({"generation": 1}))
        assert not result.run_requests
        assert run.run_id in result.skip_message


def test_failed_run_waits_for_the_backoff_then_relaunches_with_a_new_key(instance, monkeypatch):
    failed_run(instance, "stream-1")
    waiting = tick(instance, cursor=json.dumps({"generation": 1}))
    assert not waiting.run_requests
    assert "relaunching at" in waiting.skip_message and "backoff 30s" in waiting.skip_message

    monkeypatch.setenv("STREAM_RESTART_BACKOFF_SECONDS", "0")
    result = tick(instance, cursor=json.dumps({"generation": 1}))
    [request] = result.run_requests
    assert request.run_key == "stream-2"
    assert request.tags["restart_attempt"] == "1"
    assert json.loads(result.cursor) == {"generation": 2}


def test_consecutive_failures_are_counted_from_the_run_history(instance, monkeypatch):
    monkeypatch.setenv("STREAM_RESTART_BACKOFF_SECONDS", "0")
    stream_run(instance, DagsterRunStatus.SUCCESS, "stream-1")
    for key in ("stream-2", "stream-3", "stream-4"):
        failed_run(instance, key)
    # A cleared cursor does not reuse a run key Dagster would skip: the next key follows the history.
    [request] = tick(instance, cursor=None).run_requests
    assert request.tags["restart_attempt"] == "3"
    assert request.run_key == "stream-5"


def test_canceled_run_is_not_relaunched_until_the_sensor_is_restarted(instance):
    run = stream_run(instance, DagsterRunStatus.STARTED, "stream-1")
    instance.report_run_canceled(run)
    started_before_cancel = time.time() - 3600
    for _ in range(2):
        result = tick(instance, cursor=json.dumps({"generation": 1}), last_sensor_start_time=started_before_cancel)
        assert not result.run_requests
        assert "stopped from the UI at" in result.skip_message and "Launchpad" in result.skip_message

    restarted = tick(instance, cursor=json.dumps({"generation": 1}), last_sensor_start_time=time.time() + 1)
    assert [r.run_key for r in restarted.run_requests] == ["stream-2"]


def test_manual_launch_after_cancel_resumes_supervision(instance, monkeypatch):
    monkeypatch.setenv("STREAM_RESTART_BACKOFF_SECONDS", "0")
    instance.report_run_canceled(stream_run(instance, DagsterRunStatus.STARTED, "stream-1"))
    manual = stream_run(instance, DagsterRunStatus.STARTED)  # from the Launchpad: no run key
    assert manual.run_id in tick(instance).skip_message
    instance.report_run_failed(manual)
    [request] = tick(instance, cursor=json.dumps({"generation": 1})).run_requests
    assert request.run_key == "stream-2" and request.tags["restart_attempt"] == "1"


def test_successful_run_is_followed_by_the_next(instance):
    stream_run(instance, DagsterRunStatus.SUCCESS, "stream-3")
    [request] = tick(instance, cursor=json.dumps({"generation": 3})).run_requests
    assert request.run_key == "stream-4" and request.tags["restart_attempt"] == "0"


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

    monkeypatch.setenv("STREAM_RESTART_BACKOFF_SECONDS", "0")
    queued = {"run_coordinator": {"module": "dagster.core.run_coordinator", "class": "QueuedRunCoordinator"}}
    target = ModuleTarget(module_name="compliance_assets.definitions", attribute=None, working_directory=None, location_name="compliance")
    with instance_for_test(overrides=queued) as instance, create_test_daemon_workspace_context(target, instance) as workspace:
        sensor = load_remote_repo(workspace, "__repository__").get_sensor("stream_supervisor_sensor")
        instance.start_sensor(sensor)
        clock = [get_current_datetime()]

        def tick_and_runs():
            clock[0] += dt.timedelta(seconds=31)  # past minimum_interval_seconds
            with freeze_time(clock[0]):
                list(execute_sensor_iteration(workspace, logging.getLogger(__name__), None, None))
            return [(r.status, r.tags.get("dagster/run_key"), r.tags.get("restart_attempt")) for r in instance.get_runs(RunsFilter(job_name=STREAM_JOB))]

        assert tick_and_runs() == [(DagsterRunStatus.QUEUED, "stream-1", "0")]
        assert tick_and_runs() == [(DagsterRunStatus.QUEUED, "stream-1", "0")]
        instance.report_run_failed(instance.get_runs(RunsFilter(job_name=STREAM_JOB))[0])
        assert tick_and_runs()[0] == (DagsterRunStatus.QUEUED, "stream-2", "1")
        state = instance.get_instigator_state(sensor.get_remote_origin_id(), sensor.selector_id)
        assert json.loads(state.instigator_data.cursor) == {"generation": 2}
