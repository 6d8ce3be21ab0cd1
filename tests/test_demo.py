"""The README's first command: ``ecopark demo`` runs the whole park and stops cleanly.

Runs the real command in a child process (its own Mosquitto, Tansu, worker, collector, simulator
and wall page), waits until the wall's API shows every kind of result and event, then interrupts it
like Ctrl-C and checks that nothing it started is left running.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from ecopark.services import free_port, wait_for_port

REPO = Path(__file__).resolve().parent.parent


def test_ecopark_help_lists_every_command():
    out = subprocess.run([sys.executable, "-m", "ecopark.cli", "--help"], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0
    for command in ("demo", "worker", "collect", "gateway", "simulate", "wall", "check"):
        assert command in out.stdout


def test_the_demo_shows_the_park_on_the_wall_and_ctrl_c_stops_everything(tmp_path):
    port = free_port()
    env = dict(os.environ, ECOPARK_VAR=str(tmp_path))
    proc = subprocess.Popen(
        [sys.executable, "-m", "ecopark.cli", "demo", "--port", str(port), "--duration", "240"],
        cwd=REPO, env=env, stdout=open(tmp_path / "demo.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        wait_for_port("127.0.0.1", port, timeout=60, proc=proc, what="ecopark demo's wall page")
        snapshot = _wait_for(port, _shows_everything, timeout=150, proc=proc, log=tmp_path / "demo.log")
        station = snapshot["air"][0]
        assert station["hourly"]["aqi"] is not None and station["hourly"]["color"].startswith("#")
        assert all(section["hourly"] for section in snapshot["water"])
        kinds = {e["kind"] for e in snapshot["events"]}
        assert {"aqi_level", "below_target", "exceedance"} <= kinds, kinds
        children = _descendants(proc.pid)
        assert children, "the demo should run its servers as child processes"
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground process group
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    assert proc.returncode == 0, (tmp_path / "demo.log").read_text(errors="replace")[-3000:]
    leftovers = [pid for pid in children if _alive(pid)]
    assert leftovers == [], f"processes left behind: {leftovers}"


def test_the_embedded_broker_carries_qos1_messages(tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "ecopark.embedded_broker", str(port)], cwd=REPO, start_new_session=True)
    try:
        wait_for_port("127.0.0.1", port, timeout=30, proc=proc, what="embedded broker")
        got: list[bytes] = []
        sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="embedded-sub")
        sub.on_message = lambda c, u, m: got.append(m.payload)
        sub.connect("127.0.0.1", port)
        sub.loop_start()
        result, mid = sub.subscribe("ecopark/#", qos=1)
        assert result == mqtt.MQTT_ERR_SUCCESS
        time.sleep(0.5)  # amqtt has no SUBACK hook in paho's blocking API; the publish below is QoS 1 anyway
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="embedded-pub")
        pub.connect("127.0.0.1", port)
        pub.loop_start()
        pub.publish("ecopark/air/KM-AIR-KMXY", b"hello", qos=1).wait_for_publish(10)
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            time.sleep(0.05)
        assert got == [b"hello"]
        for c in (pub, sub):
            c.loop_stop()
            c.disconnect()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


# -- helpers -------------------------------------------------------------------------------------

def _shows_everything(snapshot: dict) -> bool:
    kinds = {e["kind"] for e in snapshot.get("events", [])}
    station = snapshot["air"][0]
    return bool(station.get("hourly") and station["hourly"].get("aqi") is not None
                and {"aqi_level", "below_target", "exceedance"} <= kinds)


def _wait_for(port: int, ok, timeout: float, proc: subprocess.Popen, log: Path) -> dict:
    deadline = time.monotonic() + timeout
    snapshot: dict = {}
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the demo exited with {proc.returncode}:\n" + log.read_text(errors="replace")[-3000:])
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/wall", timeout=5) as r:
                snapshot = json.load(r)
            if ok(snapshot):
                return snapshot
        except OSError:
            pass
        time.sleep(1)
    pytest.fail(f"the wall did not show everything within {timeout:.0f} s; last events: "
                f"{[e['kind'] for e in snapshot.get('events', [])][:20]}\n" + log.read_text(errors='replace')[-2000:])


def _descendants(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True).stdout.split("\n")
    children: dict[int, list[int]] = {}
    for line in out:
        parts = line.split()
        if len(parts) == 2:
            children.setdefault(int(parts[1]), []).append(int(parts[0]))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "zombie" not in status.read_text()
