"""The recipe ablations of docs/quality.md, reproduced from one list: train each run (or resume
it where it stopped), evaluate its EMA and its live weights, then print the table.

Every run is the reference recipe at a budget a 2-core CPU affords (ch=16, batch 64, seed 0,
--ema so each run gives an EMA row and a live row) plus the options of its row. Runs and their
evaluations are resumable: a second call continues what the first left unfinished and keeps
what is done.

    python benchmarks/ablations.py --root runs/ablation             # what is missing; the table
    python benchmarks/ablations.py --root runs/ablation --jobs 2    # two runs at a time
    python benchmarks/ablations.py --root runs/ablation --table     # only the table
    python benchmarks/ablations.py --root runs/ablation --commands  # the commands, run nothing
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bigbigan.quality.metrics import PROTOCOL as PROBE_PROTOCOL

COMMON = ["--dataset", "fashion_mnist", "--ch", "16", "--batch", "64", "--sample-every", "50"]
COMMON += ["--seed", "0", "--ema"]
# Recipe A: the options of the first new shipped-model run (docs/quality.md, "The new shipped
# model"); the second adds --encoder-label-loss 1
RECIPE = ["--stochastic-encoder", "--label-dropout", "0.5", "--encoder-lr-mult", "2"]
RECIPE += ["--cbn-gain", "one_plus_gamma", "--encoder-ch", "64"]
# name -> (the table's label, the options beyond the reference recipe)
RUNS: dict[str, tuple[str, list[str]]] = {
    "reference": ("reference", []),
    "stochastic_dropout": (
        "stochastic encoder + label dropout 0.5",
        ["--stochastic-encoder", "--label-dropout", "0.5"],
    ),
    "encoder_lr2": ("encoder lr ×2", ["--encoder-lr-mult", "2"]),
    "cbn_one_plus": ("CBN 1 + γ", ["--cbn-gain", "one_plus_gamma"]),
    "lr_d_4e-4": ("lr_d 4e-4", ["--lr-d", "4e-4"]),
    "output_sn_conv": ("output SN conv layout (the old parity gap)", ["--output-sn", "conv"]),
    "encoder_ch64": ("encoder ch 64", ["--encoder-ch", "64"]),
    "stochastic_dropout_wide": (
        "stochastic encoder + label dropout 0.5 + encoder ch 64",
        ["--stochastic-encoder", "--label-dropout", "0.5", "--encoder-ch", "64"],
    ),
    "encoder_label_loss": ("E predicts y (weight 1)", ["--encoder-label-loss", "1"]),
    "recipe": (
        "recipe A: stochastic encoder + label dropout 0.5 + encoder lr ×2 + CBN 1 + γ "
        "+ encoder ch 64",
        RECIPE,
    ),
    "recipe_label_loss": (
        "recipe A + E predicts y (weight 1)",
        [*RECIPE, "--encoder-label-loss", "1"],
    ),
    "recipe_warmup": ("recipe A + encoder warm-up 500", [*RECIPE, "--encoder-warmup", "500"]),
    "recipe_warmup_label_loss": (
        "recipe A + encoder warm-up 500 + E predicts y (weight 1)",
        [*RECIPE, "--encoder-warmup", "500", "--encoder-label-loss", "1"],
    ),
}
WEIGHTS = {"ema": [], "live": ["--live-weights"]}


def bigbigan(*args: str) -> list[str]:
    return [sys.executable, "-m", "bigbigan", *args]


def trained_to(run: Path) -> int:
    """The step of the run's newest checkpoint (0: none yet)."""
    path = run / "checkpoint.json"
    return json.loads(path.read_text())["step"] if path.exists() else 0


def train_command(root: Path, name: str, steps: int) -> list[str]:
    run = root / name
    if trained_to(run):
        return bigbigan("train", "--resume", "--steps", str(steps), "--out", str(run))
    return bigbigan("train", *COMMON, *RUNS[name][1], "--steps", str(steps), "--out", str(run))


def evaluate_command(root: Path, name: str, weights: str) -> list[str]:
    run = root / name
    flags = WEIGHTS[weights]
    return bigbigan(
        "evaluate", "--checkpoint", str(run), *flags, "--out", str(run / f"eval_{weights}")
    )


def evaluation(root: Path, name: str, weights: str) -> dict[str, Any] | None:
    path = root / name / f"eval_{weights}" / "evaluation.json"
    return json.loads(path.read_text()) if path.exists() else None


def current_protocol(encoder: dict[str, Any]) -> bool:
    """Whether the probes were fitted under the current protocol (as JSON: tuples are lists)."""
    return encoder.get("probe_protocol") == json.loads(json.dumps(PROBE_PROTOCOL))


def up_to_date(result: dict[str, Any] | None, steps: int) -> bool:
    """An evaluation of the run at `steps` under the current probe protocol."""
    return result is not None and result["step"] == steps and current_protocol(result["encoder"])


def ablate(root: Path, name: str, steps: int) -> None:
    """Train `name` to `steps` (one thread, logged to NAME.log), then evaluate both weights."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with (root / f"{name}.log").open("a") as log:
        if trained_to(root / name) < steps:
            subprocess.run(
                train_command(root, name, steps), stdout=log, stderr=log, env=env, check=True
            )
        for weights in WEIGHTS:
            if not up_to_date(evaluation(root, name, weights), steps):
                subprocess.run(
                    evaluate_command(root, name, weights),
                    stdout=log,
                    stderr=log,
                    env=env,
                    check=True,
                )


def stale_protocol(encoder: dict[str, Any]) -> str:
    """A note for probes fitted under another protocol (before version 2 it was not recorded)."""
    if current_protocol(encoder):
        return ""
    return f", probe protocol v{encoder.get('probe_protocol', {'version': 1})['version']}"


def row(label: str, weights: str, result: dict[str, Any]) -> str:
    probes, encoder = result["encoder"]["probes"], result["encoder"]
    generation = result["generation"]

    def pair(key: str) -> str:
        return f"{probes[key]['logistic']:.4f} / {probes[key]['knn1']:.4f}"

    cells = [
        label,
        weights,
        str(result["step"]),
        pair("pixels"),
        pair("z"),
        f"{probes['trunk']['logistic']:.4f}",
        f"{probes['trunk_bn_crelu']['logistic']:.4f}",
        f"{generation['label_accuracy']:.4f}",
        f"{generation['fid']:.1f}",
        f"rec. MAE {encoder['reconstruction_mae']:.3f}, "
        f"rec. class {encoder['reconstruction_label_accuracy']:.3f}" + stale_protocol(encoder),
    ]
    return "| " + " | ".join(cells) + " |"


def table(root: Path) -> str:
    lines = [
        "| run (options beyond the reference) | weights | step | pixels LR / 1-NN | z LR / 1-NN "
        "| trunk LR | BN+CReLU LR | label acc. | FID | also |",
        "|---|---|---:|---|---|---:|---:|---:|---:|---|",
    ]
    for name, (label, _) in RUNS.items():
        for weights in WEIGHTS:
            result = evaluation(root, name, weights)
            if result is None:
                step = trained_to(root / name)
                lines.append(f"| {label} | {weights} | {step} | | | | | | | not evaluated |")
            else:
                lines.append(row(label, weights, result))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("runs/ablation"), help="the runs' folder")
    parser.add_argument("--steps", type=int, default=1000, help="generator/encoder steps a run")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (one thread each)")
    parser.add_argument("--only", help="comma-separated run names (default: all)")
    parser.add_argument("--table", action="store_true", help="print the table, run nothing")
    parser.add_argument("--commands", action="store_true", help="print the commands, run nothing")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(RUNS)
    unknown = sorted(set(names) - set(RUNS))
    if unknown:
        parser.error(f"--only: unknown runs {unknown}; known: {', '.join(RUNS)}")
    if args.commands:
        for name in names:
            print(" ".join(train_command(args.root, name, args.steps)))
            for weights in WEIGHTS:
                print(" ".join(evaluate_command(args.root, name, weights)))
        return
    if not args.table:
        args.root.mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(args.jobs) as pool:
            for done in [pool.submit(ablate, args.root, name, args.steps) for name in names]:
                done.result()
    print(table(args.root))


if __name__ == "__main__":
    main()
