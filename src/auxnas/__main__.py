"""``python -m auxnas ...`` and the ``auxnas`` console script: the command line of ``auxnas.cli`` (also what
``torchrun -m auxnas train ...`` runs)."""

import sys


def run() -> int:
    """Import the command line and run it on ``sys.argv``. A Ctrl-C that lands while the modules import (the first
    tenth of a second) ends in ``auxnas: interrupted`` (exit status 130), as one that lands later does in
    ``auxnas.cli.main``; so does an error that escapes after a Ctrl-C an import swallowed (torch's NumPy set-up
    clears any error, and NumPy then fails to import), not in a traceback."""
    interrupted: list[int] = []

    def on_ctrl_c(signum: int, frame: object) -> None:
        interrupted.append(signum)
        raise KeyboardInterrupt

    try:
        import signal

        signal.signal(signal.SIGINT, on_ctrl_c)
        from .cli import main

        return main()
    except BaseException as err:
        if not (interrupted or isinstance(err, KeyboardInterrupt)):
            raise
        print("auxnas: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(run())
