"""Which edition of an air-quality standard judges a given date.

HJ 633-2026 (AQI), GB 3095-2026 (limits) and HJ 663-2026 (assessment) replaced HJ 633-2012,
GB 3095-2012 and HJ 663-2013 together on 2026-03-01 (HJ 633-2026 foreword; see
`reference/air-aqi.md` and `air-validity.md` §8). The three move as one set, so one edition key,
the HJ 633 year, names the whole set: ``"2012"`` or ``"2026"``.

Data is judged by the edition in force on *its* date, not on the day it is processed: a reading of
2026-02-28 23:00 local time is judged by the 2012 set even when it arrives in April.
"""

from __future__ import annotations

import datetime as dt
from typing import Final, Literal

Edition = Literal["2012", "2026"]

EDITIONS: Final[tuple[Edition, ...]] = ("2012", "2026")

# HJ 633-2026 title page: "2026-03-01 实施"; GB 3095-2026 and HJ 663-2026 take effect the same day.
AIR_2026_IN_FORCE: Final[dt.date] = dt.date(2026, 3, 1)

# HJ 212-2025 takes effect 2026-01-01 (reference/hj212.md, "HJ 212-2025: what changed").
# Packets carry their own version bits, so this date only picks the default for encoding.
HJ212_2025_IN_FORCE: Final[dt.date] = dt.date(2026, 1, 1)

_ALIASES: Final[dict[str, Edition]] = {
    "2012": "2012",
    "2013": "2012",  # HJ 663-2013 belongs to the 2012 set
    "hj 633-2012": "2012",
    "hj633-2012": "2012",
    "gb 3095-2012": "2012",
    "hj 663-2013": "2012",
    "2026": "2026",
    "hj 633-2026": "2026",
    "hj633-2026": "2026",
    "gb 3095-2026": "2026",
    "hj 663-2026": "2026",
}


def edition_for(edition: str | int | None = None, when: dt.date | dt.datetime | None = None) -> Edition:
    """The air-standard edition to apply.

    An explicit ``edition`` wins; otherwise the edition in force on ``when`` (a date, or a datetime
    whose *local* date is used as given); with neither, the edition in force today.
    Raises ``ValueError`` for an edition this code does not hold.
    """
    if edition is not None:
        key = str(edition).strip().lower()
        if key not in _ALIASES:
            raise ValueError(
                f"unknown edition {edition!r}: expected one of '2012', '2026', "
                "'HJ 633-2012', 'HJ 633-2026'"
            )
        return _ALIASES[key]
    if when is None:
        when = dt.date.today()
    day = when.date() if isinstance(when, dt.datetime) else when
    return "2026" if day >= AIR_2026_IN_FORCE else "2012"
