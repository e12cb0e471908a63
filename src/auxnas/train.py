"""Training and evaluating a run: the public entry points of the engine (``auxnas.engine``).

``fit`` trains a config (one loop for every method, model selection on a validation split), ``resume_run``
continues an interrupted run, ``evaluate`` measures a saved one and ``load_trained`` rebuilds its model. The
parts they are made of (the steps, the run state, the loaders, the callbacks) are in ``auxnas.engine``.
"""

from .engine.callbacks import Callback
from .engine.checkpoints import load_trained
from .engine.evaluation import evaluate
from .engine.fit import RunResult, fit, resume_run
from .engine.run_dir import RunDirectoryError

__all__ = ["Callback", "RunDirectoryError", "RunResult", "evaluate", "fit", "load_trained", "resume_run"]
