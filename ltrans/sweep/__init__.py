"""Sweeps: Ray Tune schedules bridge trials, Optuna decides which to run (DESIGN.md section 4).

``spec``      sweep YAML -> validated frozen ``SweepSpec`` (no Ray, no Optuna: fast CLI errors)
``searcher``  our Tune ``Searcher`` around an Optuna study stored in ``<run>/optuna.db``
``trainable`` the Tune function trainables: ``run_trial`` with intermediate reports, or a pack of them
``packing``   packs on the one path: ``run_pack`` (rows as run_trial's), ``Rungs`` (ASHA inside packs)
``pack_searcher`` the searcher of packed sweeps (``pack: K``): each member one Optuna trial
``results``   the run folder: ledger, ``trials.parquet``, ``curves.parquet``, provenance
``runner``    prepare stage, ``ray.init``, the Tuner, resume

This package is the only place in ltrans that imports ray; ``import ltrans.sweep`` itself does not.
"""
