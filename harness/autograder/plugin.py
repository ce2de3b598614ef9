"""pytest plugin of the workbook (registered through the ``pytest11`` entry point).

* ``--impl sessions|solutions`` (or ``HARNESS_IMPL``) picks the notebook tree; the
  learner's ``sessions/`` is the default.
* The ``nb`` fixture is the session's export cells from that tree.
* ``@pytest.mark.exercise("name")`` ties a test to an exercise of the manifest.
* Failures are rewritten into one tutor message; a per-exercise summary ends the run.
* Every test has a time limit (``@pytest.mark.time_limit(seconds)``, default 60 s) of CPU time,
  plus a wall-clock guard at ``WALL_FACTOR`` times that for code that waits instead of computing.
* Graded tests run torch on ``HARNESS_TEST_THREADS`` intra-op threads (default 1): their
  tensors are small, where one thread is as fast as many, and a learner's training job on the
  same cores then slows them down instead of oversubscribing the CPU tenfold.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import threading
from collections import defaultdict
from pathlib import Path

import pytest

from .grading import ExerciseTimeout, NotebookNamespace, Verdict, explain, session_of_path
from ..paths import TREES, display_path, runs_dir

DEFAULT_TIME_LIMIT = 60.0  # seconds of CPU time
WALL_FACTOR = 5.0  # the wall-clock guard: a busy machine slows a right answer down, it never fails it
THREADS_KEY = pytest.StashKey[tuple]()
NAMESPACE_KEY = pytest.StashKey[dict]()
VERDICTS_KEY = pytest.StashKey[dict]()


def pytest_addoption(parser):
    group = parser.getgroup("workbook")
    group.addoption("--impl", choices=TREES, default=None,
                    help="notebook tree to test: sessions (yours, default) or solutions (the reference); "
                         "env HARNESS_IMPL does the same")
    group.addoption("--exercise", action="append", default=[],
                    help="run only the tests of this exercise (repeatable)")
    group.addoption("--harness-report", default=None, help=argparse.SUPPRESS)  # JSON of verdicts, for progress


def _impl(config) -> str:
    return config.getoption("impl") or os.environ.get("HARNESS_IMPL") or "sessions"


def pytest_configure(config):
    config.addinivalue_line("markers", "exercise(name): the exercise of the session manifest this test grades")
    config.addinivalue_line("markers", "time_limit(seconds): fail the test if it runs longer than this")
    config.addinivalue_line("markers", "slow: takes more than a few seconds (trains a model)")
    impl = _impl(config)
    # Children (DataLoader workers, torchrun) must load the same tree; nothing may reach a hub or W&B.
    os.environ["HARNESS_IMPL"] = impl
    os.environ.setdefault("HARNESS_UPSTREAM", "solutions")
    os.environ.setdefault("WANDB_MODE", "disabled")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(runs_dir() / "inductor-cache"))
    config.stash[VERDICTS_KEY] = {}
    _pin_threads(config)
    if not config.pluginmanager.has_plugin("harness-explained-failures"):
        config.pluginmanager.register(_ExplainedFailures(), "harness-explained-failures")


def _pin_threads(config) -> None:
    """One torch thread per test process (see the module docstring); restored when pytest ends."""
    threads = int(os.environ.get("HARNESS_TEST_THREADS", "1"))
    try:
        import torch
    except ImportError:
        return
    config.stash[THREADS_KEY] = (torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS"))
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)  # notebook kernels and other children the tests start


def pytest_unconfigure(config):
    saved = config.stash.get(THREADS_KEY, None)
    if saved is None:
        return
    import torch

    torch.set_num_threads(saved[0])  # an inline check must leave the learner's kernel as it was
    if saved[1] is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = saved[1]


def pytest_report_header(config):
    impl = _impl(config)
    who = "your notebooks" if impl == "sessions" else "the reference solutions"
    return f"workbook: grading {impl}/ ({who}); earlier sessions' components come from solutions/"


def pytest_collection_modifyitems(config, items):
    wanted = set(config.getoption("exercise"))
    unmarked = []
    keep, drop = [], []
    for item in items:
        session = session_of_path(item.path)
        if session is None:
            keep.append(item)
            continue
        marker = item.get_closest_marker("exercise")
        if marker is None:
            unmarked.append(item.nodeid)
            keep.append(item)
            continue
        name = marker.args[0]
        session.exercise(name)  # a typo in a marker is an error of the harness, found at collection
        (keep if not wanted or name in wanted else drop).append(item)
    if unmarked:
        raise pytest.UsageError("tests in a session folder need @pytest.mark.exercise(name): " + ", ".join(unmarked))
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture
def nb(request) -> NotebookNamespace:
    """The session's export cells (from ``--impl``), or the notebook's own globals in an inline check."""
    session = session_of_path(request.node.path)
    if session is None:
        raise pytest.UsageError("the `nb` fixture only works in harness/session_NN/ test folders")
    namespace = request.config.stash.get(NAMESPACE_KEY, None)
    return NotebookNamespace(session, _impl(request.config), namespace)


def _time_limit(item) -> float:
    marker = item.get_closest_marker("time_limit")
    return float(marker.args[0]) if marker else DEFAULT_TIME_LIMIT


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    limit = _time_limit(item)
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable or session_of_path(item.path) is None:
        return (yield)

    def on_cpu(signum, frame):
        raise ExerciseTimeout(
            f"used more than {limit:g} s of CPU time. Look for an infinite loop (a `while` whose condition never "
            "changes) or a Python loop over every user or item; vectorise it with tensor operations.")

    def on_wall(signum, frame):
        raise ExerciseTimeout(
            f"did not finish within {limit * WALL_FACTOR:g} s of wall-clock time while using less than {limit:g} s "
            "of CPU: it is waiting rather than computing (a lock or a queue nobody releases, a collective only "
            "some ranks reach, a sleep).")

    previous = signal.signal(signal.SIGPROF, on_cpu), signal.signal(signal.SIGALRM, on_wall)
    signal.setitimer(signal.ITIMER_PROF, limit)
    signal.setitimer(signal.ITIMER_REAL, limit * WALL_FACTOR)
    try:
        return (yield)
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGPROF, previous[0])
        signal.signal(signal.SIGALRM, previous[1])


VERDICT_ATTR = "_harness_verdict"


class _ExplainedFailures:
    """A failure we can explain gets our one message as its report.

    Building the report ourselves also skips pytest's own traceback rendering, which reads and
    parses the source of every frame and would cost seconds over a run of stubs. (A class, so
    that this ``tryfirst`` implementation and the recording wrapper below can share a hook name.)
    """

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_makereport(self, item, call):
        session = session_of_path(item.path)
        excinfo = call.excinfo
        if session is None or excinfo is None or excinfo.errisinstance((pytest.skip.Exception, KeyboardInterrupt)):
            return None
        marker = item.get_closest_marker("exercise")
        verdict = explain(excinfo.value, session, marker.args[0] if marker else None, display_path(item.path))
        if verdict.message is None:
            return None  # an error in the test or the harness itself: pytest's full traceback helps there
        setattr(item, VERDICT_ATTR, verdict)
        sections = [(f"Captured {key} {call.when}", content) for (when, key, content) in item._report_sections
                    if when == call.when]
        return pytest.TestReport(item.nodeid, item.location, {k: 1 for k in item.keywords}, "failed",
                                 verdict.message, call.when, sections, call.duration, call.start, call.stop,
                                 user_properties=item.user_properties)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):  # records every verdict, explained or not
    report = yield
    session = session_of_path(item.path)
    if session is None:
        return report
    marker = item.get_closest_marker("exercise")
    exercise = marker.args[0] if marker else None
    verdict = None
    if report.passed and report.when == "call":
        verdict = Verdict("pass", "")
    elif report.skipped:
        verdict = Verdict("skip", str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else "")
    elif report.failed and call.excinfo is not None:
        verdict = getattr(item, VERDICT_ATTR, None) or Verdict("fail", call.excinfo.exconly()[:300])
    if hasattr(item, VERDICT_ATTR):
        delattr(item, VERDICT_ATTR)
    if verdict is not None:
        item.config.stash[VERDICTS_KEY][item.nodeid] = {
            "session": session.number, "exercise": exercise, "kind": verdict.kind,
            "message": verdict.message, "when": report.when,
        }
    return report


def exercise_rollup(verdicts: dict) -> dict[tuple[int, str], str]:
    """One status per exercise: passes, not implemented, or how many tests fail."""
    by_exercise = defaultdict(list)
    for record in verdicts.values():
        by_exercise[(record["session"], record["exercise"])].append(record["kind"])
    status = {}
    for key, kinds in by_exercise.items():
        failing = [k for k in kinds if k not in ("pass", "skip")]
        if not failing:
            status[key] = "passes" if "pass" in kinds else "skipped"
        elif all(k == "not implemented" for k in failing) and len(failing) == len(kinds):
            status[key] = "not implemented yet"
        else:
            status[key] = f"{len(failing)} of {len(kinds)} tests fail"
    return status


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    verdicts = config.stash.get(VERDICTS_KEY, {})
    path = config.getoption("harness_report")
    if path:
        Path(path).write_text(json.dumps(verdicts, indent=1))
    if not verdicts:
        return
    from .exercises import get_session

    status = exercise_rollup(verdicts)
    tr = terminalreporter
    tr.section(f"workbook: exercises ({_impl(config)}/)", sep="=")
    for number in sorted({s for s, _ in status}):
        session = get_session(number)
        tr.write_line(f"session {number:02d}  {session.title}")
        for i, ex in enumerate(session.exercises, 1):
            if (number, ex.name) not in status:
                continue
            st = status[(number, ex.name)]
            mark = "✓" if st == "passes" else ("·" if st.startswith("not impl") else "✗")
            tr.write_line(f"  {mark} {i}. {ex.name:<28} {st}")
        if any(st != "passes" for (s, _), st in status.items() if s == number):
            tr.write_line(f"  stuck? python -m harness hint {number:02d} <exercise>")
