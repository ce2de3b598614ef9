"""``python -m harness serve`` (uvicorn), and a real server in a subprocess for tests, notebooks and the pipeline.

    python -m harness serve                                   # runs/bundles/ml-100k-laptop, 127.0.0.1:8000
    python -m harness serve --impl sessions --no-batching     # your session 14 code, one request at a time
    python -m harness serve --bundle /bundle --host 0.0.0.0   # inside a container (see the Dockerfile)

    with ServerProcess(bundle_path, batching=True) as server:   # a free loopback port; always stopped
        httpx.post(f"{server.url}/recommend", json={"user_id": 1, "k": 10})

The server listens on the loopback address unless told otherwise: a container needs
``--host 0.0.0.0`` to be reachable through its published port, a laptop does not.
"""
from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path

from ..paths import display_path, repo_root
from .app import SETTINGS_ENV, ServingSettings

LOOPBACK = "127.0.0.1"


def serve(settings: ServingSettings, host: str = LOOPBACK, port: int = 8000, *, workers: int = 1,
          log_level: str = "info", access_log: bool = False) -> None:
    """Run uvicorn in this process until interrupted (Ctrl-C or SIGTERM: graceful shutdown)."""
    import uvicorn

    from .bundle import read_manifest

    read_manifest(settings.bundle_path)  # a missing bundle: a clear error now, not in uvicorn's log
    os.environ[SETTINGS_ENV] = settings.to_json()
    os.environ.setdefault("OMP_NUM_THREADS", str(settings.threads))
    where = "loopback only" if host.startswith("127.") or host in ("localhost", "::1") else "every interface"
    print(f"serving {display_path(Path(settings.bundle_path))} on http://{host}:{port} ({where}); code: "
          f"{settings.impl}/; " + (f"micro-batching, max_batch {settings.max_batch}, max_wait {settings.max_wait_ms:g} ms"
                                   if settings.batching else "no batching") + "; docs at /docs", flush=True)
    uvicorn.run("harness.serving.app:app_from_env", factory=True, host=host, port=port, workers=workers,
                log_level=log_level, access_log=access_log, timeout_graceful_shutdown=5)


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


_RUNNING: "weakref.WeakSet[ServerProcess]" = weakref.WeakSet()


@atexit.register
def _stop_leftovers() -> None:
    """Servers this process started and did not stop (an interrupted notebook, a crashed test): stop them."""
    for server in list(_RUNNING):
        try:
            server.stop(timeout=5)
        except Exception:
            pass


def _prctl():
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl  # resolved in the parent: the child only calls it
    except (OSError, AttributeError):
        return None


_PRCTL = _prctl() if sys.platform.startswith("linux") else None


def _die_with_parent() -> None:
    """In the child, before exec: Linux sends it SIGTERM when the parent dies (no orphaned servers)."""
    if _PRCTL is not None:
        _PRCTL(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG


def start_all(servers) -> list:
    """Launch every server at once, then wait for each: start-up times overlap instead of adding up."""
    servers = list(servers)
    try:
        for server in servers:
            server.launch()
        for server in servers:
            server.wait_ready()
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return servers


def stop_all(servers, timeout: float = 15.0) -> None:
    """SIGINT every running server at once, then wait for each (shutdowns overlap)."""
    servers = list(servers)
    for server in servers:
        if server.process is not None and server.process.poll() is None and not server._signalled:
            server._signal()
    for server in servers:
        server.stop(timeout=timeout)


class ServerFailed(RuntimeError):
    """The server subprocess did not come up; the message carries the end of its log."""


class ServerProcess:
    """``python -m harness serve`` in a subprocess on a free loopback port, stopped on exit whatever happens.

    Args:
        bundle: the bundle folder; impl: whose sessions 14/15 serve; batching, max_batch, max_wait_ms: as
            ``ServingSettings``; startup_timeout: seconds to wait for ``/health`` to answer 200.
        env: extra environment variables (the child also inherits this process's, e.g. HARNESS_SESSIONS_DIR).

    After exit, ``returncode`` and ``log`` (stdout and stderr) tell how it ended; ``clean_exit`` is True when
    it stopped on SIGINT with exit code 0 after uvicorn's "Application shutdown complete".
    """

    def __init__(self, bundle: str | Path, *, impl: str = "solutions", batching: bool = False, max_batch: int = 32,
                 max_wait_ms: float = 1.0, threads: int = 1, startup_timeout: float = 90.0,
                 env: dict | None = None, extra_args: list[str] | None = None):
        self.bundle = Path(bundle)
        self.impl, self.batching, self.max_batch, self.max_wait_ms = impl, batching, max_batch, max_wait_ms
        self.threads = threads
        self.startup_timeout = startup_timeout
        self.env = env or {}
        self.extra_args = extra_args or []
        self.port: int | None = None
        self.process: subprocess.Popen | None = None
        self.returncode: int | None = None
        self._signalled = False
        self.log = ""
        self._log_file = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "harness", "serve", "--bundle", str(self.bundle), "--host", LOOPBACK,
               "--port", str(self.port), "--impl", self.impl, "--threads", str(self.threads), "--log-level", "info"]
        cmd += (["--batching", "on", "--max-batch", str(self.max_batch), "--max-wait-ms", str(self.max_wait_ms)]
                if self.batching else ["--batching", "off"])
        return cmd + self.extra_args

    def start(self) -> "ServerProcess":
        """Launch the server and wait until ``/health`` answers 200 (see :func:`start_all` for several)."""
        self.launch()
        return self.wait_ready()

    def launch(self) -> "ServerProcess":
        """Start the subprocess without waiting for it."""
        self.port = free_port()
        self._signalled = False
        self._log_file = tempfile.NamedTemporaryFile("w+", prefix="harness-serve-", suffix=".log", delete=False)
        env = {**os.environ, "OMP_NUM_THREADS": str(self.threads), "PYTHONUNBUFFERED": "1", **self.env}
        self.process = subprocess.Popen(self.command(), stdout=self._log_file, stderr=subprocess.STDOUT,
                                        cwd=repo_root(), env=env, start_new_session=True,
                                        preexec_fn=_die_with_parent if _PRCTL is not None else None)
        _RUNNING.add(self)
        self._deadline = time.monotonic() + self.startup_timeout
        return self

    def wait_ready(self) -> "ServerProcess":
        """Wait for ``/health`` to answer 200; stop the server and raise if it exits or takes too long."""
        import httpx

        deadline = self._deadline
        try:
            with httpx.Client(timeout=2.0, trust_env=False) as client:
                while True:
                    if self.process.poll() is not None:
                        self._collect()
                        raise self._failure(f"the server exited with code {self.returncode} during start-up")
                    try:
                        if client.get(f"{self.url}/health").status_code == 200:
                            return self
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline:
                        self.stop()
                        raise self._failure(f"the server did not answer /health with 200 within "
                                            f"{self.startup_timeout:g} s")
                    time.sleep(0.05)
        except BaseException:
            self.stop()  # never leave a server behind, whatever interrupted the start-up
            raise

    def _failure(self, what: str) -> Exception:
        tail = self.log[-3000:]
        for line in reversed(self.log.splitlines()):
            if "is not implemented yet" in line:  # a stub in the served notebook: say so, as the tests do
                start = line.find("exercise ")
                return NotImplementedError(line[start:].strip() if start >= 0 else line.strip())
        return ServerFailed(f"{what}; its log ends with:\n{tail}")

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGINT (uvicorn's graceful shutdown), then SIGKILL after ``timeout`` seconds; returns the exit code."""
        if self.process is None:
            return self.returncode
        if self.process.poll() is None:
            try:
                if not self._signalled:  # a second SIGINT makes uvicorn skip its graceful shutdown
                    self._signal()
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        self._collect()
        return self.returncode

    def _signal(self) -> None:
        self._signalled = True
        try:
            self.process.send_signal(signal.SIGINT)
        except ProcessLookupError:
            pass

    def _collect(self) -> None:
        _RUNNING.discard(self)
        self.returncode = self.process.returncode
        if self._log_file is not None:
            self._log_file.flush()
            self.log = Path(self._log_file.name).read_text(errors="replace")
            self._log_file.close()
            Path(self._log_file.name).unlink(missing_ok=True)
            self._log_file = None

    @property
    def clean_exit(self) -> bool:
        return self.returncode == 0 and "Application shutdown complete" in self.log

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


__all__ = ["LOOPBACK", "ServerFailed", "ServerProcess", "free_port", "serve", "start_all", "stop_all"]
