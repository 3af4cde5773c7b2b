"""How long `wrapperlab audit` takes on a GPT-2-small-sized model (124 M parameters) on this machine.

Issue 16 asks the audit to work on CPU for models up to ~150 M parameters "in a documented time". A full audit at
that size is hours on 2 cores, so this script times each part of it once — on a randomly initialised GPT-2-small
shape (12 x 768, vocabulary 50,257; nothing downloaded), written as a Hugging Face directory with a word-level
tokenizer and read back through ``models.hf`` exactly as a user's model is — and prints the parts and the full
audit they add up to at the defaults (3 seeds, 100 relearning steps x 16, probes of 1,000 steps, K up to 15).
Absolute times are this machine's (noisy, shared): the split says which part to shrink (``--steps``,
``--seeds``, fewer records) or to move to ``--device cuda``.

    python benchmarks/audit_scale.py [--records 64] [--prompt 48] [--answer 8] [--steps 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from wrapperlab.analysis.audit import RelearnConfig, encode, probe_answer, prune_curve, relearn, score
from wrapperlab.analysis.probing import ProbeConfig
from wrapperlab.analysis.rng import random_init_twin
from wrapperlab.data.capability import load_capability
from wrapperlab.models.gpt import GPT
from wrapperlab.models.hf import export_hf, hf_config_to_gpt, load_hf, load_hf_tokenizer

GPT2_SMALL = {"model_type": "gpt2", "vocab_size": 50257, "n_positions": 1024, "n_embd": 768, "n_layer": 12,
              "n_head": 12, "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5, "tie_word_embeddings": True}


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=64, help="capability records (half attack, half held out)")
    ap.add_argument("--prompt", type=int, default=48, help="prompt tokens per record")
    ap.add_argument("--answer", type=int, default=8, help="answer tokens per record")
    ap.add_argument("--steps", type=int, default=3, help="relearning steps timed (the mean is used)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    from tokenizers import Tokenizer, models, pre_tokenizers

    cfg = hf_config_to_gpt(GPT2_SMALL)
    words = [f"w{i}" for i in range(cfg.vocab_size)]
    gen = torch.Generator().manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="w0"))
        tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        tok.save(str(tmp / "tokenizer.json"))
        torch.manual_seed(0)
        export_hf(GPT(cfg), tmp / "model", tokenizer=tmp / "tokenizer.json")
        ids = torch.randint(0, cfg.vocab_size, (args.records, args.prompt + args.answer), generator=gen).tolist()
        (tmp / "cap.jsonl").write_text("".join(
            json.dumps({"prompt": " ".join(words[i] for i in row[: args.prompt]),
                        "answer": " ".join(words[i] for i in row[args.prompt:])}) + "\n" for row in ids))
        t_load, model = timed(load_hf, tmp / "model")
        tokenizer = load_hf_tokenizer(tmp / "model")
        model.to(args.device)
        cap = load_capability(tmp / "cap.jsonl")
    data = encode(cap, tokenizer, cfg.n_ctx)
    attack_idx, held_idx = cap.split(0)
    attack, held = data.take(attack_idx), data.take(held_idx)
    print(f"GPT-2-small shape: {model.num_params():,} parameters; {args.records} records of {args.prompt} + "
          f"{args.answer} tokens; {torch.get_num_threads()} threads on {args.device}")
    t_score, _ = timed(score, model, held)
    t_relearn, _ = timed(relearn, model, attack, held, RelearnConfig(steps=args.steps), 0)
    step = (t_relearn - t_score) / args.steps  # relearn scores the held-out split once at step 0
    t_prune, _ = timed(prune_curve, model, attack, held)
    twin = random_init_twin(model, 0).to(args.device)
    t_probe, _ = timed(probe_answer, {"finetuned": model, "base": model, "random_init": twin, "control": model},
                       attack, held, ProbeConfig(iters=1000), 0)
    evals = len(RelearnConfig().eval_at)
    relearn_run = RelearnConfig().steps * step + evals * t_score
    parts = {"load one model (safetensors -> our GPT)": t_load, "score the held-out half": t_score,
             "one relearning step (batch 16)": step, "pruning sweep (saliency + 7 scorings)": t_prune,
             "probes (4 models, 1,000 steps)": t_probe,
             f"one relearning run ({RelearnConfig().steps} steps, {evals} scorings)": relearn_run}
    for name, seconds in parts.items():
        print(f"  {name:52s} {seconds:9.1f} s")
    for control, runs, prunes in (("without --control", 2, 2), ("with --control", 3, 3)):
        per_seed = runs * relearn_run + prunes * t_prune + t_probe + 3 * t_score
        print(f"full audit at the defaults, {control}: {3 * per_seed / 60:.0f} min "
              f"(3 seeds x {per_seed / 60:.1f} min; plus loading {2 + (control == 'with --control')} models)")


if __name__ == "__main__":
    main()
