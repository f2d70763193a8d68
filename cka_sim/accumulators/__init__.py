"""The accumulators: CKA over batches of examples.

- :mod:`.streaming`: :class:`~cka_sim.StreamingCKA` and :class:`~cka_sim.StreamingCKAMatrix`,
  exact full-data CKA from centred sufficient statistics (the moments of
  :mod:`cka_sim._core.moments`), whatever the batch split;
- :mod:`.minibatch`: :class:`~cka_sim.MinibatchCKA`, the minibatch estimator of Nguyen, Raghu &
  Kornblith (2021), a different quantity;
- :mod:`.base`: the state declared once per accumulator, with reset, merge, ``state_dict`` and
  ``all_reduce`` derived from it; :mod:`.distributed`: the ``torch.distributed`` reduction;
  :mod:`.rowbuffer`: small batches gathered into blocks.
"""

from .minibatch import MinibatchCKA
from .streaming import StreamingCKA
from .streaming_matrix import StreamingCKAMatrix

__all__ = ["MinibatchCKA", "StreamingCKA", "StreamingCKAMatrix"]
