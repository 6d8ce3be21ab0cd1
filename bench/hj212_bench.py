"""HJ 212 parse rate on one core.

Run: ``.venv/bin/python -m bench.hj212_bench``. The headline is ``parse`` of a typical flue-gas
minute packet (CN=2051, 6 factors, 27 numbers, about 540 bytes); the goal is ≥ 50,000 packets/s.
Beside it: the 2025 standard's own minute example (A.2-2, 12 numbers) in plain text and
SM4-encrypted, a large 9-factor minute packet, the CRC alone, and the gateway's per-packet path
(Framer → parse → reply). Each figure is the best of ``REPEATS`` runs, timed in CPU time of this
process (``time.process_time``) so that other load on a shared machine does not count.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Callable

from ingest.hj212 import SHANGHAI, Framer, crc16, encode, parse, reply

REPEATS = 5
GOAL_PACKETS_PER_S = 50_000
KEY = b"0" * 16
MN = "010000A8900016F000169DC0"
MINUTE = dt.datetime(2025, 3, 14, 10, 1, tzinfo=SHANGHAI)


def _packet(values: dict, *, version: str = "2017", key: bytes | None = None) -> bytes:
    return encode(qn="20250314100200123", st="31", cn="2051", pw="123456", mn=MN, version=version,
                  needs_reply=True, values=values, data_time=MINUTE, key=key)


def _gas(**fields: float) -> dict:
    return {**fields, "Flag": "N"}


TYPICAL = _packet({
    "a21026": _gas(Min=11.2, Avg=12.3, Max=13.9, ZsAvg=13.6),
    "a21002": _gas(Min=41.0, Avg=45.7, Max=52.3, ZsAvg=50.1),
    "a34013": _gas(Min=2.1, Avg=2.6, Max=3.4, ZsAvg=2.9),
    "a19001": _gas(Min=5.1, Avg=5.2, Max=5.4),
    "a00000": _gas(Min=9.8, Avg=10.0, Max=10.4, Cou=600.0),
    "a01012": _gas(Min=120.5, Avg=121.0, Max=121.6),
})
A22_VALUES = {
    "a01011": {"Min": "1.35", "Avg": "1.35", "Max": "1.35", "Flag": "N"},
    "a01012": {"Min": "9.3", "Avg": "9.3", "Max": "9.3", "Flag": "N"},
    "a01014": {"Min": "3.20", "Avg": "3.211", "Max": "3.212", "Flag": "N"},
}
A22_PLAIN = _packet(A22_VALUES, version="2025")
A22_SM4 = _packet(A22_VALUES, version="2025", key=KEY)
LARGE = _packet({
    **{code: _gas(Min=12.1, Avg=13.6, Max=15.2, ZsAvg=14.9, Cou=0.44) for code in ("a34013", "a21026", "a21002")},
    **{code: _gas(Min=5.1, Avg=5.2, Max=5.3) for code in ("a19001", "a01011", "a01012", "a01013", "a01014")},
    "a00000": _gas(Min=9.8, Avg=10.0, Max=10.4, Cou=600.0),
})


def rate(work: Callable[[], object], count: int) -> float:
    """Calls per CPU second of ``work``, best of REPEATS runs of ``count`` calls."""
    best = float("inf")
    for _ in range(REPEATS):
        started = time.process_time()
        for _ in range(count):
            work()
        best = min(best, time.process_time() - started)
    return count / best


def gateway_path(frame: bytes) -> Callable[[], object]:
    framer = Framer()

    def work() -> object:
        for item in framer.feed(frame):
            reply(parse(item))  # type: ignore[arg-type]
        return None

    return work


def main() -> None:
    keys = {MN: KEY}
    for packet in (TYPICAL, A22_PLAIN, LARGE):
        parse(packet, strict=True)
    parse(A22_SM4, keys=keys, strict=True)
    segment = TYPICAL[6:-6]
    rows = [
        (f"parse, typical minute packet ({len(TYPICAL)} B)", rate(lambda: parse(TYPICAL), 20_000)),
        (f"parse, 2025 A.2-2 example ({len(A22_PLAIN)} B)", rate(lambda: parse(A22_PLAIN), 20_000)),
        (f"parse, 2025 A.2-2 SM4-encrypted ({len(A22_SM4)} B)", rate(lambda: parse(A22_SM4, keys=keys), 10_000)),
        (f"parse, large 9-factor minute packet ({len(LARGE)} B)", rate(lambda: parse(LARGE), 10_000)),
        (f"crc16 of the typical data segment ({len(segment)} B)", rate(lambda: crc16(segment), 100_000)),
        ("Framer.feed + parse + reply, typical packet", rate(gateway_path(TYPICAL), 20_000)),
    ]
    print("HJ 212 bench (one core, CPU time; packets/s, best of %d)" % REPEATS)
    for label, per_s in rows:
        print(f"  {label:<58} {per_s:>12,.0f}/s  {1e6 / per_s:8.2f} µs")
    typical = rows[0][1]
    verdict = "meets" if typical >= GOAL_PACKETS_PER_S else "MISSES"
    print(f"typical minute packet: {typical:,.0f} packets/s — {verdict} the goal of {GOAL_PACKETS_PER_S:,}/s")


if __name__ == "__main__":
    main()
