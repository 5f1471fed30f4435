"""Keyset paging: a page starts at a row's (time, id), never at an OFFSET, and a list of several practices is read
along each practice's own index and merged, so a page costs the same at row 10 as at row 100 000."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pbnsec.core.text import MAX_ID, parse_id

PAGE_SIZE = 50
# More parts than this are read as one (slower, but SQLite allows at most 500 terms in a compound SELECT): a group
# of over a hundred practices is beyond what this app is built for.
MAX_PARTS = 100


@dataclass(frozen=True)
class Cursor:
    """A place in a list: the (time, id) of a row, as a link carries it."""

    at: datetime
    id: int

    @classmethod
    def parse(cls, text: str) -> Cursor | None:
        """The cursor a link carries, or None when the text is not one."""
        at, _, number = (text or "").strip().partition("_")
        try:
            when = datetime.strptime(at, "%Y%m%dT%H%M%S%f")
        except ValueError:
            return None
        number = parse_id(number)
        # Below the largest id a column holds: no row has that one, and the step past it would not fit.
        return cls(when, number) if number and number < MAX_ID else None

    def __str__(self) -> str:
        # The year by hand: %Y writes year 1 as "1" on some platforms, which parse() would not read back.
        return f"{self.at.year:04d}{self.at:%m%dT%H%M%S%f}_{self.id}"


def beyond(column, id_column, cursor: Cursor | None, descending: bool) -> list:
    """The conditions of rows past the cursor in (column, id) order: a range the index walks, then the tie."""
    if cursor is None:
        return []
    if descending:
        return [column <= cursor.at, (column < cursor.at) | (id_column < cursor.id)]
    return [column >= cursor.at, (column > cursor.at) | (id_column > cursor.id)]


def merged_ids(parts, size: int, descending: bool):
    """The ids of the first `size` rows of several ordered, limited queries (each selecting the id, then the place
    it is ordered by as "place") as one subquery: each part keeps its ORDER BY and LIMIT, so each is read along its
    index and only `size` rows of each are looked at; only `size` ids come out."""
    wrapped = [part.select_from(part.c.id, part.c.place) for part in parts]
    union = wrapped[0]
    for part in wrapped[1:]:
        union = union.union_all(part)
    order = (union.c.place.desc(), union.c.id.desc()) if descending else (union.c.place, union.c.id)
    return union.select_from(union.c.id).order_by(*order).limit(size)


def among(query, model, parts, size: int, descending: bool):
    """The query's rows whose ids the parts pick (see merged_ids): joined to them (not `id IN`), so each row is
    fetched by its primary key rather than by matching the whole table against the list."""
    ids = merged_ids(parts, size, descending).alias("page_ids")
    return query.switch(model).join(ids, on=(model.id == ids.c.id))
