"""The private core of :mod:`cka_sim`: one pipeline that every estimator runs through.

``check`` → ``prepare`` → ``moments`` → ``ratio`` → present (``backend.present``):

- :mod:`.check` validates every argument and array once, up front, and returns normalised
  inputs; nothing below it raises ``ValueError`` for bad input.
- :mod:`.prepare` brings each layer's magnitude into range (one window per dtype) and chooses the
  centre its rows are taken about, noting whether the layer is constant.
- :mod:`.moments` forms the centred float64 sums of one batch (block by block for large CPU
  batches), merges them exactly (Chan–Golub–LeVeque) and reads the HSIC terms off them.
- :mod:`.ratio` turns HSIC terms into CKA, with NaN and a warning where it is undefined.
- :mod:`.backend` holds the array-library glue (NumPy, torch CPU/CUDA) and the output types.

Arrows point down only: ``check`` and ``prepare`` use ``backend``; ``moments`` uses ``prepare``
and ``backend``; ``ratio`` uses ``backend``.
"""
