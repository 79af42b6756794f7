"""Compare a raycell summary.csv with the seed's own code on the demo plates.

    python docs/compare_with_seed.py results/tahoe-demo/summary.csv

The reference figures are the seed's training_experiments code run on the demo plates
(train plates 1-3, test 4, 3 epochs, batch 64, fetch_factor 256, Adam 1e-3, 0 DataLoader
workers), macro F1 mean and sd over seeds 0-2 (streaming 0-1), from issue 9. A task
passes when raycell's mean is within two of the seed's standard deviations, and at
least within 0.015. Exit code 1 when a task is outside.
"""

import sys

import pandas as pd

REFERENCE = {
    "streaming": {"cell_line": (1.0, 0.0), "drug": (0.042, 0.007),
                  "moa_broad": (0.534, 0.001), "moa_fine": (0.447, 0.002)},
    "block_shuffling": {"cell_line": (1.0, 0.0), "drug": (0.551, 0.004),
                        "moa_broad": (0.559, 0.011), "moa_fine": (0.706, 0.003)},
    "random": {"cell_line": (1.0, 0.0), "drug": (0.563, 0.005),
               "moa_broad": (0.555, 0.006), "moa_fine": (0.699, 0.011)},
}


def main(path: str) -> int:
    summary = pd.read_csv(path)
    outside = 0
    print("| strategy | task | seed's code | raycell | difference | allowed |")
    print("|---|---|---|---|---|---|")
    for strategy, tasks in REFERENCE.items():
        runs = summary[summary["strategy"] == strategy]
        if runs.empty:
            print(f"no {strategy} rows in {path}", file=sys.stderr)
            return 1
        for task, (mean, sd) in tasks.items():
            ours = runs[f"{task}_macro_f1"]
            diff, allowed = ours.mean() - mean, max(2 * sd, 0.015)
            outside += abs(diff) > allowed
            spread = f"{ours.std():.3f}" if len(ours) > 1 else "-"
            print(f"| {strategy} | {task} | {mean:.3f} ± {sd:.3f} | {ours.mean():.3f} ± {spread} "
                  f"(n={len(ours)}) | {diff:+.3f} | ±{allowed:.3f} |")
    print(f"\n{outside} task(s) outside the allowance")
    return 1 if outside else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
