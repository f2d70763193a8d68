"""The study's files under faults: a full disk while a checkpoint is written, strict JSON,
and the timings of an invocation that is cut short."""

from __future__ import annotations

import errno
import io
import json
import math
import time

import numpy as np
import pytest
import torch

from vae_zoo import storage
from vae_zoo.checkpoint import save_checkpoint
from vae_zoo.study import run as study_run
from vae_zoo.study.stages.common import strict_json, write_json


class _FullDisk(io.RawIOBase):
    """A file that takes ``room`` bytes, then fails as a full disk does."""

    def __init__(self, room: int) -> None:
        self.room = room

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.room -= len(data)
        if self.room < 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        return len(data)


def test_a_full_disk_during_a_checkpoint_raises_enospc_not_a_torch_error(tmp_path, monkeypatch):
    # torch.save straight into such a file raises RuntimeError ("unexpected pos"), which hides
    # the cause; the study can turn only an OSError into its one-line error with exit code 2.
    with pytest.raises(RuntimeError):
        torch.save({"w": torch.zeros(50_000)}, _FullDisk(100_000))
    monkeypatch.setattr(storage, "open", lambda *a, **k: _FullDisk(100_000), raising=False)
    target = tmp_path / "checkpoint.pt"
    with pytest.raises(OSError) as caught:
        save_checkpoint(target, {"model": {"w": torch.zeros(50_000)}})
    assert caught.value.errno == errno.ENOSPC
    assert not target.exists()
    assert "No space left on device" in storage.describe_os_error(caught.value)


def test_study_json_is_strict_with_null_for_undefined_numbers(tmp_path):
    data = {
        "g": float("nan"),
        "inf": np.float64(np.inf),
        "arr": np.array([1.0, np.nan]),
        "pair": (np.int64(3), -math.inf),
        "ok": 0.5,
    }
    path = tmp_path / "results.json"
    write_json(path, data)
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    # the strict parser of the standard library refuses the NaN/Infinity tokens
    loaded = json.loads(text, parse_constant=lambda token: pytest.fail(f"token {token}"))
    assert loaded == {"g": None, "inf": None, "arr": [1.0, None], "pair": [3, None], "ok": 0.5}
    with pytest.raises(TypeError, match="cannot write object"):
        strict_json({"x": object()})


def test_a_cut_short_invocation_keeps_its_finished_stages_and_time(tmp_path, monkeypatch):
    monkeypatch.setattr(study_run._InvocationTimings, "HEARTBEAT_SECONDS", 0.05)
    path = tmp_path / "timings.json"
    code = {"git_commit": "abc", "uncommitted_changes": False}
    with pytest.raises(KeyboardInterrupt):
        with study_run._InvocationTimings(path, code) as timer:
            with timer("zoo"):
                time.sleep(0.01)
            with timer("cka"):
                time.sleep(0.3)  # heartbeats record the running stage
                raise KeyboardInterrupt
    (entry,) = json.loads(path.read_text())
    assert entry["finished"] is False
    assert set(entry["stages"]) == {"zoo", "cka"}  # the stage's end is recorded as it unwinds
    assert entry["wall_seconds"] >= 0.3

    with study_run._InvocationTimings(path, code) as timer:
        with timer("zoo"):
            pass
        summary = timer.finish()
    assert summary["invocations"] == 2
    assert summary["interrupted_invocations"] == 1
    assert summary["total_wall_seconds"] >= 0.3
    assert [h["finished"] for h in json.loads(path.read_text())] == [False, True]


def test_a_killed_invocation_is_counted_from_its_last_heartbeat(tmp_path, monkeypatch):
    # a kill -9 runs no cleanup: what the heartbeat wrote last is what remains
    monkeypatch.setattr(study_run._InvocationTimings, "HEARTBEAT_SECONDS", 0.05)
    path = tmp_path / "timings.json"
    timer = study_run._InvocationTimings(path, {"git_commit": "abc"})
    timer.__enter__()
    stage = timer("transfer")
    stage.__enter__()
    time.sleep(0.4)
    timer._stop.set()  # the process dies here: the stage never ends
    timer._thread.join()
    (entry,) = json.loads(path.read_text())
    assert entry["finished"] is False and entry["stages"] == {}
    assert entry["running"]["transfer"] >= 0.2
    summary = study_run._InvocationTimings(path, {"git_commit": "abc"})
    with summary as again:
        totals = again.finish()
    assert totals["stage_seconds_total"]["transfer"] >= 0.2
    assert totals["interrupted_invocations"] == 1
