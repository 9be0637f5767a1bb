"""Files the CLI writes for the user: all or nothing, through symlinks, with the umask's permissions.

A regular file is replaced atomically (a temporary file beside the real target, then a rename), so a failed
command never leaves half a file. A symlink is followed: its target gets the content and the link stays a
link. A target that is not a regular file (``/dev/stdout``, a FIFO) cannot be renamed over; it is written in
place, after every line has been produced and encoded, so nothing can fail half-way through for bad data.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path


class OutputFileError(ValueError):
    """An output path that cannot be written; the message names the flag, the path and why, in one line."""


def check_writable(flag: str, path: Path) -> None:
    """Refuse, before any work, a path whose directory cannot hold a file: a file in the way, or a dangling name."""
    if str(path).endswith(os.sep) or path.is_dir():
        raise OutputFileError(f"cannot write {flag} {path}: it is a directory; name a file")
    target = Path(os.path.realpath(path))
    ancestor = target.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputFileError(f"cannot write {flag} {path}: {ancestor} is a file, not a directory")


def write_atomically(flag: str, path: Path, lines: Iterable[str]) -> None:
    """Write ``lines`` (each gets a newline) to ``path``; ``OutputFileError`` if it cannot be done."""
    data = "".join(f"{line}\n" for line in lines).encode("utf-8")  # every byte ready before the file is touched
    check_writable(flag, path)
    try:
        if _is_special(path):
            with path.open("wb") as handle:  # through the link: /dev/stdout stays /dev/stdout
                handle.write(data)
            return
        _replace(Path(os.path.realpath(path)), data)
    except OSError as error:
        raise OutputFileError(f"cannot write {flag} {path}: {error.strerror or error}") from None


def _is_special(path: Path) -> bool:
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except FileNotFoundError:
        return False


def _replace(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)  # replacing a file keeps its permissions
    except FileNotFoundError:
        mode = 0o666 & ~_umask()  # a new file gets what open() would have given it
    handle, temp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as temp:
            os.fchmod(temp.fileno(), mode)
            temp.write(data)
        os.replace(temp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise


def _umask() -> int:
    mask = os.umask(0o022)  # the only portable way to read it is to set it; put it straight back
    os.umask(mask)
    return mask
