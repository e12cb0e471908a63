"""Regenerate the walk-through of docs/compare.md: run its commands and write their output into the page.

Writes the synthetic scenes as a folder dataset with a label of its own (``edges``), checks it, compares Aux-Head
and Aux-NAS against single-task with ``edges`` as the auxiliary task, and replaces the text between the page's
``<!-- walkthrough -->`` markers with the commands' output, ``compare.md``, the wall time and the thread count.

    python benchmarks/compare_walkthrough.py --work /tmp/walkthrough
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "compare.md"
START, END = "<!-- walkthrough:start -->", "<!-- walkthrough:end -->"


def commands(data: Path, out: Path) -> list[list[str]]:
    """The walk-through's commands, as a user types them."""
    return [
        [sys.executable, "-m", "auxnas.examples.synthetic_folder", str(data), "--num-train", "200", "--num-test", "60",
         "--missing", "0.8"],
        ["auxnas", "data", "check", str(data), "--quiet"],
        ["auxnas", "compare", "folder", f"data.root={data}", "tasks.primary=seg", "tasks.aux=[edges]",
         "data.resize=false", "data.val_fraction=0.1", "--methods", "aux_head", "aux_nas", "--seeds", "3",
         "--controls", "--out", str(out), "--quiet"],
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="an empty or new folder for the data and the runs")
    args = parser.parse_args()
    data, out = args.work / "my_scenes", args.work / "compare"
    shown = {str(data): "data/my_scenes", str(out): "runs/compare/my_scenes", sys.executable: "python"}
    blocks, start = [], time.perf_counter()
    for argv in commands(data, out):
        auxnas = [str(Path(sys.executable).parent / "auxnas"), *argv[1:]] if argv[0] == "auxnas" else argv
        done = subprocess.run(auxnas, capture_output=True, text=True, check=True)
        text = "\n".join(line for line in (done.stdout + done.stderr).splitlines() if line.strip())
        command = shlex.join(argv)
        for real, name in shown.items():
            text, command = text.replace(real, name), command.replace(real, name)
        blocks.append(f"```bash\n{command}\n```\n\n```\n{text}\n```")
    report = (out / "compare.md").read_text().replace("](compare.png)", "](figures/walkthrough-compare.png)")
    for real, name in shown.items():
        report = report.replace(real, name)
    report = "\n".join("###" + line if line.startswith("#") else line for line in report.splitlines())
    (PAGE.parent / "figures").mkdir(exist_ok=True)
    shutil.copyfile(out / "compare.png", PAGE.parent / "figures" / "walkthrough-compare.png")
    seconds = time.perf_counter() - start
    generated = "\n\n".join([
        *blocks, f"`runs/compare/my_scenes/compare.md` (the commands took {seconds:.0f} s in all on this machine, "
        f"torch threads per run: {torch.get_num_threads()}, CPU):", report.strip()])
    page = PAGE.read_text()
    head, rest = page.split(START)
    PAGE.write_text(f"{head}{START}\n{generated}\n{END}{rest.split(END, 1)[1]}")
    print(f"wrote the walk-through into {PAGE} ({seconds:.0f} s)")


if __name__ == "__main__":
    main()
