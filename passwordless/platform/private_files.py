"""Files private to the server's user whatever the umask: the database holds the signing keys and
the plain links of unsent emails, so its folder is 0700 and every file in it 0600."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

logger = logging.getLogger(__name__)

FOLDER_MODE = 0o700
FILE_MODE = 0o600
SQLITE_SIDE_FILES = ("-wal", "-shm")


def folder(path: Path) -> None:
    """Make the folder 0700 if it is missing. An existing folder is the operator's choice (it may
    be the working directory) and is left as it is, with a warning when others can enter it."""
    try:
        path.mkdir(mode=FOLDER_MODE, parents=True)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            logger.warning(
                "data_folder_not_private", extra={"path": str(path), "mode": oct(mode), "hint": "chmod 700 it"}
            )
        return
    os.chmod(path, FOLDER_MODE)  # mkdir's mode went through the umask


def file(path: Path) -> None:
    """Create the file 0600 if it is missing, or make it 0600: it is the server's own."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)


def database(path: Path) -> None:
    """The database and its -wal and -shm files (SQLite gives those the database's mode when it
    makes them; ones left by an older version are tightened here)."""
    folder(path.parent)
    file(path)
    for suffix in SQLITE_SIDE_FILES:
        side = path.with_name(path.name + suffix)
        if side.exists():
            file(side)


def write(path: Path, data: bytes) -> None:
    """Write a new 0600 file (replacing any file of that name)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, FILE_MODE)
    with os.fdopen(fd, "wb") as out:
        os.fchmod(out.fileno(), FILE_MODE)
        out.write(data)
