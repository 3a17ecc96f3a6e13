"""Hyperparameter searches: everything kfitx adds to keras-tuner, in one package.

* :mod:`~kfitx.search.tuner` -- the bridge: ``StrategyHyperModel``, the strategy as a
  hyperparameter, configuration errors made fatal (public face: :mod:`kfitx.tuner`);
* :mod:`~kfitx.search.tunable` -- ``Tunable`` option values computed from a trial's ``hp``;
* :mod:`~kfitx.search.space` -- a search space as a compact table (public face: :mod:`kfitx.tuner`);
* :mod:`~kfitx.search.pruning` -- median pruning across workers;
* :mod:`~kfitx.search.resume` -- a trial restarted after a kill resumes from its last epoch;
* :mod:`~kfitx.search.trial_record` -- ``kfitx-trial.json``, what each trial cost;
* :mod:`~kfitx.search.measure` -- the ``kfitx_fit`` wrapper measuring each trial;
* :mod:`~kfitx.search.report` -- ``kfitx report`` (public face: :mod:`kfitx.report`);
* :mod:`~kfitx.search.launch` -- ``kfitx tune``: chief and worker processes (public face: :mod:`kfitx.tune`).

Importing this package imports neither TensorFlow nor keras-tuner.
"""
