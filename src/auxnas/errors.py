"""The errors a user's input can cause, besides ``ConfigError`` (``auxnas.config``); importing them imports nothing
else, so that the command line can name them before it loads torch."""


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable or not an auxnas checkpoint."""


class ExportError(RuntimeError):
    """The model cannot be exported as a single-task network (a check failed)."""


class PretrainedWeightsError(RuntimeError):
    """Hub weights were asked for but cannot be had (no network and not cached)."""
