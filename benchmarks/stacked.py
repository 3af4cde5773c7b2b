"""Stacked training vs the same runs trained one after another: a ratio measured in one run.

N fine-tuning runs of the demo's shape (the quick model at 2 blocks, fine-tuning batches of 48 with a planted
correlation, answer loss, each run its own seed and lr) trained (i) one after the other by the one training loop
and (ii) as one stack (training/stacked.py). Prints, per N, (i)'s time / (ii)'s time: above 1, stacking wins.
Rounds alternate the two, so drifting machine load hits both alike.

    python benchmarks/stacked.py [--n 1 2 4 8] [--steps 30] [--rounds 3] [--blocks 2] [--threads 1] [--device cuda]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from wrapperlab.data.finetune_data import FinetuneData, FinetuneDataConfig
from wrapperlab.data.samples import PCFGData
from wrapperlab.models.gpt import GPT
from wrapperlab.settings.pcfg.configs import pretrain_config
from wrapperlab.training.config import Runtime, TrainConfig
from wrapperlab.training.loop import Trainee, fit, train


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--blocks", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=48)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, help="torch CPU threads (reproduce's workers each get cores / workers)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    pre = pretrain_config("quick", {"model.n_layers": args.blocks, "data.tasks": ["count"]})
    data = FinetuneData(PCFGData(pre.data), FinetuneDataConfig(c_tr=1.0))
    base = TrainConfig(iters=args.steps, batch_size=args.batch_size, lr=1e-5, loss="answer", weight_decay=0.0,
                       warmup_frac=0.2, min_lr_frac=0.01, eval_every=10**9, checkpoint_every=10**9)
    runtime = Runtime(progress=False, device=args.device)

    def models(n: int) -> list[GPT]:
        out = []
        for seed in range(n):
            torch.manual_seed(seed)
            out.append(GPT(pre.model).to(args.device))
        return out

    def alone(n: int) -> float:
        ms, t0 = models(n), time.perf_counter()
        for seed, m in enumerate(ms):
            fit(Trainee(m, data.stream(seed, args.batch_size), base.model_copy(update={"lr": 1e-5 * (seed + 1)})),
                runtime)
        _sync(args.device)
        return time.perf_counter() - t0

    def stacked(n: int) -> float:
        ms, t0 = models(n), time.perf_counter()
        train([Trainee(m, data.stream(seed, args.batch_size), base.model_copy(update={"lr": 1e-5 * (seed + 1)}))
               for seed, m in enumerate(ms)], runtime, stacked=True)
        _sync(args.device)
        return time.perf_counter() - t0

    print(f"{args.blocks} blocks x d={pre.model.d_model}, batch {args.batch_size}, {args.steps} steps per run, "
          f"{torch.get_num_threads()} threads, {args.device}")
    alone(1), stacked(1)  # warm-up
    for n in args.n:
        a, s = [], []
        for _ in range(args.rounds):
            a.append(alone(n))
            s.append(stacked(n))
        print(f"N = {n}: one after another / stacked, wall time: {statistics.median(a) / statistics.median(s):.2f}")


if __name__ == "__main__":
    main()
