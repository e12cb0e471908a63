"""auxnas: auxiliary-label learning with single-task inference cost (Aux-NAS, Aux-G and baselines).

Entry points: ``auxnas.config.load_config``, ``auxnas.train.fit`` / ``evaluate``,
``auxnas.export.export_primary`` / ``load_exported``, ``auxnas.demo.run_demo``; the
building blocks are ``auxnas.backbones``, ``auxnas.methods`` (Aux-NAS: ``auxnas.methods.aux_nas``), ``auxnas.engine``,
``auxnas.tasks`` and ``auxnas.weighting``.
"""

__version__ = "0.1.0"
