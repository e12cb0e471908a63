"""The training engine, one module per part; ``auxnas.train`` is its public face (``fit``, ``evaluate``, ...).

* ``runtime``: seeds, device, autocast, moving batches
* ``optim``: the network and architecture optimisers and schedules
* ``loaders``: the epochs' batch pairs, evaluation loaders
* ``losses``: the task losses of one forward (and the module ``DistributedDataParallel`` wraps)
* ``parallel``: ``DataParallel``, data-parallel training's one owner, and ``Batch``, one step's batch as the steps
  see it (this process's part, the global batch's counts, the loss shares)
* ``state``: ``TrainState`` (what the steps read and the loop changes; what ``last.pt`` holds), built by
  ``build_train_state``
* ``run``: ``Run``, one run around its ``TrainState`` (what the loop and the callbacks see)
* ``steps``: ``network_step``, ``architecture_step`` and ``meta_step`` over a ``TrainState`` and a ``Batch``, and
  ``iteration``, the three on one batch (what the cost benchmark and the profile time)
* ``record``: ``EpochRecord``, one epoch of the history (what ``metrics.json``, TensorBoard and compare read)
* ``evaluation``: metrics over a loader, and of a saved run
* ``checkpoints``: checkpoint payloads and ``load_trained``
* ``run_dir``: the run directory's files and refusals
* ``callbacks``: diagnostics, TensorBoard and checkpoints hung on the loop
* ``tensorboard_log``: the TensorBoard scalars of a run
* ``fit``: ``build_run``, ``train_epoch``, ``end_epoch``, ``fit``, ``resume_run``

The engine names no method: what a method adds to training it declares on ``MultiTaskModel``
(``optimizer_groups``, ``record_key``, ``evaluation_variants``, ``monitored_parameters``, ...);
``tests/test_architecture.py`` holds it to that.
"""
