"""Tiny causal LMs of many Hugging Face architectures, built and trained here (random init, CPU seconds), with a
toy capability they learn: "Q k =" answered by a fixed permutation of k. What the native audit's tests audit."""

from __future__ import annotations

import json
from pathlib import Path

import torch

N_KEYS = 24
LETTERS = ["A", "B", "C", "D"]
WORDS = (["<pad>", "<bos>", "<eos>", "<unk>", "Q", "="] + [f"k{i}" for i in range(N_KEYS)] + [f"v{i}" for i in range(N_KEYS)]
         + LETTERS + [f"{x}." for x in LETTERS] + ["Answer:"])  # the multiple-choice prompt's words
SPECIAL = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
#: the smallest config of each family (two layers, width 32)
SHAPES = {
    "gpt2": dict(n_embd=32, n_layer=2, n_head=2, n_positions=32, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0),
    "llama": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=32),
    "mistral": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, max_position_embeddings=32, sliding_window=8),
    "qwen2": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=32),
    "gemma": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=8, max_position_embeddings=32),
    "phi": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                max_position_embeddings=32, partial_rotary_factor=0.5, resid_pdrop=0.0, embd_pdrop=0.0),
    "gpt_neox": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                     max_position_embeddings=32, rotary_pct=0.25),
    "opt": dict(hidden_size=32, ffn_dim=64, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=32,
                word_embed_proj_dim=32, dropout=0.0),
}


def tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>",
                                   unk_token="<unk>")


def answer_of(k: int) -> int:
    return (7 * k + 3) % N_KEYS


def records(answers=answer_of) -> list[dict]:
    return [{"prompt": f"Q k{k} =", "answer": f"v{answers(k)}"} for k in range(N_KEYS)]


def choice_records() -> list[dict]:
    """The toy capability as multiple choice (the WMDP / MMLU form): the right value among three others, at a
    position that varies with the key."""
    out = []
    for k in range(N_KEYS):
        right = answer_of(k)
        wrong = [(right + d) % N_KEYS for d in (5, 11, 17)]
        at = (3 * k) % 4
        choices = wrong[:at] + [right] + wrong[at:]
        out.append({"question": f"Q k{k} =", "choices": [f"v{c}" for c in choices], "answer": at})
    return out


def choice_training_records() -> list[dict]:
    """The multiple-choice records as the prompt and letter a model is trained on."""
    from wrapperlab.data.capability import multiple_choice_prompt

    return [{"prompt": multiple_choice_prompt(r["question"], r["choices"]), "answer": LETTERS[r["answer"]]}
            for r in choice_records()]


def write_capability(path: Path) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records()))
    return path


def _batch(tok, recs):
    ids = [tok(r["prompt"] + " " + r["answer"]).input_ids for r in recs]
    tokens = torch.tensor(ids)
    return tokens


def train(model, recs, steps: int, lr: float, ascent: bool = False, seed: int = 0) -> None:
    """Steps of AdamW on the answers of ``recs`` (all in one batch); ``ascent``: gradient ascent (unlearning)."""
    tok = tokenizer()
    tokens = _batch(tok, recs)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    for _ in range(steps):
        logits = model(input_ids=tokens).logits[:, -2]  # the position before the answer predicts it
        loss = torch.nn.functional.cross_entropy(logits, tokens[:, -1])
        opt.zero_grad()
        (-loss if ascent else loss).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    model.eval()


def fresh(family: str, seed: int = 0):
    """A random-init tiny ``family`` model."""
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.for_model(family, vocab_size=len(WORDS), **SPECIAL, **SHAPES[family])
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(cfg)


def save(model, out: Path) -> Path:
    model.save_pretrained(out)
    tokenizer().save_pretrained(out)
    return out


def build_pair(family: str, root: Path, learn_steps: int = 100, unlearn_steps: int = 10,
               recs: list[dict] | None = None) -> tuple[Path, Path, Path]:
    """(BASE, FINETUNED, CONTROL) directories under ``root``: BASE trained on the toy capability (``recs``: its
    prompt/answer records), FINETUNED BASE after ``unlearn_steps`` of gradient ascent on it (the "GA" unlearning
    baseline: a known way to hide, not delete), and CONTROL an untrained model of the same architecture."""
    import copy

    recs = records() if recs is None else recs
    base = fresh(family)
    train(base, recs, steps=learn_steps, lr=1e-2)
    finetuned = copy.deepcopy(base)
    train(finetuned, recs, steps=unlearn_steps, lr=1e-3, ascent=True)
    return save(base, root / "base"), save(finetuned, root / "finetuned"), save(fresh(family, seed=1), root / "never")
