"""The study's stages, each resumable, and the one routine that runs them.

=============  =====================================================  ===================================
stage          jobs it plans                                          a job is finished when
=============  =====================================================  ===================================
zoo            one training run per (dataset, seed)                   its training run is complete
cka            one measurement per evaluation set                     its ``cka/<dataset>.npz`` verifies
transfer       claim 3's freeze-depth sweep, claim 4's transfers      its ``transfer.json`` verifies
probes         one linear probe per (target, encoder)                 ``probes.json`` verifies and has it
=============  =====================================================  ===================================

Every stage is a :class:`~vae_zoo.study.stages.runner.Stage`: it plans its jobs, says which are
finished and which files a finished job leaves; :func:`~vae_zoo.study.stages.runner.run_stage`
owns the rest, the manifest (checksums of the finished outputs, ``manifest.json``), the process
pool and the progress display. Results are written atomically (temporary file, then rename), so
a study killed at any point continues where it stopped when started again, and a truncated or
overwritten result is recomputed. Training runs resume from their last checkpoint
(:mod:`vae_zoo.train`). :class:`vae_zoo.study.pipeline.Study` is the façade that builds and
runs them.
"""
