"""Files shaped like an operator's billing exports, for benchmarks and the scale tests.

Not recycler's seed: the numbers are written the ways exports write them (national form with and
without spaces, E.164, 855… without the plus), both languages, validity ends spread over the
last 120 and the next 60 days, and the optional columns present in some files and absent in
others. A subscriber export lists its rows in the billing system's order, not by number: its
numbers come scattered, as an operator's do (a million numbers in number order imported a
quarter faster on SQLite than the same file in another order, which hid a cost). Generated row by
row and streamed to disk, so that ten million rows take no memory.
"""

from __future__ import annotations

import csv
import math
import random
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

__all__ = ["PREFIXES", "msisdn_at", "subscriber_export", "topup_export"]

ZONE = ZoneInfo("Asia/Phnom_Penh")
# Cambodian mobile prefixes after the trunk 0, each with six digits after it.
PREFIXES = ("10", "11", "12", "15", "16", "17", "61", "69", "70", "77", "78", "85", "86", "89")
_PER_PREFIX = 1_000_000


def msisdn_at(index: int) -> str:
    """The index-th number of the export, in E.164: distinct for every index below 14 million."""
    prefix = PREFIXES[index // _PER_PREFIX]
    return f"+855{prefix}{index % _PER_PREFIX:06d}"


def _written(msisdn: str, rng: random.Random) -> str:
    """The number as one export or another writes it."""
    national = "0" + msisdn[4:]
    choice = rng.random()
    if choice < 0.45:
        return national
    if choice < 0.60:
        return f"{national[:3]} {national[3:6]} {national[6:]}"
    if choice < 0.90:
        return msisdn
    return msisdn[1:]


def _scattered(count: int) -> Iterator[int]:
    """Every index below `count` once, in an order unrelated to the numbers' (an affine walk,
    so no memory). A number keeps its index, and so its owner, in exports of any size."""
    stride = 7_368_787  # a prime: coprime with every count it does not divide
    while count and math.gcd(stride, count) != 1:
        stride += 2
    for position in range(count):
        yield (stride * position + count // 3) % count


def _rows(
    count: int, day: date, rng: random.Random, owner_since: bool, validity: tuple[int, int]
) -> Iterator[list[str]]:
    first, last = validity
    for index in _scattered(count):
        msisdn = msisdn_at(index)
        validity_end = day + timedelta(days=rng.randint(first, last))
        row = [
            _written(msisdn, rng),
            f"C{index:09d}",
            "km" if rng.random() < 0.8 else "en",
            validity_end.isoformat(),
        ]
        if owner_since:
            row.append((validity_end - timedelta(days=rng.randint(200, 3000))).isoformat())
        yield row


def subscriber_export(
    path: Path,
    count: int,
    day: date,
    *,
    seed: int = 1,
    owner_since: bool = False,
    validity: tuple[int, int] = (-120, 60),
) -> Path:
    """`count` subscribers as of `day`; with `owner_since`, the optional column too. Validity
    ends are spread evenly over the days from `day` plus the first of `validity` to `day` plus
    its last: by default the last 120 and the next 60 days, an imported base with a backlog
    past grace; (-90, 59) is a base in its steady state, whose ends spread over 150 days leave
    none past grace."""
    rng = random.Random(seed)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        header = ["msisdn", "owner_id", "language", "validity_end"]
        writer.writerow([*header, "owner_since"] if owner_since else header)
        writer.writerows(_rows(count, day, rng, owner_since, validity))
    return path


def topup_export(
    path: Path,
    count: int,
    base: int,
    day: date,
    *,
    seed: int = 2,
    with_amount: bool = True,
    prefix: str = "TU",
) -> Path:
    """`count` top-ups made on `day` (local time, spread over the day) for numbers drawn from
    the first `base` numbers of the export, each buying 7 to 90 days from that day."""
    rng = random.Random(seed)
    start = datetime.combine(day, time(0), tzinfo=ZONE)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        header = ["topup_id", "msisdn", "topped_up_at", "validity_end"]
        writer.writerow([*header, "amount"] if with_amount else header)
        for index in range(count):
            msisdn = msisdn_at(rng.randrange(base))
            moment = start + timedelta(seconds=rng.randrange(86_400))
            days = rng.choice((7, 15, 30, 60, 90))
            row = [
                f"{prefix}{day:%Y%m%d}{index:08d}",
                _written(msisdn, rng),
                moment.isoformat(timespec="seconds"),
                (day + timedelta(days=days)).isoformat(),
            ]
            if with_amount:
                row.append(f"{rng.choice((1, 2, 5, 10, 15))}.00")
            writer.writerow(row)
    return path
