"""all_reduce across two gloo processes equals one process over the union of the data."""

from __future__ import annotations

import json
import multiprocessing
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
if not dist.is_available():  # pragma: no cover
    pytest.skip("torch.distributed is not available in this torch build", allow_module_level=True)

from cka_sim import MinibatchCKA, StreamingCKA, StreamingCKAMatrix, cka_matrix, linear_cka  # noqa: E402

N = 101
SPLIT = 37  # rank 0 gets rows [0, 37), rank 1 rows [37, 101): uneven on purpose


def _data():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((N, 6)) * 2 + 50
    y = np.tanh(x[:, :4] - 50) + 0.3 * rng.standard_normal((N, 4))
    z = x[:, ::2] ** 2
    return x, y, z


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)  # forked children: stay out of the parent's OpenMP pool
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        x, y, z = _data()
        lo, hi = (0, SPLIT) if rank == 0 else (SPLIT, N)
        out = {}
        for debiased in (False, True):
            acc = StreamingCKA(debiased=debiased)
            for s in range(lo, hi, 10):  # NumPy input
                acc.update(x[s : min(s + 10, hi)], y[s : min(s + 10, hi)])
            out[f"streaming_{debiased}"] = float(acc.all_reduce().compute())
            out[f"n_{debiased}"] = acc.n_examples
        mat = StreamingCKAMatrix(debiased=True)  # torch input
        for s in range(lo, hi, 16):
            e = min(s + 16, hi)
            mat.update(
                {"x": torch.tensor(x[s:e]), "z": torch.tensor(z[s:e])}, {"y": torch.tensor(y[s:e])}
            )
        out["matrix"] = mat.all_reduce().compute().values.tolist()
        mb = MinibatchCKA()
        for s in range(lo, hi, 12):
            e = min(s + 12, hi)
            if e - s >= 4:
                mb.update({"x": x[s:e], "z": z[s:e]}, {"y": y[s:e]})
        res = mb.all_reduce().compute()
        out["minibatch"] = res.values.tolist()
        out["minibatch_n"] = [mb.n_batches, mb.n_examples]
        lonely = StreamingCKA()  # only rank 1 sees data
        if rank == 1:
            lonely.update(x, y)
        out["lonely"] = float(lonely.all_reduce().compute())
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as handle:
            json.dump(out, handle)
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_equal_one_process(tmp_path):
    mp = pytest.importorskip("torch.multiprocessing")
    # fork where it exists (under a second; spawn re-imports torch in each child, ~10 s)
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    mp.start_processes(
        _worker,
        args=(2, str(tmp_path / "init"), str(tmp_path)),
        nprocs=2,
        join=True,
        start_method=method,
    )
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    x, y, z = _data()
    for out in results:
        for debiased in (False, True):
            assert out[f"n_{debiased}"] == N
            assert out[f"streaming_{debiased}"] == pytest.approx(
                linear_cka(x, y, debiased=debiased), abs=1e-10
            )
        truth = cka_matrix({"x": x, "z": z}, {"y": y}, debiased=True).values
        np.testing.assert_allclose(out["matrix"], truth, atol=1e-10)
        assert out["lonely"] == pytest.approx(linear_cka(x, y), abs=1e-12)
        # minibatch: the sums of both processes' batches, as one process feeding them all
        single = MinibatchCKA()
        for lo, hi in ((0, SPLIT), (SPLIT, N)):
            for s in range(lo, hi, 12):
                e = min(s + 12, hi)
                if e - s >= 4:
                    single.update({"x": x[s:e], "z": z[s:e]}, {"y": y[s:e]})
        np.testing.assert_allclose(out["minibatch"], single.compute().values, atol=1e-12)
        assert out["minibatch_n"] == [single.n_batches, single.n_examples]


def test_all_reduce_without_process_group_is_a_clear_error():
    if dist.is_initialized():  # pragma: no cover
        pytest.skip("a process group is already initialised")
    with pytest.raises(RuntimeError, match="init_process_group"):
        StreamingCKA().update(np.ones((3, 2)), np.ones((3, 2))).all_reduce()
