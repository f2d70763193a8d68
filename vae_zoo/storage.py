"""Files that survive faults: atomic writes, checksums, an output manifest, directory locks.

Every file :mod:`vae_zoo` writes goes through :func:`atomic_path`: the content is written to a
temporary name in the same directory, flushed to disk, then renamed over the target with
:func:`os.replace`. A process killed mid-write, a full disk (``ENOSPC``) or an exception leaves the
previous file intact and no temporary file behind. New files get the usual permissions
(``0o666`` minus the umask), so a shared cache stays readable by its group.

A :class:`Manifest` records the SHA-256 of each finished output of a directory, so a resumed run
recomputes an output that was truncated or overwritten instead of trusting that it exists.

:func:`lock_directory` takes an exclusive advisory lock on a run directory (``fcntl.flock``): a
second process that tries to use the same directory fails at once with a
:class:`DirectoryLockedError` that names the holding process. The lock dies with its process, so
a killed run never leaves a stale lock. On platforms without ``fcntl`` (Windows) no lock is
taken.
"""

from __future__ import annotations

import datetime as _dt
import errno
import hashlib
import json
import os
import socket
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "LOCK_NAME",
    "MANIFEST_NAME",
    "DirectoryLockedError",
    "Manifest",
    "atomic_path",
    "atomic_write",
    "describe_os_error",
    "lock_directory",
    "sha256_file",
    "write_json",
]

LOCK_NAME = ".lock"
MANIFEST_NAME = "manifest.json"
_MANIFEST_FORMAT = "vae_zoo.manifest"


class DirectoryLockedError(RuntimeError):
    """Another process holds the lock of a run or study directory."""


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; once the caller has written it, move it there.

    The caller creates the temporary file (``open(tmp, "xb")``, ``np.lib.format.open_memmap``,
    ...). On a normal exit it is flushed to disk and renamed over ``path`` with
    :func:`os.replace`; on any exception it is removed and ``path`` is left as it was.

    Parameters
    ----------
    path : str or os.PathLike
        The final file; its directory is created if needed.

    Yields
    ------
    pathlib.Path
        The temporary path to write, in the same directory.

    Raises
    ------
    OSError
        If the directory cannot be created, or the file cannot be flushed or renamed (a full
        disk, a read-only place); ``path`` keeps its previous content.

    References
    ----------
    The Open Group Base Specifications Issue 7 (POSIX.1-2017): ``rename()`` replaces the target
    atomically, and ``fsync()`` makes the data durable before it does.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from vae_zoo.storage import atomic_path
    >>> with tempfile.TemporaryDirectory() as root:
    ...     target = pathlib.Path(root) / "out.txt"
    ...     with atomic_path(target) as tmp:
    ...         _ = tmp.write_text("done")
    ...     target.read_text()
    'done'
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` atomically: ``write(f)`` into a temporary binary file, then rename it.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write.
    write : callable
        Called with the open binary file; writes the content.

    Raises
    ------
    OSError
        As :func:`atomic_path`; an exception from ``write`` also propagates, and in both cases
        ``path`` keeps its previous content.

    References
    ----------
    The Open Group Base Specifications Issue 7 (POSIX.1-2017): ``rename()`` replaces the target
    atomically, and ``fsync()`` makes the data durable before it does.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from vae_zoo.storage import atomic_write
    >>> with tempfile.TemporaryDirectory() as root:
    ...     target = pathlib.Path(root) / "out.bin"
    ...     atomic_write(target, lambda f: f.write(b"abc"))
    ...     target.read_bytes()
    b'abc'
    """
    with atomic_path(path) as tmp:
        with open(tmp, "xb") as handle:
            write(handle)


def write_json(
    path: str | os.PathLike[str],
    obj: Any,
    *,
    sort_keys: bool = False,
    default: Callable[[Any], Any] | None = None,
    allow_nan: bool = True,
) -> None:
    """Write ``obj`` as indented JSON (with a final newline) to ``path`` atomically.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write.
    obj : Any
        A JSON-serialisable object.
    sort_keys : bool, default False
        Sort the keys of every dict.
    default : callable, optional
        Converts objects JSON cannot serialise, as in :func:`json.dumps`.
    allow_nan : bool, default True
        Write non-finite floats as the ``NaN``/``Infinity`` tokens Python reads back; False
        refuses them (strict JSON, RFC 8259, has no such tokens).

    Raises
    ------
    TypeError
        If ``obj`` is not JSON-serialisable (nothing is written).
    ValueError
        If ``allow_nan`` is False and ``obj`` holds a non-finite float (nothing is written).
    OSError
        As :func:`atomic_path`.

    References
    ----------
    The Open Group Base Specifications Issue 7 (POSIX.1-2017): ``rename()`` replaces the target
    atomically, and ``fsync()`` makes the data durable before it does.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from vae_zoo.storage import write_json
    >>> with tempfile.TemporaryDirectory() as root:
    ...     target = pathlib.Path(root) / "a.json"
    ...     write_json(target, {"b": 1, "a": 2}, sort_keys=True)
    ...     print(target.read_text(), end="")
    {
      "a": 2,
      "b": 1
    }
    """
    text = json.dumps(obj, indent=2, sort_keys=sort_keys, default=default, allow_nan=allow_nan)
    text += "\n"
    atomic_write(path, lambda handle: handle.write(text.encode()))


#: errno values that mean "this place cannot be written": the fix is space or another directory.
_NOT_WRITABLE = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR}


def describe_os_error(err: OSError, option: str = "the output directory") -> str:
    """One line for a failed file operation, for a command-line error message.

    For a full disk, a read-only or unwritable place it says what to do (free space, or choose
    another ``option``) and that running the same command again resumes; other errors are
    described as they are.

    Parameters
    ----------
    err : OSError
        The error caught.
    option : str, default "the output directory"
        What the user can change, named in the advice (e.g. ``"--out directory"``).

    Returns
    -------
    str
        One line, without a trailing period.

    Raises
    ------
    AttributeError
        If ``err`` is not an :class:`OSError` (it has no ``errno``).

    References
    ----------
    The Open Group Base Specifications Issue 7 (POSIX.1-2017), ``<errno.h>``: ``ENOSPC``,
    ``EDQUOT``, ``EROFS``, ``EACCES``, ``EPERM`` and ``ENOTDIR`` are the "cannot write here"
    errors.

    Examples
    --------
    >>> import errno
    >>> from vae_zoo.storage import describe_os_error
    >>> err = OSError(errno.ENOSPC, "No space left on device", "/runs/a")
    >>> describe_os_error(err, "--out directory")
    'No space left on device: /runs/a. Free space or choose a writable --out directory, then run the same command again: finished work is kept'
    """
    where = f": {err.filename}" if err.filename else ""
    reason = err.strerror or str(err)
    if err.errno in _NOT_WRITABLE:
        return (
            f"{reason}{where}. Free space or choose a writable {option}, then run the same "
            "command again: finished work is kept"
        )
    return f"{reason}{where}" if err.strerror else str(err)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Return the hex SHA-256 of the file at ``path``, read in 1 MiB blocks.

    Parameters
    ----------
    path : str or os.PathLike
        The file.

    Returns
    -------
    str
        64 lowercase hexadecimal digits.

    Raises
    ------
    OSError
        If the file cannot be read (``FileNotFoundError`` when it is missing).

    References
    ----------
    NIST (2015), *Secure Hash Standard (SHS)*, FIPS PUB 180-4.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from vae_zoo.storage import sha256_file
    >>> with tempfile.TemporaryDirectory() as root:
    ...     path = pathlib.Path(root) / "empty"
    ...     path.touch()
    ...     sha256_file(path)[:16]
    'e3b0c44298fc1c14'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Manifest:
    """SHA-256 of the finished outputs under ``root``, kept in ``root/manifest.json``.

    A stage calls :meth:`record` after writing an output and, on resume, skips the work only
    when :meth:`verified` holds: the file exists, was recorded, and still has its checksum. A
    missing or unreadable manifest verifies nothing, so its outputs are recomputed.

    Parameters
    ----------
    root : str or os.PathLike
        The directory whose outputs are recorded (paths are stored relative to it).

    Raises
    ------
    ValueError
        From :meth:`record` or :meth:`verified`, for a path outside ``root``.

    References
    ----------
    NIST (2015), *Secure Hash Standard (SHS)*, FIPS PUB 180-4.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from vae_zoo.storage import Manifest
    >>> with tempfile.TemporaryDirectory() as root:
    ...     output = pathlib.Path(root) / "result.txt"
    ...     _ = output.write_text("42")
    ...     Manifest(root).record(output)
    ...     before = Manifest(root).verified(output)  # a new Manifest reads manifest.json
    ...     _ = output.write_text("truncated")
    ...     before, Manifest(root).verified(output)
    (True, False)
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.path = self.root / MANIFEST_NAME
        self._files = self._read()

    def _read(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("format") != _MANIFEST_FORMAT:
            return {}
        files = data.get("files")
        if not isinstance(files, dict):
            return {}
        return {str(name): str(digest) for name, digest in files.items()}

    def _key(self, path: str | os.PathLike[str]) -> str:
        return Path(path).resolve().relative_to(self.root.resolve()).as_posix()

    def record(self, path: str | os.PathLike[str]) -> None:
        """Record the current checksum of a file under ``root``, and save the manifest.

        Parameters
        ----------
        path : str or os.PathLike
            The finished output.
        """
        self._files[self._key(path)] = sha256_file(path)
        write_json(
            self.path,
            {"format": _MANIFEST_FORMAT, "version": 1, "files": self._files},
            sort_keys=True,
        )

    def recorded(self, path: str | os.PathLike[str]) -> str | None:
        """The checksum recorded for a file, or None if it was never recorded.

        Parameters
        ----------
        path : str or os.PathLike
            The output.

        Returns
        -------
        str or None
            The SHA-256 in hexadecimal, as :func:`sha256_file` gave it when recorded.
        """
        return self._files.get(self._key(path))

    def damaged(self, path: str | os.PathLike[str]) -> bool:
        """Tell whether a file was recorded but is now missing, unreadable or changed.

        A file that was never recorded is not damaged, only unfinished.

        Parameters
        ----------
        path : str or os.PathLike
            The output to check.

        Returns
        -------
        bool
            True for a recorded file that no longer has its checksum.
        """
        return self.recorded(path) is not None and not self.verified(path)

    def verified(self, path: str | os.PathLike[str]) -> bool:
        """Tell whether a file exists and still has the checksum recorded for it.

        Parameters
        ----------
        path : str or os.PathLike
            The output to check.

        Returns
        -------
        bool
            False for a file never recorded, missing, unreadable or changed.
        """
        expected = self._files.get(self._key(path))
        if expected is None:
            return False
        try:
            return sha256_file(path) == expected
        except OSError:
            return False


@contextmanager
def lock_directory(directory: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold an exclusive lock on ``directory`` (created if needed) for the ``with`` block.

    The lock is a ``.lock`` file in the directory, locked with ``fcntl.flock`` and holding the
    owner's process id, host, command and start time; it is removed on release.

    Parameters
    ----------
    directory : str or os.PathLike
        The run or study directory.

    Yields
    ------
    pathlib.Path
        The directory, locked until the ``with`` block ends.

    Raises
    ------
    DirectoryLockedError
        At once, when another process (or another open lock in this one) holds the directory.

    References
    ----------
    Linux man-pages, ``flock(2)``: an advisory lock that is released when its process exits.

    Examples
    --------
    >>> import tempfile
    >>> from vae_zoo.storage import DirectoryLockedError, lock_directory
    >>> with tempfile.TemporaryDirectory() as root:
    ...     with lock_directory(root):
    ...         try:
    ...             with lock_directory(root):
    ...                 pass
    ...         except DirectoryLockedError:
    ...             print("in use")
    in use
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_NAME
    if fcntl is None:  # pragma: no cover - Windows
        yield directory
        return
    fd = _acquire(path, directory)
    try:
        owner = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
            "since": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(owner).encode())
        yield directory
    finally:
        path.unlink(missing_ok=True)  # while still locked, see _acquire
        os.close(fd)


def _acquire(path: Path, directory: Path) -> int:
    """Open and lock ``path``; retry when its holder removed it between our open and lock."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe_holder(fd)
            os.close(fd)
            raise DirectoryLockedError(
                f"{directory} is in use by {holder}: wait for it to finish or stop it, or use "
                "another directory"
            ) from None
        try:
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        if current is not None and os.path.samestat(os.fstat(fd), current):
            return fd
        os.close(fd)


def _describe_holder(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    try:
        owner = json.loads(os.read(fd, 1 << 16).decode())
        return (
            f"process {owner['pid']} on {owner['host']} ({owner['command']}, since "
            f"{owner['since']})"
        )
    except (ValueError, KeyError, TypeError):
        return "another process (it has not written its id yet)"
