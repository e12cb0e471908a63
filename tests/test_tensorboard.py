"""TensorBoard scalars beside the JSON files: on by default, every kind of scalar, off with train.tensorboard."""

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from auxnas.config import load_config
from auxnas.train import fit

OVERRIDES = [
    "data.image_size=32", "data.num_train=40", "data.num_test=8", "data.val_fraction=0.2", "data.batch_size=8",
    "train.epochs=2", "tasks.primary=normal", "tasks.aux=[seg]", "method.name=aux_nas", "weighting.name=uncertainty",
]


def test_scalars_of_every_kind_per_epoch(tmp_path, monkeypatch):
    monkeypatch.setenv("AUXNAS_CACHE", str(tmp_path / "cache"))
    result = fit(load_config("demo", [*OVERRIDES, f"out_dir={tmp_path / 'run'}"]), progress=False)
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    expected = {"train/loss", "train/loss_normal", "train/loss_seg", "weighting/weight/seg", "val/normal/mean_angle",
                "val/seg/miou", "links/p2a/seg/0", "links/a2p/seg/0", "architecture/regulariser",
                "architecture/regulariser_weight", "lr/network/0", "lr/architecture/0"}
    assert expected <= tags, expected - tags
    angles = events.Scalars("val/normal/mean_angle")
    assert [e.step for e in angles] == [1, 2]
    for event, record in zip(angles, result.history):
        assert abs(event.value - record.val["normal"]["mean_angle"]) < 1e-4
    lrs = [e.value for e in events.Scalars("lr/network/0")]
    assert lrs[1] < lrs[0]  # the poly schedule decays


def test_tensorboard_off(tmp_path, monkeypatch):
    monkeypatch.setenv("AUXNAS_CACHE", str(tmp_path / "cache"))
    fit(load_config("demo", [*OVERRIDES, "train.epochs=1", "train.tensorboard=false", f"out_dir={tmp_path / 'run'}"]),
        progress=False)
    assert not (tmp_path / "run" / "tensorboard").exists()
