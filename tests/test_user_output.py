"""What a user reads: each fact said once, and only where it applies."""

from test_data_folder import write_folder

from auxnas.cli import main
from auxnas.data.check import check_folder


def test_data_check_gives_a_scale_only_for_png_depth(tmp_path):
    png = check_folder(write_folder(tmp_path / "png"), progress=False)
    npy = check_folder(write_folder(tmp_path / "npy", npy=True), progress=False)
    assert png["tasks"]["depth"]["scale"] == 1000 and "scale" not in npy["tasks"]["depth"]


def test_train_says_the_labelled_training_images_once(tmp_path, capsys):
    common = ["train", "quickstart", "train.epochs=1", "train.max_steps_per_epoch=1", "data.num_train=16",
              "data.num_test=4", "data.image_size=32", "data.batch_size=8", "train.tensorboard=false"]
    for flags in ([], ["--quiet"]):
        assert main([*common, *flags, f"out_dir={tmp_path / str(len(flags))}"]) == 0
        captured = capsys.readouterr()
        assert (captured.out + captured.err).count("training images with a label") == 1


def test_train_warns_when_the_primary_stopped_learning(tmp_path, capsys):
    common = ["train", "quickstart", "train.epochs=10", "train.max_steps_per_epoch=2", "data.num_train=16",
              "data.num_test=4", "data.image_size=32", "data.batch_size=8", "train.tensorboard=false", "--quiet"]
    warning = "training loss stopped falling early"
    assert main([*common, "train.lr=1e-9", f"out_dir={tmp_path / 'frozen'}"]) == 0
    assert capsys.readouterr().out.count(warning) == 1
    assert main([*common, "train.lr=0.01", f"out_dir={tmp_path / 'learning'}"]) == 0
    assert warning not in capsys.readouterr().out
