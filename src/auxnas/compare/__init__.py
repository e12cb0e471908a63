"""Will my auxiliary labels help? Train several methods on one config over seeds and compare them with single-task
(``auxnas compare``; the call is ``auxnas.compare.comparison.run_comparison``).

``rows`` names what trains (no torch), ``plan`` turns rows into runs with equal network updates and finds what
depends on what, ``execute`` trains them (in this process or a pool of spawned ones, with the trainer it is
given), ``records`` holds a run's identity and reads finished runs back, ``table`` holds the statistics,
``profile`` the cost of a training step, ``report`` the verdicts and the recommendation, ``comparison`` puts them
together. ``auxnas bench accuracy`` runs its settings through the same ``plan``, ``execute`` and ``table``.
"""
