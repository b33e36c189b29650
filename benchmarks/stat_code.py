"""Which std code decodes closer? Relative error of the decoded dW = B A when the tokens carry an error.

A generator never reproduces tokens exactly. For each task's last trajectory checkpoint, tokenize under
each statistic code, add Gaussian noise of a given standard deviation to every cell that holds data (the
size of a generator's residual error: MSE sigma^2), decode, and measure ||dW_decoded - dW|| / ||dW||
over all modules. The noise is the same draw for both codes. Three error models: independent per cell
(averaging ~r + chunk copies of each statistic cancels most of it); shared per token (every copy of a
statistic off by the same amount, as a generator's systematic error is); and shared on the std statistic
only (values and mean exact), which isolates what the std code decides. Median and worst task.

    python -m benchmarks.stat_code --trajectories runs/trajectories
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from degaml.generator.trajectories import TrajectoryManifest, load_checkpoint
from degaml.lora_tokens import STAT_CODES, TokenLayout, detokenize, tokenize
from degaml.models import LoraGeometry, delta_relative_error


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trajectories", type=Path, default=Path("runs/trajectories"))
    parser.add_argument("--sigmas", default="0.01,0.03,0.1")
    parser.add_argument("--chunk", type=int, default=128)
    args = parser.parse_args()
    sigmas = [float(s) for s in args.sigmas.split(",")]
    states, layouts = [], {}
    for task_dir in sorted(p for p in args.trajectories.iterdir() if p.is_dir()):
        manifest = TrajectoryManifest.load(task_dir)
        states.append(load_checkpoint(manifest.checkpoint_paths(task_dir)[-1]))
        if not layouts:
            geometry = LoraGeometry.from_dict(manifest.geometry)
            layouts = {code: TokenLayout.from_geometry(geometry, args.chunk, code) for code in STAT_CODES}
    layout = next(iter(layouts.values()))
    mask, r, c = layout.padding_mask(), layout.geometry.rank, layout.chunk
    print(f"{len(states)} adapters (last checkpoint of each trajectory); relative error of the decoded dW\n")
    print("| error model | noise sigma | " + " | ".join(f"{c}: median | {c}: worst" for c in STAT_CODES) + " |")
    print("|---" * (2 * len(STAT_CODES) + 2) + "|")
    for model in ("independent", "shared per token", "shared, std only"):
        for sigma in sigmas:
            errors: dict[str, list[float]] = {code: [] for code in STAT_CODES}
            for i, state in enumerate(states):
                g = torch.Generator().manual_seed(i)
                noise = torch.randn(mask.shape, generator=g) * sigma
                if model != "independent":  # one error per token and statistic, on every copy of it
                    mean_err, std_err = torch.randn(2, len(mask), 1, generator=g) * sigma
                    noise[:, r, :], noise[:, :r, c] = mean_err, mean_err
                    noise[:, r + 1, :], noise[:, :r, c + 1] = std_err, std_err
                if model == "shared, std only":
                    std_rows = noise.clone()
                    noise.zero_()
                    noise[:, r + 1, :], noise[:, :r, c + 1] = std_rows[:, r + 1, :], std_rows[:, :r, c + 1]
                noise = noise * mask
                for code, lay in layouts.items():
                    errors[code].append(delta_relative_error(detokenize(tokenize(state, lay) + noise, lay), state))
            cells = [f"{statistics.median(errors[code]):.3f} | {max(errors[code]):.3f}" for code in STAT_CODES]
            print(f"| {model} | {sigma} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
