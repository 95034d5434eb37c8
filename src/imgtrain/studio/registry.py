"""The studio's run registry: one SQLite file under the root, so runs survive a restart of the server."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STATUSES = ("queued", "running", "finished", "failed", "interrupted", "stopped")
#: Where the studio keeps its own files under the root (the registry); the runs' outputs go to RUNS_DIR.
STATE_DIR = ".imgtrain-studio"
RUNS_DIR = "imgtrain-runs"

_SCHEMA = """CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    status TEXT NOT NULL,
    request TEXT NOT NULL,
    error TEXT
)"""


_FOLDER = re.compile(r"run-(\d{1,18})")


def run_folder_name(run_id: int) -> str:
    """The folder of run `run_id`'s outputs, relative to the root (the run's own folder under RUNS_DIR)."""
    return f"{RUNS_DIR}/run-{run_id}"


@dataclass
class Registry:
    """Runs and their status; every call opens its own connection (the server's threads share nothing)."""

    path: Path

    @classmethod
    def open(cls, root: Path) -> Registry:
        """The registry of `root`; runs a previous server left running are marked interrupted (resumable)."""
        (root / STATE_DIR).mkdir(parents=True, exist_ok=True)
        registry = cls(root / STATE_DIR / "runs.sqlite")
        with registry._connect() as db:
            db.execute(_SCHEMA)
            db.execute("UPDATE runs SET status = 'interrupted' WHERE status = 'running'")
        return registry

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30)
        db.row_factory = sqlite3.Row
        return db

    def add(self, request: dict[str, Any]) -> int:
        """A new queued run of `request`; its id, past every run folder already under the root, so a registry
        that was deleted (or a root copied without it) never hands a new run an old run's folder."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")  # one id at a time across the server's threads
            newest = db.execute("SELECT COALESCE(MAX(id), 0) FROM runs").fetchone()[0]
            cursor = db.execute(
                "INSERT INTO runs (id, created, status, request) VALUES (?, ?, 'queued', ?)",
                (max(newest, self._newest_folder()) + 1, time.time(), json.dumps(request)),
            )
            assert cursor.lastrowid is not None  # set by every INSERT
            return cursor.lastrowid

    def _newest_folder(self) -> int:
        """The highest N of the RUNS_DIR/run-N folders under the root (0 when none)."""
        runs = self.path.parent.parent / RUNS_DIR
        numbers = (_FOLDER.fullmatch(entry.name) for entry in (runs.iterdir() if runs.is_dir() else ()))
        return max((int(found[1]) for found in numbers if found), default=0)

    def get(self, run_id: int) -> dict[str, Any] | None:
        """Run `run_id`, or None (ids are SQLite's 64-bit integers: a larger number names no run)."""
        if not 0 < run_id < 2**63:
            return None
        with self._connect() as db:
            row = db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        return _as_dict(row) if row else None

    def all(self) -> list[dict[str, Any]]:
        with self._connect() as db:
            return [_as_dict(row) for row in db.execute("SELECT * FROM runs ORDER BY id")]

    def next_queued(self) -> dict[str, Any] | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM runs WHERE status = 'queued' ORDER BY id LIMIT 1").fetchone()
        return _as_dict(row) if row else None

    def set_status(self, run_id: int, status: str, error: dict[str, str] | None = None) -> None:
        assert status in STATUSES
        with self._connect() as db:
            db.execute(
                "UPDATE runs SET status = ?, error = ? WHERE id = ?",
                (status, json.dumps(error) if error else None, run_id),
            )


def _as_dict(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "created": row["created"],
        "status": row["status"],
        "request": json.loads(row["request"]),
        "error": json.loads(row["error"]) if row["error"] else None,
    }
