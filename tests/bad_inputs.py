"""Shared by the hostile-input tests (``test_bad_inputs_*.py``): the CLI's one-line error and a run of seconds."""

from auxnas.cli import main


def one_line_error(capsys, argv) -> str:
    """Run the CLI on ``argv``; it must fail with exit status 2 and one line on stderr, no traceback."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("auxnas") and "\n" not in err and "Traceback" not in err, err
    return err


#: a run of seconds, should a bad value be let through
SMALL = ["data.image_size=32", "data.num_train=16", "data.num_test=8", "data.batch_size=8", "train.epochs=1",
         "train.max_steps_per_epoch=1"]
TRAIN = ["train", "quickstart", *SMALL, "--quiet"]
