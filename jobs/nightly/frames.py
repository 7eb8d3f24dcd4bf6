"""Warning texts for a whole run, rendered once per distinct text and finished in SQL.

A warning's text depends only on the language, the validity end (which fixes grace end and stage on
date D) and the number. The notifier renders one frame per language and validity end in the warning
window, plus one final notice per language: at most a few dozen texts a night, whatever the size of
the base. They go into a temporary table that the queueing statements join, splicing each number
into its frame, so that no Python loop ever runs over subscribers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from jobs.phone import national_prefix
from jobs.rules import FINAL_NOTICE_STAGE, Rules
from notifier.templates import TemplateBook, TemplateKind, TextFrame

__all__ = [
    "FrameRow",
    "build_frames",
    "display_number",
    "frame_row",
    "framed_text",
    "load_frames",
    "text_frames",
]

_frames_metadata = sa.MetaData()

text_frames = sa.Table(
    "run_text_frames",
    _frames_metadata,
    sa.Column("language", sa.String(2), nullable=False),
    # Empty for final notices, whose text does not depend on the validity end.
    sa.Column("validity_end", sa.Date),
    sa.Column("stage", sa.Integer, nullable=False),
    sa.Column("grace_end", sa.Date),
    sa.Column("prefix", sa.Text, nullable=False),
    sa.Column("suffix", sa.Text, nullable=False),
    sa.Column("encoding", sa.String(8), nullable=False),
    sa.Column("fixed_units", sa.Integer, nullable=False),
    sa.Column("single_limit", sa.Integer, nullable=False),
    sa.Column("part_limit", sa.Integer, nullable=False),
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DROP",
)


@dataclass(frozen=True)
class FrameRow:
    """One rendered text frame and the numbers it is for."""

    language: str
    validity_end: date | None
    stage: int
    grace_end: date | None
    prefix: str
    suffix: str
    encoding: str
    fixed_units: int
    single_limit: int
    part_limit: int


def build_frames(as_of: date, rules: Rules, templates: TemplateBook) -> list[FrameRow]:
    """Every text the run for date D can queue: per language, one per validity end whose due
    stage is reached on D, and one final notice."""
    frames: list[FrameRow] = []
    resale_from = rules.resale_from(as_of)
    window = rules.due_stages(as_of)
    for language in sorted(templates.languages):
        for validity_end, stage in window.items():
            grace_end = rules.grace_end(validity_end)
            frame = templates.frame(language, TemplateKind.WARNING, grace_end=grace_end)
            frames.append(frame_row(language, validity_end, stage, grace_end, frame))
        final = templates.frame(language, TemplateKind.FINAL_NOTICE, resale_from=resale_from)
        frames.append(frame_row(language, None, FINAL_NOTICE_STAGE, None, final))
    return frames


def frame_row(
    language: str, validity_end: date | None, stage: int, grace_end: date | None, frame: TextFrame
) -> FrameRow:
    limits = frame.encoding.limits
    return FrameRow(
        language=language,
        validity_end=validity_end,
        stage=stage,
        grace_end=grace_end,
        prefix=frame.prefix,
        suffix=frame.suffix,
        encoding=str(frame.encoding),
        fixed_units=frame.fixed_units,
        single_limit=limits.single,
        part_limit=limits.part,
    )


def load_frames(connection: Connection, frames: list[FrameRow]) -> None:
    """Create the run's temporary frame table in this transaction and fill it."""
    if connection.dialect.name == "sqlite":
        # SQLite keeps temporary tables for the life of the connection, which the pool reuses.
        connection.exec_driver_sql("DROP TABLE IF EXISTS temp.run_text_frames")
    text_frames.create(connection)
    if frames:
        connection.execute(text_frames.insert(), [frame.__dict__ for frame in frames])


def display_number(msisdn: ColumnElement[str], region: str) -> ColumnElement[str]:
    """SQL for the number as the subscriber dials it: national form for the home region."""
    prefixes = national_prefix(region)
    if prefixes is None:
        return msisdn
    country, trunk = prefixes
    return sa.case(
        (
            sa.func.substr(msisdn, 1, len(country)) == country,
            sa.literal(trunk, sa.String) + sa.func.substr(msisdn, len(country) + 1),
        ),
        else_=msisdn,
    )


def framed_text(
    msisdn: ColumnElement[str], region: str
) -> tuple[ColumnElement[str], ColumnElement[str], ColumnElement[int]]:
    """SQL for a warning's text, encoding and parts, for rows joined to ``text_frames``."""
    shown = display_number(msisdn, region)
    length = text_frames.c.fixed_units + sa.func.length(shown)
    parts = sa.case(
        (length <= text_frames.c.single_limit, 1),
        else_=(length + text_frames.c.part_limit - 1) // text_frames.c.part_limit,
    )
    return text_frames.c.prefix + shown + text_frames.c.suffix, text_frames.c.encoding, parts
