"""The seed experiments with bitops layers: AND, NAND, XOR and the 1-bit adder.

Each task keeps its seed notebook's exact network, loss, optimizer and budget, and swaps
``nn.Linear`` for ``bitops.nn.BitLinear`` (ternary or binary weights, int8 activations).
Accuracy is measured after training in ``eval()`` mode, i.e. on the packed integer kernels,
with outputs thresholded at 0.5 (a sample counts only if all its outputs are right).

    python examples/logic_gates.py            # table over 10 seeds, saved to examples/results/
    python examples/logic_gates.py --seeds 3  # quicker
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

import bitops.nn as bnn

try:
    from tqdm import tqdm
except ImportError:  # tqdm is optional
    def tqdm(iterable, **kwargs):
        return iterable

GATE_INPUTS = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
MODES = {  # column name -> linear layer factory
    "float": lambda i, o: nn.Linear(i, o),
    "ternary": lambda i, o: bnn.BitLinear(i, o, weight="ternary", act_bits=8),
    "binary": lambda i, o: bnn.BitLinear(i, o, weight="binary", act_bits=8),
}


@dataclass
class Task:
    name: str
    setting: str  # where the setting comes from, for the table
    build: Callable  # (linear factory, hidden width) -> model
    hidden: int
    data: Callable  # (generator) -> (x, y) training set
    loss: Callable
    optimizer: Callable  # (parameters) -> optimizer
    steps: int
    logits: bool  # the model outputs logits (threshold at 0) rather than values (threshold at 0.5)


def gate(outputs):
    y = torch.tensor(outputs, dtype=torch.float32).reshape(4, 1)
    return lambda gen: (GATE_INPUTS, y)


def adder_data(gen, samples=1000):
    """Seed 002's data set: 1000 random pairs of bits (a, b) -> (carry, sum)."""
    x = torch.randint(0, 2, (samples, 2), generator=gen).float()
    total = x.sum(dim=1)
    y = torch.stack([(total == 2).float(), (total == 1).float()], dim=1)
    return x, y


def mlp(hidden_act, out_act=None):
    def build(linear, hidden):
        layers = [linear(2, hidden), hidden_act(), linear(hidden, 1)]
        return nn.Sequential(*layers, *([out_act()] if out_act else []))
    return build


def adder(linear, hidden):
    return nn.Sequential(linear(2, hidden), nn.ReLU(), linear(hidden, 2))


TASKS = {
    "AND": Task("AND", "seed 000: 2-32-1 ReLU, sigmoid, BCELoss, AdamW lr 1e-3, 1000 steps",
                mlp(nn.ReLU, nn.Sigmoid), 32, gate([0, 0, 0, 1]), nn.BCELoss(),
                lambda p: torch.optim.AdamW(p, lr=1e-3), 1000, logits=False),
    "NAND": Task("NAND", "seed 003: 2-1 single layer, BCEWithLogits (sum), SGD lr 0.5, 100 steps",
                 lambda linear, hidden: nn.Sequential(linear(2, 1)), 0, gate([1, 1, 1, 0]),
                 nn.BCEWithLogitsLoss(reduction="sum"), lambda p: torch.optim.SGD(p, lr=0.5), 100, logits=True),
    "XOR": Task("XOR", "seed 003: 2-2-1 sigmoid, BCEWithLogits (sum), SGD lr 0.5, 1000 steps",
                mlp(nn.Sigmoid), 2, gate([0, 1, 1, 0]), nn.BCEWithLogitsLoss(reduction="sum"),
                lambda p: torch.optim.SGD(p, lr=0.5), 1000, logits=True),
    "XOR, 16 hidden": Task("XOR, 16 hidden", "as XOR, hidden layer 2 -> 16 (tiny ternary layers lose units: see below)",
                           mlp(nn.Sigmoid), 16, gate([0, 1, 1, 0]), nn.BCEWithLogitsLoss(reduction="sum"),
                           lambda p: torch.optim.SGD(p, lr=0.5), 1000, logits=True),
    "adder": Task("adder", "seed 002: 2-3-2 ReLU, MSE, SGD lr 0.1, 1000 steps, 1000 samples",
                  adder, 3, adder_data, nn.MSELoss(), lambda p: torch.optim.SGD(p, lr=0.1), 1000, logits=False),
}


def run(task: Task, mode: str, seed: int, hidden: int | None = None) -> float:
    """Trains one model; returns its accuracy on the truth table, measured in eval() mode."""
    torch.manual_seed(seed)
    model = task.build(MODES[mode], task.hidden if hidden is None else hidden)
    x, y = task.data(torch.Generator().manual_seed(seed))
    optimizer = task.optimizer(model.parameters())
    for _ in range(task.steps):
        optimizer.zero_grad()
        loss = task.loss(model(x), y)
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        table_x, table_y = _adder_table() if task.name == "adder" else task.data(None)
        predicted = model(table_x) > (0.0 if task.logits else 0.5)
    return (predicted == table_y.bool()).all(dim=1).float().mean().item()


def _adder_table():
    return GATE_INPUTS, torch.tensor([[0.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--widths", type=int, nargs="*", default=[3, 4, 6, 8, 16, 32],
                        help="hidden widths for the adder sweep")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "logic_gates.md"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    seeds = range(args.seeds)
    started = time.time()

    jobs = [(t, m) for t in TASKS for m in MODES]
    results = {}
    for task_name, mode in tqdm(jobs, desc="tasks", file=sys.stderr):
        results[task_name, mode] = [run(TASKS[task_name], mode, s) for s in seeds]

    sweep = {}
    for width in tqdm(args.widths, desc="adder widths", file=sys.stderr):
        for mode in MODES:
            sweep[width, mode] = [run(TASKS["adder"], mode, s, hidden=width) for s in seeds]

    report = format_report(results, sweep, args.seeds, time.time() - started)
    print(report)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(report)


NOTES = [
    "- XOR at the seed's exact 2-2-1 size is fragile even in float (the seed notebook shows a 2-2-1 run",
    "  stuck at 0.5 too). With 1- or 1.58-bit weights it mostly settles at 75%: a layer of 4 weights has",
    "  only a few quantized configurations, training lands in a sign/zero pattern that fits 3 of the 4",
    "  rows, and the STE gradient at that pattern does not carry the latent weights across a quantization",
    "  threshold to a pattern that fits all 4 (measured: 5000 steps instead of 1000 still give 1/10 for",
    "  both ternary and binary). Ternary adds dead units: a unit whose outgoing weight rounds to 0 gets",
    "  no gradient (the STE backward is dL/dh = dL/dy @ (scale * Wq)); after 5000 steps 5 of the 10 ternary",
    "  runs have one.",
    "  Width gives the quantizer redundancy: with 16 hidden units (same loss, optimizer and budget) every",
    "  seed learns XOR.",
    "- The adder: the seed's 2-3-2 is at the edge of capacity even in float; the sweep shows the",
    "  smallest width that learns it in every seed for each weight type.",
]


def _cell(accs) -> str:
    perfect = sum(a == 1.0 for a in accs)
    return f"{perfect}/{len(accs)} ({100 * sum(accs) / len(accs):.0f}%)"


def format_report(results, sweep, n_seeds, seconds) -> str:
    lines = [
        "# Logic gates with bitops layers",
        "",
        f"Seeds 0..{n_seeds - 1}. Each cell: runs that reached 100% accuracy / runs, then the mean accuracy.",
        "Accuracy is measured after training in eval() mode (packed integer kernels), outputs thresholded",
        "at 0.5. float = nn.Linear; ternary = BitLinear(weight='ternary', act_bits=8) (W1.58A8);",
        "binary = BitLinear(weight='binary', act_bits=8) (W1A8). Generated by examples/logic_gates.py.",
        "",
        "| task | setting (from the seed) | " + " | ".join(MODES) + " |",
        "| --- | --- | " + " | ".join("---" for _ in MODES) + " |",
    ]
    for name, task in TASKS.items():
        cells = " | ".join(_cell(results[name, m]) for m in MODES)
        lines.append(f"| {name} | {task.setting} | {cells} |")
    lines += ["", "## The adder (seed 002 setting) by hidden width", "",
              "| hidden width | " + " | ".join(MODES) + " |", "| --- | " + " | ".join("---" for _ in MODES) + " |"]
    widths = sorted({w for w, _ in sweep})
    for width in widths:
        lines.append(f"| {width} | " + " | ".join(_cell(sweep[width, m]) for m in MODES) + " |")
    lines.append("")
    for mode in MODES:
        reached = [w for w in widths if all(a == 1.0 for a in sweep[w, mode])]
        lines.append(f"- {mode}: smallest width with 100% in every seed: {reached[0] if reached else 'none of ' + str(widths)}")
    lines += ["", "## Notes", "", *NOTES, "", f"Total time: {seconds:.0f} s on CPU, 1 thread.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
