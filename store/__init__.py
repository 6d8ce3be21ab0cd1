"""ecopark's store: one interface (``store.base.Store``), two adapters, a buffer for outages.

``open_store(url)`` picks the adapter from a URL:

| URL | store |
|---|---|
| ``sqlite:///data/ecopark.db`` (three slashes: absolute, as ``file:///``; four work too) | ``SqliteStore("/data/ecopark.db")`` |
| ``sqlite:data/ecopark.db`` or ``sqlite://data/ecopark.db`` (relative) | ``SqliteStore("data/ecopark.db")`` |
| ``sqlite::memory:`` | ``SqliteStore(":memory:")`` (tests) |
| a plain path: ``ecopark.db``, ``/data/ecopark.db`` | ``SqliteStore(path)`` |
| ``influxdb://host:8086?org=O&bucket=B&token=T`` (``influxdbs://`` for TLS) | ``InfluxStore("http(s)://host:8086", T, O, B)`` |
| ``http://host:8086`` / ``https://…`` | ``InfluxStore``; org, bucket, token from the query or the environment: ``INFLUX_ORG``, ``INFLUX_BUCKET``, ``INFLUX_TOKEN`` |

An ``influxdb``/``http`` URL may also carry ``timeout_s=``. Missing org/bucket/token or an
unknown scheme raises ``ValueError`` with one line naming what is wrong. Wrap the result in
``store.buffer.BufferedStore`` to survive outages.
"""

from __future__ import annotations

import os
import urllib.parse
from typing import Final, Mapping

from store.base import Store, StoreRejected, StoreUnavailable

__all__ = ["open_store", "Store", "StoreUnavailable", "StoreRejected"]

INFLUX_ENV: Final[dict[str, str]] = {"token": "INFLUX_TOKEN", "org": "INFLUX_ORG", "bucket": "INFLUX_BUCKET"}


def open_store(url: str, env: Mapping[str, str] | None = None) -> Store:
    """The store ``url`` names (see the module docstring); ``env`` defaults to ``os.environ``."""
    env = os.environ if env is None else env
    text = url.strip()
    if not text:
        raise ValueError("store URL is empty (expected sqlite:///path.db, a path, influxdb://host:port?... or http://...)")
    scheme, sep, rest = text.partition(":")
    scheme = scheme.lower()
    if not sep or len(scheme) == 1 or "/" in scheme or "\\" in scheme or scheme.endswith(".db"):
        # a plain path (a one-letter "scheme" is a Windows drive)
        from store.sqlite import SqliteStore

        return SqliteStore(text)
    if scheme == "sqlite":
        from store.sqlite import SqliteStore

        return SqliteStore(_sqlite_path(text, rest))
    if scheme in ("influxdb", "influxdbs", "http", "https"):
        return _influx(text, env)
    raise ValueError(f"store URL {url!r}: unknown scheme {scheme!r} (expected sqlite, influxdb, influxdbs, http or https)")


def _sqlite_path(url: str, rest: str) -> str:
    if rest.startswith("///"):
        # sqlite:///abs/path → /abs/path (as file:///); SQLAlchemy's sqlite:////abs/path too
        path = "/" + rest.lstrip("/")
    elif rest.startswith("//"):
        path = rest[2:]  # sqlite://rel/path → rel/path
    else:
        path = rest  # sqlite:rel/path, sqlite::memory:
    path = urllib.parse.unquote(path)
    if not path:
        raise ValueError(f"store URL {url!r}: no database path after sqlite:")
    return path


def _influx(url: str, env: Mapping[str, str]):
    from store.influx import InfluxStore

    parts = urllib.parse.urlsplit(url)
    if not parts.hostname:
        raise ValueError(f"store URL {url!r}: no InfluxDB host")
    query = dict(urllib.parse.parse_qsl(parts.query))
    settings = {}
    for key, var in INFLUX_ENV.items():
        value = query.get(key) or env.get(var)
        if not value:
            raise ValueError(f"store URL {_redacted(url)!r}: no InfluxDB {key} (put {key}= in the URL or set {var})")
        settings[key] = value
    scheme = {"influxdb": "http", "influxdbs": "https"}.get(parts.scheme.lower(), parts.scheme.lower())
    base = urllib.parse.urlunsplit((scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
    try:
        timeout_s = float(query.get("timeout_s", 10))
    except ValueError:
        raise ValueError(f"store URL {_redacted(url)!r}: timeout_s={query['timeout_s']!r} is not a number") from None
    return InfluxStore(base, settings["token"], settings["org"], settings["bucket"], timeout_s=timeout_s)


def _redacted(url: str) -> str:
    """The URL without its token (error messages end up in logs)."""
    parts = urllib.parse.urlsplit(url)
    query = [(k, "***" if k == "token" else v) for k, v in urllib.parse.parse_qsl(parts.query)]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query, safe="*")))
