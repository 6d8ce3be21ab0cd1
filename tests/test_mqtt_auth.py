"""The production MQTT access rules (deploy/mosquitto/acl) on a real Mosquitto with passwords.

A station may publish only on its own topic, the collector reads every site's topic, anonymous
clients are refused — enforced by the broker, before the collector's own topic check.
"""

from __future__ import annotations

import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from ecopark.services import Mosquitto

REPO = Path(__file__).resolve().parent.parent
PASSWORDS = {"ecopark-collector": "collector-pw", "KM-AIR-KMXY": "station-pw"}


@pytest.fixture
def secured_mosquitto(tmp_path):
    broker = Mosquitto(workdir=tmp_path / "mosquitto", passwords=PASSWORDS,
                       acl=(REPO / "deploy" / "mosquitto" / "acl").read_text()).start()
    yield broker
    broker.stop()


def test_a_station_publishes_on_its_own_topic_and_the_collector_reads_it(secured_mosquitto):
    collector = _Client(secured_mosquitto.port, "ecopark-collector", "collector-pw", subscribe="ecopark/#")
    station = _Client(secured_mosquitto.port, "KM-AIR-KMXY", "station-pw")
    station.publish("ecopark/air/KM-AIR-KMXY", b"own topic")
    assert collector.wait_for(b"own topic")
    # the ACL silently drops a publication on another site's topic (MQTT 3.1.1 has no negative ack)
    station.publish("ecopark/water/KM-RIV-LLH", b"foreign topic")
    station.publish("ecopark/air/KM-AIR-KMXY", b"marker")
    assert collector.wait_for(b"marker")
    assert b"foreign topic" not in collector.received
    for c in (station, collector):
        c.close()


def test_an_unknown_user_or_a_wrong_password_is_refused(secured_mosquitto):
    for user, password in (("KM-AIR-KMXY", "wrong"), ("nobody", "x"), (None, None)):
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"refused-{user}")
        if user is not None:
            client.username_pw_set(user, password)
        refused = threading.Event()
        client.on_connect = lambda c, u, f, rc, p: refused.set() if rc.is_failure else None
        client.connect("127.0.0.1", secured_mosquitto.port)
        client.loop_start()
        assert refused.wait(10), f"{user!r} was not refused"
        client.loop_stop()


class _Client:
    def __init__(self, port: int, user: str, password: str, subscribe: str | None = None) -> None:
        self.received: list[bytes] = []
        self._got = threading.Condition()
        self._ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"acl-{user}")
        self.client.username_pw_set(user, password)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, u, f, rc, p: (c.subscribe(subscribe, qos=1) if subscribe else self._ready.set())
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self._ready.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._ready.wait(10), f"{user} could not connect"

    def _on_message(self, client, userdata, message) -> None:
        with self._got:
            self.received.append(message.payload)
            self._got.notify_all()

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(10)

    def wait_for(self, payload: bytes, timeout: float = 10) -> bool:
        with self._got:
            return self._got.wait_for(lambda: payload in self.received, timeout)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
