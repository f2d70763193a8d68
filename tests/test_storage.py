"""Atomic writes, checksums, the output manifest and directory locks (vae_zoo.storage)."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from vae_zoo.storage import (
    LOCK_NAME,
    DirectoryLockedError,
    Manifest,
    atomic_write,
    describe_os_error,
    lock_directory,
    write_json,
)


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing_behind(tmp_path):
    target = tmp_path / "out.json"
    write_json(target, {"version": 1})

    def full_disk(handle):
        handle.write(b"half of the new cont")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        atomic_write(target, full_disk)
    assert target.read_text() == '{\n  "version": 1\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_new_files_respect_the_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        write_json(tmp_path / "shared.json", [1, 2])
    finally:
        os.umask(previous)
    assert (tmp_path / "shared.json").stat().st_mode & 0o777 == 0o644


def test_manifest_verifies_only_recorded_unchanged_files(tmp_path):
    manifest = Manifest(tmp_path)
    result = tmp_path / "stage" / "result.bin"
    result.parent.mkdir()
    result.write_bytes(b"0123456789")
    assert not manifest.verified(result)  # present but never recorded
    manifest.record(result)
    assert manifest.verified(result)
    assert Manifest(tmp_path).verified(result)  # read back from manifest.json
    result.write_bytes(b"0123456780")  # same size, one byte overwritten
    assert not Manifest(tmp_path).verified(result)
    result.write_bytes(b"")
    assert not Manifest(tmp_path).verified(result)
    result.unlink()
    assert not Manifest(tmp_path).verified(result)


def test_a_garbled_manifest_verifies_nothing(tmp_path):
    (tmp_path / "a").write_text("x")
    Manifest(tmp_path).record(tmp_path / "a")
    (tmp_path / "manifest.json").write_text('["not", "a", "manifest"]')
    assert not Manifest(tmp_path).verified(tmp_path / "a")
    (tmp_path / "manifest.json").write_text('{"format": "vae_zoo.manifest", "files": {"a": ')
    assert not Manifest(tmp_path).verified(tmp_path / "a")


def test_a_second_lock_in_this_process_names_it_and_the_lock_is_removed_after(tmp_path):
    with lock_directory(tmp_path / "run"):
        with pytest.raises(DirectoryLockedError, match=f"process {os.getpid()} on "):
            with lock_directory(tmp_path / "run"):
                pass
    assert not (tmp_path / "run" / LOCK_NAME).exists()
    with lock_directory(tmp_path / "run"):  # free again
        pass


@pytest.mark.skipif(sys.platform == "win32", reason="no fcntl locks on Windows")
def test_a_lock_held_by_another_process_names_it_and_dies_with_it(tmp_path):
    holder = textwrap.dedent(
        f"""
        import sys, time
        from vae_zoo.storage import lock_directory
        with lock_directory({str(tmp_path)!r}):
            print("locked", flush=True)
            time.sleep(60)
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, env=env)
    try:
        assert proc.stdout.readline().strip() == b"locked"
        with pytest.raises(DirectoryLockedError, match=f"in use by process {proc.pid} on .*-c"):
            with lock_directory(tmp_path):
                pass
    finally:
        proc.send_signal(signal.SIGKILL)  # killed: no cleanup code runs
        proc.wait()
    with lock_directory(tmp_path):  # a killed holder leaves no stale lock
        pass


def test_os_errors_are_one_line_with_the_fix():
    full = describe_os_error(OSError(errno.ENOSPC, "No space left on device", "/x/y.tmp"), "--out")
    assert full.startswith(
        "No space left on device: /x/y.tmp. Free space or choose a writable --out"
    )
    assert "\n" not in full
    other = describe_os_error(FileNotFoundError("dataset mnist is missing; fix: pip install it"))
    assert other == "dataset mnist is missing; fix: pip install it"
