"""auxnas: auxiliary-label learning with single-task inference cost (Aux-NAS, Aux-G and baselines).

Entry points: ``auxnas.config.load_config``, ``auxnas.train.fit`` / ``evaluate``,
``auxnas.export.export_primary`` / ``load_exported``, ``auxnas.demo.run_demo``; the
building blocks are ``auxnas.backbones``, ``auxnas.methods`` (Aux-NAS: ``auxnas.methods.aux_nas``), ``auxnas.engine``,
``auxnas.tasks`` and ``auxnas.weighting``.

What the package holds: ``config`` (the schema, its checks, YAML and overrides; ``config.validate`` against the
components), ``data``, ``tasks``, ``backbones``, ``methods``, ``weighting``, ``engine`` (training), ``train`` (its
public face), ``export`` (+ ``export_options``, light enough for the command line), ``predict``, ``compare`` and
``bench`` (comparisons and benchmarks), ``recipe``, ``demo``, ``cli`` (the command line); below them ``storage``
(atomic writes, checkpoints, output folders), ``measure`` (parameters, FLOPs, latency, memory, timings),
``distributed``, ``stats``, ``delta``, ``plots`` and ``errors``.
"""

__version__ = "0.1.0"
