"""Reader threads: each runs read units in its own read transaction, on a read-only connection."""

from __future__ import annotations

import sqlite3
import threading

from passwordless.platform.db.jobs import STOP, Jobs, Outcome, deliver


class Reader(threading.Thread):
    """Runs read jobs, each in its own read transaction (one consistent snapshot)."""

    def __init__(self, name: str, conn: sqlite3.Connection, jobs: Jobs) -> None:
        super().__init__(name=name, daemon=True)
        self.conn, self.jobs = conn, jobs

    def run(self) -> None:
        try:
            while (job := self.jobs.get()) is not STOP:
                try:
                    self.conn.execute("BEGIN")
                    try:
                        outcome: Outcome = (job, True, job.unit(self.conn))
                    finally:
                        self.conn.execute("COMMIT")
                except BaseException as exc:  # handed to the awaiting task
                    outcome = (job, False, exc)
                deliver([outcome])
        finally:
            self.conn.close()
