"""Throughput ratios measured in one run (machines here are noisy; absolute times are not compared).

(a) our trainer's tokens/s  /  a minimal hand-written PyTorch loop on the same model and batch
    (goal >= 0.95). The trainer generates its data online every step; the hand loop reuses one
    pre-made batch, so the ratio charges our data generation, schedule and bookkeeping to us.
(b) the data engine's sequences/s  /  the sequences/s the trainer consumes (goal >= 10), for
    pretraining batches and for fine-tuning batches with a planted correlation.
(c) bf16 autocast / fp32 tokens/s of the trainer, and of evaluation (greedy answers, no gradients).
(e) the last block at the answer positions only / the whole last block (forced by a no-op hook), for a
    fine-tuning step (answer loss) and for evaluation: what the answer-only losses and accuracies gain.
(f) the deferred divergence guard / the eager one (a host sync per step), training tokens/s: about 1 on a CPU, where
    a sync costs nothing; the deferred guard is for accelerators.
(d) with --reproduction FILE (a reproductions/*.json written by `reproduce`): per stage, node wall time / its
    training compute (goal <= 1.25 for fine-tuning and reFT nodes), from the time split every node records.

    python benchmarks/throughput.py [--profile families] [--steps 40] [--rounds 3] [--device cuda]
                                    [--reproduction runs/reproductions/pcfg-counter-quick.json]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from wrapperlab.data.finetune_data import FinetuneData, FinetuneDataConfig
from wrapperlab.data.samples import PCFGData, stream_rng
from wrapperlab.models.gpt import GPT
from wrapperlab.settings.pcfg.configs import pretrain_config
from wrapperlab.training.config import Runtime
from wrapperlab.training.loop import Trainee, fit
from wrapperlab.training.optim import make_optimizer


def hand_loop(model, batch, cfg, steps: int, device: str = "cpu") -> float:
    """The minimal loop a researcher would write: fixed batch, AdamW, clip. Returns seconds."""
    opt = make_optimizer(model, cfg)
    tokens = torch.from_numpy(batch.tokens).to(device)
    at = torch.from_numpy(batch.answer_pos).to(device) - 1
    rows = torch.arange(len(tokens), device=device)
    t0 = time.perf_counter()
    for _ in range(steps):
        logits = model(tokens[:, :-1])
        targets = tokens[:, 1:]
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        loss = loss + cfg.answer_weight * F.cross_entropy(logits[rows, at], targets[rows, at])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
    _sync(device)
    return time.perf_counter() - t0


def ours(model, data, cfg, steps: int, device: str = "cpu", deferred_guard: bool | None = None) -> float:
    cfg = cfg.model_copy(update={"iters": steps, "eval_every": 10**9, "checkpoint_every": 10**9, "warmup_frac": 0.1})
    t0 = time.perf_counter()
    fit(Trainee(model, data.stream(0, cfg.batch_size), cfg),
        Runtime(progress=False, device=device, deferred_guard=deferred_guard))
    _sync(device)
    return time.perf_counter() - t0


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def evaluation(model, samples, precision: str, device: str) -> float:
    """Seconds to predict every answer of ``samples`` (the evaluation path: eval mode, no gradients)."""
    from contextlib import nullcontext

    from wrapperlab.settings.pcfg.evaluate import predict

    autocast = torch.autocast(torch.device(device).type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
    t0 = time.perf_counter()
    with autocast:
        predict(model, samples)
    _sync(device)
    return time.perf_counter() - t0


def overhead(path: str) -> None:
    """(d): node wall / training compute per stage, from a reproduction's per-node time split."""
    import json
    from collections import defaultdict

    nodes = json.loads(open(path).read())["nodes"]
    wall, train_s = defaultdict(float), defaultdict(float)
    for n in nodes:
        split = n.get("split") or {}
        if not n["reused"] and split.get("train"):
            wall[n["stage"]] += n["seconds"] + split.get("dispatch", 0.0)
            train_s[n["stage"]] += split["train"]
    for stage in wall:
        goal = "   (goal <= 1.25)" if stage in ("finetune", "reft", "scrft") else ""
        print(f"(d) {stage:<9} node wall / training compute: {wall[stage] / train_s[stage]:.2f}{goal}")


def engine_rate(sample, batch_size: int, seconds: float = 3.0) -> float:
    n, step, t0 = 0, 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        n += len(sample(batch_size, stream_rng(0, "train", step)))
        step += 1
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # families: the 4 x 128 model of docs/performance.md's published ratios (quick is the 2-block demo model)
    ap.add_argument("--profile", default="families")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (the same ratios on a GPU)")
    ap.add_argument("--reproduction", help="a reproductions/*.json: also print (d)")
    args = ap.parse_args()

    cfg = pretrain_config(args.profile)
    # (a) and (b) compare fp32 with fp32 (the hand-written loop has no autocast); (c) is bf16 against it
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"precision": "fp32"})})
    data = PCFGData(cfg.data)
    batch = data.sample(cfg.train.batch_size, np.random.default_rng(0))
    tokens_per_step = batch.tokens[:, :-1].size
    torch.manual_seed(0)
    model = GPT(cfg.model).to(args.device)
    print(f"profile {args.profile}: {model.num_params():,} params, batch {cfg.train.batch_size} x {batch.tokens.shape[1]} tokens, "
          f"{torch.get_num_threads()} threads")

    hand_loop(model, batch, cfg.train, 5, args.device)  # warm-up both paths
    ours(model, data, cfg.train, 5, args.device)
    hand_t, ours_t = [], []
    for _ in range(args.rounds):  # interleaved, so drifting machine load hits both alike
        hand_t.append(hand_loop(model, batch, cfg.train, args.steps, args.device))
        ours_t.append(ours(model, data, cfg.train, args.steps, args.device))
    hand_tps = args.steps * tokens_per_step / statistics.median(hand_t)
    ours_tps = args.steps * tokens_per_step / statistics.median(ours_t)
    print(f"(a) trainer / hand-written loop tokens/s: {ours_tps / hand_tps:.3f}   (goal >= 0.95)")

    consumed = ours_tps / tokens_per_step * cfg.train.batch_size  # sequences per second
    pre = engine_rate(data.sample, cfg.train.batch_size)
    ft = FinetuneData(data, FinetuneDataConfig(c_tr=1.0))
    fine = engine_rate(ft.sample, 96)
    print(f"(b) data engine / trainer consumption, pretraining batches:           {pre / consumed:.1f}   (goal >= 10)")
    print(f"    data engine / trainer consumption, fine-tuning batches (C_Tr=1):  {fine / consumed:.1f}")

    bf16_cfg = cfg.train.model_copy(update={"precision": "bf16"})
    ours(model, data, bf16_cfg, 5, args.device)
    fp32_t, bf16_t = [], []
    for _ in range(args.rounds):
        fp32_t.append(ours(model, data, cfg.train, args.steps, args.device))
        bf16_t.append(ours(model, data, bf16_cfg, args.steps, args.device))
    print(f"(c) bf16 / fp32 tokens/s, training:   {statistics.median(fp32_t) / statistics.median(bf16_t):.2f}")
    samples = data.sample(2048, np.random.default_rng(1))
    model.eval()
    evaluation(model, samples, "bf16", args.device)
    fp32_e = statistics.median(evaluation(model, samples, "fp32", args.device) for _ in range(args.rounds))
    bf16_e = statistics.median(evaluation(model, samples, "bf16", args.device) for _ in range(args.rounds))
    print(f"    bf16 / fp32 samples/s, evaluation: {fp32_e / bf16_e:.2f}")
    last_block(model, data, cfg.train, samples, args)
    eager_t, deferred_t = [], []
    for _ in range(args.rounds):
        eager_t.append(ours(model, data, cfg.train, args.steps, args.device, deferred_guard=False))
        deferred_t.append(ours(model, data, cfg.train, args.steps, args.device, deferred_guard=True))
    ratio = statistics.median(eager_t) / statistics.median(deferred_t)
    print(f"(f) deferred / eager guard tokens/s, training: {ratio:.2f}")
    if args.reproduction:
        overhead(args.reproduction)


def last_block(model, data, cfg, samples, args) -> None:
    """(e): each pair interleaved, the whole last block forced by a no-op hook on it (a hook sees every position)."""
    answer = cfg.model_copy(update={"loss": "answer"})
    whole = [(model.blocks[-1].hook_resid_post.name, lambda t, hook: t)]
    times: dict[str, list[float]] = {"trim": [], "whole": [], "trim_eval": [], "whole_eval": []}
    ours(model, data, answer, 5, args.device)
    for _ in range(args.rounds):
        times["trim"].append(ours(model, data, answer, args.steps, args.device))
        with model.hooks(whole):
            times["whole"].append(ours(model, data, answer, args.steps, args.device))
        model.eval()
        times["trim_eval"].append(evaluation(model, samples, "fp32", args.device))
        with model.hooks(whole):
            times["whole_eval"].append(evaluation(model, samples, "fp32", args.device))
    m = {k: statistics.median(v) for k, v in times.items()}
    print(f"(e) last block at the answers only / whole, fine-tuning step: {m['whole'] / m['trim']:.2f}, "
          f"evaluation: {m['whole_eval'] / m['trim_eval']:.2f}")


if __name__ == "__main__":
    main()
