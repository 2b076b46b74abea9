"""The history store: one SQLite file of every run's headline numbers, keyed by what ran and where.

Why SQLite (stdlib ``sqlite3``) and not DuckDB: it ships with Python (no dependency), and it is made for many
small writes from several processes at once -- WAL journal plus a busy timeout let two sweeps (or Slurm nodes
through a shared folder with working POSIX locks) append side by side, each append is one atomic transaction,
and a writer killed mid-transaction (SIGKILL) leaves the file as it was before that transaction (the WAL's
uncommitted frames are ignored on the next open). DuckDB is a columnar engine for analytics; it allows one
writing process per file, which is the wrong trade for an append log shared by concurrent runs.

A row is one measured series point: (run spec key, machine class, commit, time) with p50/p90/p99, the CI of
the median, n, items/s, the reference workload's relative cost when the report has one, and the report's path.
Rows are unique by the content hash of what they were made from, so importing a folder twice adds nothing.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Iterable, Iterator

from deploykit.core.errors import InputError

SCHEMA_VERSION = 1
DEFAULT_NAME = "history.sqlite"
BUSY_TIMEOUT_MS = 60_000


def default_path() -> Path:
    """``$DEPLOYKIT_HISTORY``, else ``<reports dir>/history.sqlite``."""
    env = os.environ.get("DEPLOYKIT_HISTORY")
    if env:
        return Path(env)
    from deploykit.core.config import default_reports_dir

    return default_reports_dir() / DEFAULT_NAME


@dataclass
class Row:
    """One point of a series."""

    content_hash: str
    spec_key: str
    machine: str
    model: str
    target: str
    precision: str
    batch: int | None
    resolution: int | None
    commit_sha: str | None
    created: str  # ISO-8601 time of the run
    created_ts: float
    kind: str  # bench | gate | sweep | import
    p50: float
    p90: float | None = None
    p99: float | None = None
    ci_lo: float | None = None
    ci_hi: float | None = None
    n: int | None = None
    items_per_s: float | None = None
    rel_cost: float | None = None  # p50 of the model / p50 of the reference workload (refnet-v1), same session
    report_path: str | None = None
    dirty: bool | None = None
    id: int | None = None

    @property
    def series(self) -> tuple[str, str]:
        return (self.spec_key, self.machine)


_COLUMNS = [f.name for f in fields(Row) if f.name != "id"]
_SQL_TYPES = {"batch": "INTEGER", "resolution": "INTEGER", "n": "INTEGER", "dirty": "INTEGER", "created_ts": "REAL",
              "p50": "REAL NOT NULL", "p90": "REAL", "p99": "REAL", "ci_lo": "REAL", "ci_hi": "REAL",
              "items_per_s": "REAL", "rel_cost": "REAL", "content_hash": "TEXT NOT NULL UNIQUE",
              "spec_key": "TEXT NOT NULL", "machine": "TEXT NOT NULL"}

_DDL = [
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS runs (id INTEGER PRIMARY KEY AUTOINCREMENT, "
    + ", ".join(f"{c} {_SQL_TYPES.get(c, 'TEXT')}" for c in _COLUMNS) + ", inserted_ts REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS runs_series ON runs (spec_key, machine, created_ts)",
]


class Store:
    """The open store. ``with Store(path) as s: s.append(rows)``. Every write is one transaction."""

    def __init__(self, path: Path | str, *, create: bool = True):
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise InputError(f"no history store at {self.path} (append runs with --history, or "
                             "'deploykit history import REPORTS_DIR')")
        if create:
            from deploykit.core.atomic import ensure_dir

            ensure_dir(self.path.parent if str(self.path.parent) else Path("."))
        try:
            self.db = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            self.db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self.db.execute("PRAGMA journal_mode = WAL")
            self.db.execute("PRAGMA synchronous = NORMAL")
            self._init_schema()
        except sqlite3.DatabaseError as exc:
            raise InputError(f"history store {self.path}: {exc} (not a deploykit history file, or damaged)") from None

    def _init_schema(self) -> None:
        with self.transaction():
            for stmt in _DDL:
                self.db.execute(stmt)
            got = self.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if got is None:
                self.db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                self.db.execute("INSERT INTO meta VALUES ('created', ?)", (time.strftime("%Y-%m-%dT%H:%M:%S%z"),))
            elif int(got[0]) > SCHEMA_VERSION:
                raise InputError(f"history store {self.path} has schema version {got[0]}; this deploykit reads up to "
                                 f"{SCHEMA_VERSION} (upgrade deploykit)")

    def schema_version(self) -> int:
        return int(self.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])

    class _Tx:
        def __init__(self, db):
            self.db = db

        def __enter__(self):
            self.db.execute("BEGIN IMMEDIATE")  # take the write lock now (waits up to the busy timeout)

        def __exit__(self, exc_type, exc, tb):
            self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
            return False

    def transaction(self) -> Store._Tx:
        return Store._Tx(self.db)

    def append(self, rows: Iterable[Row]) -> int:
        """Insert ``rows`` in one transaction; rows whose content hash is stored already are skipped. Returns how
        many were added."""
        rows = list(rows)
        if not rows:
            return 0
        sql = (f"INSERT OR IGNORE INTO runs ({', '.join(_COLUMNS)}, inserted_ts) "
               f"VALUES ({', '.join('?' for _ in _COLUMNS)}, ?)")
        now = time.time()
        try:
            with self.transaction():
                before = self.db.total_changes
                self.db.executemany(sql, [tuple(asdict(r)[c] for c in _COLUMNS) + (now,) for r in rows])
                return self.db.total_changes - before
        except sqlite3.OperationalError as exc:
            raise InputError(f"cannot append to history store {self.path}: {exc}") from None

    def rows(self, where: str = "", args: tuple = ()) -> list[Row]:
        cur = self.db.execute(f"SELECT id, {', '.join(_COLUMNS)} FROM runs {where} ORDER BY created_ts, id", args)
        out = []
        for rec in cur:
            d = dict(zip(["id", *_COLUMNS], rec))
            d["dirty"] = None if d["dirty"] is None else bool(d["dirty"])
            out.append(Row(**d))
        return out

    def count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM runs").fetchone()[0])

    def integrity(self) -> str:
        return str(self.db.execute("PRAGMA integrity_check").fetchone()[0])

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def iter_series(rows: list[Row]) -> Iterator[tuple[tuple[str, str], list[Row]]]:
    """Rows grouped by series (run spec key, machine class), each in time order; series in first-seen order."""
    groups: dict[tuple[str, str], list[Row]] = {}
    for r in rows:
        groups.setdefault(r.series, []).append(r)
    yield from groups.items()
