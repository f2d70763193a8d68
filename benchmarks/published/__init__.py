"""The field's published sanity checks of CKA, reproduced: ``python -m benchmarks.published``.

1. Layer identification with Tiny-10 CNNs and MLPs (Kornblith et al. 2019, Table 2;
   :mod:`.layer_id`, :mod:`.nets`, :mod:`.training`).
2. Bias of linear CKA at ``p >> n`` (Murphy et al. 2024), 3. subset translation (Davari et al.
   2023), 4. RBF to linear CKA (Alvarez 2021), 5. the triangle inequality of angular distances
   (Williams et al. 2021): :mod:`.checks`.

Results go to ``benchmarks/results/published-<date>.{json,md}``; ``docs/validation.md`` sets
them beside the published figures.
"""
