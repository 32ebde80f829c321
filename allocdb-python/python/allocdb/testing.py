"""A local AllocDB cluster for tests, examples and benchmarks.

``LocalCluster`` runs replicas of the ``allocdb`` binary as child processes on free loopback
ports in a temporary directory (``allocdb format`` then ``allocdb start``), as the Rust tests
do, so crashes are real (``kill`` sends SIGKILL) and restarts recover from disk::

    from allocdb.testing import LocalCluster

    with LocalCluster(replicas=3) as cluster:      # plaintext (--insecure) by default
        cluster.wait_for_primary()
        with allocdb.Client(cluster.addresses, **cluster.client_options()) as client:
            ...

The binary is ``binary=``, else ``$ALLOCDB_BIN``, else ``allocdb`` on ``PATH``. Build it with
``cargo build --release -p allocdb-server`` (it is then ``target/release/allocdb``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Optional, Sequence, Union

__all__ = ["LocalCluster", "find_binary"]

#: How long ``stop`` waits after SIGTERM before SIGKILL.
STOP_WAIT_SECONDS = 5.0


def find_binary(binary: Optional[Union[str, "os.PathLike[str]"]] = None) -> Path:
    """The ``allocdb`` binary: ``binary``, else ``$ALLOCDB_BIN``, else ``allocdb`` on PATH."""
    candidate = binary or os.environ.get("ALLOCDB_BIN") or shutil.which("allocdb")
    if not candidate:
        raise FileNotFoundError(
            "no allocdb binary: build it (cargo build --release -p allocdb-server) and set "
            "ALLOCDB_BIN=target/release/allocdb, or put it on PATH"
        )
    path = Path(candidate)
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise FileNotFoundError(f"{path} is not an executable file")
    return path


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class LocalCluster:
    """``replicas`` (1, 3 or 5) replicas of one binary on loopback, formatted and started.

    ``tls=True`` makes certificates with ``allocdb certs`` and runs every replica with
    ``--certs``; otherwise every replica runs ``--insecure``. ``format_args`` go to
    ``allocdb format`` (e.g. ``["--slot-ms", "10"]``). ``stop()`` (or leaving the ``with``
    block) kills every replica and removes the directory (kept if
    ``$ALLOCDB_KEEP_CLUSTER_DIR`` is set).
    """

    def __init__(
        self,
        replicas: int = 3,
        *,
        binary: Optional[Union[str, "os.PathLike[str]"]] = None,
        cluster_id: int = 1,
        tls: bool = False,
        format_args: Sequence[str] = (),
    ) -> None:
        if replicas not in (1, 3, 5):
            raise ValueError("replicas must be 1, 3 or 5")
        self.binary = find_binary(binary)
        self.cluster_id = cluster_id
        self.tls = tls
        self.dir = Path(tempfile.mkdtemp(prefix="allocdb-py-"))
        self.addresses = [f"127.0.0.1:{port}" for port in _free_ports(replicas)]
        self._processes: list[Optional[subprocess.Popen[bytes]]] = [None] * replicas
        try:
            if tls:
                self._run(
                    "certs",
                    "--cluster",
                    str(cluster_id),
                    "--replica-count",
                    str(replicas),
                    str(self.certs_dir),
                )
            for replica in range(replicas):
                self._run(
                    "format",
                    "--cluster",
                    str(cluster_id),
                    "--replica",
                    str(replica),
                    "--replica-count",
                    str(replicas),
                    *self._security_flags(),
                    *format_args,
                    str(self._data_dir(replica)),
                )
            for replica in range(replicas):
                self.restart(replica)
        except BaseException:
            self.stop()
            raise

    def __enter__(self) -> "LocalCluster":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def certs_dir(self) -> Path:
        """Where ``allocdb certs`` wrote the certificates (``tls=True`` only)."""
        return self.dir / "certs"

    def client_options(self, role: str = "operator") -> dict[str, Any]:
        """Keyword arguments for ``allocdb.Client``/``AsyncClient`` to reach this cluster:
        ``insecure=True``, or ``certs=`` and ``role=`` under TLS."""
        if self.tls:
            return {"certs": str(self.certs_dir), "role": role, "cluster_id": self.cluster_id}
        return {"insecure": True, "cluster_id": self.cluster_id}

    def _security_flags(self) -> list[str]:
        return ["--certs", str(self.certs_dir)] if self.tls else ["--insecure"]

    def _data_dir(self, replica: int) -> Path:
        return self.dir / f"replica-{replica}"

    def log_path(self, replica: int) -> Path:
        """Replica ``replica``'s stdout and stderr."""
        return self.dir / f"replica-{replica}.log"

    def _run(self, *args: str) -> str:
        result = subprocess.run(
            [str(self.binary), *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"allocdb {args[0]} failed ({result.returncode}): {result.stderr.strip()}"
            )
        return result.stdout

    def restart(self, replica: int) -> None:
        """Starts replica ``replica`` (again) on its data directory."""
        process = self._processes[replica]
        if process is not None and process.poll() is None:
            raise RuntimeError(f"replica {replica} is running")
        with open(self.log_path(replica), "ab") as log:
            self._processes[replica] = subprocess.Popen(
                [
                    str(self.binary),
                    "start",
                    "--addresses",
                    ",".join(self.addresses),
                    "--replica",
                    str(replica),
                    *self._security_flags(),
                    str(self._data_dir(replica)),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def kill(self, replica: int) -> None:
        """Kills replica ``replica`` with SIGKILL (no chance to flush anything) and reaps it."""
        process = self._processes[replica]
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait()
        self._processes[replica] = None

    def is_running(self, replica: int) -> bool:
        process = self._processes[replica]
        return process is not None and process.poll() is None

    def status(self, timeout_ms: int = 300) -> list[dict[str, Any]]:
        """``allocdb status``: one dict per replica (``role`` is ``primary``, ``backup``,
        ``view_change``, ``recovering``, ``halted`` or ``unreachable``)."""
        flags = ["--certs", str(self.certs_dir)] if self.tls else ["--insecure"]
        result = subprocess.run(
            [
                str(self.binary),
                "status",
                *flags,
                "--addresses",
                ",".join(self.addresses),
                "--timeout",
                f"{timeout_ms}ms",
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )
        # Exit 1 only says some replica did not answer; each line says which.
        return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]

    def primary(self) -> Optional[int]:
        """The index of a replica that reports itself primary, if any."""
        for entry in self.status():
            if entry.get("role") == "primary":
                return int(entry["replica"])
        return None

    def wait_for_primary(self, timeout: float = 30.0) -> int:
        """Waits until some replica reports itself primary; its index."""
        deadline = time.monotonic() + timeout
        while True:
            primary = self.primary()
            if primary is not None:
                return primary
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"no primary within {timeout} s; last log lines:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def log_tail(self, lines: int = 10) -> str:
        """The last lines of every replica's log, for failure messages."""
        parts = []
        for replica in range(len(self.addresses)):
            try:
                text = self.log_path(replica).read_text(errors="replace")
            except OSError:
                text = ""
            tail = "\n".join(text.splitlines()[-lines:])
            parts.append(f"--- replica {replica}\n{tail}")
        return "\n".join(parts)

    def stop(self) -> None:
        """Stops every replica (SIGTERM, then SIGKILL) and removes the directory."""
        for process in self._processes:
            if process is not None and process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + STOP_WAIT_SECONDS
        for replica, process in enumerate(self._processes):
            if process is None:
                continue
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            self._processes[replica] = None
        if not os.environ.get("ALLOCDB_KEEP_CLUSTER_DIR"):
            shutil.rmtree(self.dir, ignore_errors=True)
