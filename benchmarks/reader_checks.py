"""What checking the values of dataset files costs: images per second of each real-dataset reader with the checks
run on every read and with them skipped (as after an image's first read), on the test fixtures of each reader.

One torch thread, no augmentation. Two measurements, both alternating checked and unchecked reads so that a shared
machine's load hits both alike: a DataLoader with batches of 8 and no workers, passes of half a second each, the
median of ``--rounds`` counting; and each image read alone, the fastest of ``--rounds`` reads counting (a shared
machine's load only ever adds time, so the fastest read is the closest to the reader's own cost).

    OMP_NUM_THREADS=1 python benchmarks/reader_checks.py [--size test|full] [--rounds 9]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the fixture writers of the tests

from test_data_folder import write_folder  # noqa: E402
from test_data_nddr import write_nddr  # noqa: E402
from test_data_taskonomy import write_taskonomy  # noqa: E402
from test_readers import write_dataset  # noqa: E402

from auxnas.config import DataConfig  # noqa: E402
from auxnas.data.readers import reader  # noqa: E402

#: name -> (data.name, writer(root, full), image_size); full: the datasets' own resolutions
READERS = {
    "nyuv2_mtan": ("nyuv2_mtan", lambda r, full: write_dataset(r, "nyuv2_mtan", 16, 1, (288, 384) if full else
                                                                  (24, 32)), 64),
    "cityscapes": ("cityscapes", lambda r, full: write_dataset(r, "cityscapes", 16, 1, (128, 256) if full else
                                                                  (24, 32)), 64),
    "nyuv2_nddr": ("nyuv2_nddr", lambda r, full: write_nddr(r, 16, 1, size=(480, 640) if full else (24, 32)), 64),
    "taskonomy": ("taskonomy", lambda r, full: write_taskonomy(r, size=512 if full else 16), 256),
    "folder (png)": ("folder", lambda r, full: write_folder(
        r, {"train": 16, "test": 1}, sizes={i: (480, 640) for i in range(16)} if full else None), 64),
    "folder (npy)": ("folder", lambda r, full: write_folder(
        r, {"train": 16, "test": 1}, npy=True, sizes={i: (480, 640) for i in range(16)} if full else None), 64),
}


def rate(dataset, checked: bool, seconds: float = 0.5) -> float:
    """Images per second over passes through ``dataset`` of at least ``seconds`` in all, its values checked on every
    read or never."""
    loader = DataLoader(dataset, batch_size=8, num_workers=0)
    images, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        dataset.checked[:] = not checked
        for batch in loader:
            dataset.checked[:] = not checked
            images += len(batch["image"])
    return images / (time.perf_counter() - start)


def fastest(dataset, repeats: int) -> dict[bool, float]:
    """Checked / unchecked -> seconds per image, each image's fastest of ``repeats`` reads."""
    total = {True: 0.0, False: 0.0}
    for i in range(len(dataset)):
        best = {True: float("inf"), False: float("inf")}
        for _ in range(repeats):
            for checked in (True, False):
                dataset.checked[:] = not checked
                start = time.perf_counter()
                dataset[i]
                best[checked] = min(best[checked], time.perf_counter() - start)
        for checked in total:
            total[checked] += best[checked] / len(dataset)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=("test", "full"), default="full")
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"| reader ({args.size} size) | DataLoader images/s, checked / unchecked | time added | fastest read, ms, "
          "checked / unchecked | time added |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for label, (name, write, image_size) in READERS.items():
            root = write(Path(tmp) / label.replace(" ", "_"), args.size == "full")
            cfg = DataConfig(name=name, root=str(root), image_size=image_size if args.size == "full" else 16)
            train = reader(name).open_splits(cfg)[0]
            rate(train, True)  # warm-up: page cache, allocator
            rates: dict[bool, list[float]] = {True: [], False: []}
            for _ in range(args.rounds):
                for checked in (True, False):
                    rates[checked].append(rate(train, checked))
            on, off = statistics.median(rates[True]), statistics.median(rates[False])
            best = fastest(train, args.rounds)
            print(f"| {label} | {on:.0f} / {off:.0f} | {100 * (off / on - 1):+.1f} % | {1e3 * best[True]:.2f} / "
                  f"{1e3 * best[False]:.2f} | {100 * (best[True] / best[False] - 1):+.1f} % |", flush=True)


if __name__ == "__main__":
    main()
