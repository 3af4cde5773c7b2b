"""Hugging Face import and export (models/hf.py): logits parity with ``transformers`` on tiny random configs built
here (nothing downloaded), round trips, and bad directories named in one line."""

from __future__ import annotations

import json

import pytest
import torch

from wrapperlab.errors import ConfigError, IntegrityError, UserError
from wrapperlab.models.gpt import GPT, GPTConfig
from wrapperlab.models.hf import export_hf, hf_config_to_gpt, load_hf, load_hf_tokenizer

TOL = 1e-4


def _tokens(vocab: int, n: int = 12, b: int = 3) -> torch.Tensor:
    return torch.randint(0, vocab, (b, n), generator=torch.Generator().manual_seed(0))


def _theirs(directory, tokens):
    transformers = pytest.importorskip("transformers")
    model = transformers.AutoModelForCausalLM.from_pretrained(directory).eval()
    with torch.no_grad():
        out = model(tokens, output_hidden_states=True)
    return out.logits, out.hidden_states


def _randomise(model: torch.nn.Module) -> None:
    """Norm weights and biases away from 1 and 0, so a misplaced one shows in the logits."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))


def _gpt2(tmp_path, **overrides):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPT2Config(vocab_size=97, n_positions=32, n_embd=48, n_layer=2, n_head=4, **overrides)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(cfg)
    _randomise(model)
    model.save_pretrained(tmp_path)
    return tmp_path


def _llama(tmp_path, **overrides):
    transformers = pytest.importorskip("transformers")
    fields = dict(vocab_size=97, hidden_size=64, intermediate_size=80, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5, rope_theta=500.0)
    cfg = transformers.LlamaConfig(**{**fields, **overrides})
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg)
    _randomise(model)
    model.save_pretrained(tmp_path)
    return tmp_path


@pytest.mark.parametrize("overrides", [{}, {"activation_function": "gelu", "tie_word_embeddings": False}])
def test_gpt2_import_matches_transformers(tmp_path, overrides):
    directory = _gpt2(tmp_path, **overrides)
    ours = load_hf(directory)
    tokens = _tokens(97)
    logits, hidden = _theirs(directory, tokens)
    _, cache = ours.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_resid_post"))
    assert (ours(tokens) - logits).abs().max() < TOL
    # transformers' last hidden state is after the final norm: compare the residual stream of the blocks before it
    for i in range(ours.cfg.n_layers - 1):
        assert (cache[f"blocks.{i}.hook_resid_post"] - hidden[i + 1]).abs().max() < TOL
    assert ours.cfg.act == ("gelu" if overrides else "gelu_tanh")
    assert ours.cfg.tie_embeddings == (not overrides)


@pytest.mark.parametrize("overrides", [{}, {"num_key_value_heads": 4, "tie_word_embeddings": True},
                                       {"attention_bias": True, "mlp_bias": True, "head_dim": 8}])
def test_llama_import_matches_transformers(tmp_path, overrides):
    directory = _llama(tmp_path, **overrides)
    ours = load_hf(directory)
    tokens = _tokens(97, n=20)
    logits, hidden = _theirs(directory, tokens)
    assert (ours(tokens) - logits).abs().max() < TOL
    _, cache = ours.run_with_cache(tokens, names_filter="blocks.0.hook_resid_post")
    assert (cache["blocks.0.hook_resid_post"] - hidden[1]).abs().max() < TOL
    assert ours.cfg.rope_base == 500.0 and ours.cfg.norm_eps == 1e-5
    assert ours.cfg.kv_heads == overrides.get("num_key_value_heads", 2)


def test_grouped_query_attention_caches_like_a_full_forward(tmp_path):
    """Generation feeds one position at a time through the key/value cache: under grouped-query attention its
    logits must equal the whole sequence's."""
    ours = load_hf(_llama(tmp_path))
    tokens = _tokens(97, n=10, b=2)
    cache = [{} for _ in ours.blocks]
    with torch.no_grad():
        step = torch.cat([ours(tokens[:, :6], cache=cache)] + [ours(tokens[:, i:i + 1], cache=cache) for i in range(6, 10)], 1)
        assert (step - ours(tokens)).abs().max() < TOL


def _story_model(**overrides) -> GPT:
    torch.manual_seed(0)
    cfg = GPTConfig.preset("stories-quick", **{"vocab_size": 97, "n_ctx": 32, "n_layers": 2, "d_model": 64, **overrides})
    model = GPT(cfg)
    _randomise(model)
    return model


def _pcfg_model() -> GPT:
    torch.manual_seed(0)
    model = GPT(GPTConfig.preset("test", vocab_size=97, n_ctx=32))
    _randomise(model)
    return model


@pytest.mark.parametrize("make", [_story_model, _pcfg_model], ids=["llama", "gpt2"])
def test_export_loads_in_transformers_and_back(tmp_path, make):
    model = make()
    directory = export_hf(model, tmp_path / "hf")
    tokens = _tokens(97)
    logits, _ = _theirs(directory, tokens)
    with torch.no_grad():
        ours = model(tokens)
        assert (ours - logits).abs().max() < TOL
        back = load_hf(directory)
        assert (back(tokens) - ours).abs().max() < TOL
    shape = ("vocab_size", "n_ctx", "d_model", "n_layers", "n_heads", "kv_heads", "d_head", "mlp_width", "norm", "act",
             "positions", "rope_base", "bias", "tie_embeddings")
    assert {k: getattr(back.cfg, k) for k in shape} == {k: getattr(model.cfg, k) for k in shape}


def test_story_export_generates_with_its_tokenizer(tmp_path):
    """The exported story directory is what a Hugging Face user expects: tokenizer and model load, and generate."""
    transformers = pytest.importorskip("transformers")
    from wrapperlab.data.stories.tokenizer import END, PAD, save_tokenizer, train_tokenizer

    tok = train_tokenizer(["Once upon a time there was a little cat. The cat was happy."] * 20, vocab_size=300)
    save_tokenizer(tok, tmp_path / "tok.json")
    model = _story_model(vocab_size=tok.get_vocab_size())
    directory = export_hf(model, tmp_path / "hf", tokenizer=tmp_path / "tok.json",
                          special_tokens={"eos_token": END, "pad_token": PAD})
    hf_tok = transformers.AutoTokenizer.from_pretrained(directory)
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(directory)
    prompt = hf_tok("Once upon a time", return_tensors="pt")
    out = hf_model.generate(**prompt, max_new_tokens=5, do_sample=False, pad_token_id=hf_tok.pad_token_id)
    assert out.shape[1] == prompt["input_ids"].shape[1] + 5
    ids = prompt["input_ids"]
    with torch.no_grad():  # greedy: our model picks the same next token
        assert model(ids)[0, -1].argmax() == out[0, ids.shape[1]]
    assert load_hf_tokenizer(directory).encode("Once upon a time").ids == ids[0].tolist()


def test_bad_directories_are_named(tmp_path):
    with pytest.raises(UserError, match="not a directory"):
        load_hf(tmp_path / "missing")
    with pytest.raises(UserError, match="no config.json"):
        load_hf(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(IntegrityError, match="config.json: not JSON"):
        load_hf(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt_neox"}))
    with pytest.raises(ConfigError, match="model_type: got 'gpt_neox'"):
        load_hf(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_embd": 8}))
    with pytest.raises(ConfigError, match="config.json: vocab_size"):
        load_hf(tmp_path)


def test_unsupported_options_are_refused_not_approximated():
    base = dict(model_type="llama", vocab_size=10, hidden_size=8, intermediate_size=8, num_hidden_layers=1,
                num_attention_heads=2)
    assert hf_config_to_gpt(base).kv_heads == 2
    with pytest.raises(ConfigError, match="rope_type"):
        hf_config_to_gpt({**base, "rope_scaling": {"rope_type": "linear", "factor": 2.0}})
    with pytest.raises(ConfigError, match="hidden_act"):
        hf_config_to_gpt({**base, "hidden_act": "gelu"})
    with pytest.raises(ConfigError, match="num_key_value_heads|n_kv_heads"):
        hf_config_to_gpt({**base, "num_key_value_heads": 3, "num_attention_heads": 2})
    with pytest.raises(ConfigError, match="scale_attn_by_inverse_layer_idx"):
        hf_config_to_gpt(dict(model_type="gpt2", vocab_size=10, n_positions=8, n_embd=8, n_layer=1, n_head=2,
                              scale_attn_by_inverse_layer_idx=True))


def test_weights_that_do_not_fit_are_named(tmp_path):
    directory = _gpt2(tmp_path)
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, "n_inner": 64}))
    with pytest.raises(IntegrityError, match="mlp.fc_in.weight: shape"):
        load_hf(directory)
    (directory / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(IntegrityError, match="unreadable weights"):
        load_hf(directory)


def test_export_refuses_what_the_family_cannot_hold(tmp_path):
    model = GPT(GPTConfig.preset("test", vocab_size=20, n_ctx=8, norm="rmsnorm"))
    with pytest.raises(ConfigError, match="model norm: got 'rmsnorm'; expected 'layernorm' to export as gpt2"):
        export_hf(model, tmp_path / "x")


def test_run_ids_of_older_configs_hold():
    """Options added for imports are left out of a config's dump at their old defaults: the run ids hashed over
    stored configs stay what they were."""
    dump = GPTConfig.preset("quick", vocab_size=83, n_ctx=73).model_dump()
    assert not {"n_kv_heads", "norm_eps", "rope_base"} & set(dump)
    assert GPTConfig(**dump) == GPTConfig.preset("quick", vocab_size=83, n_ctx=73)
    assert GPTConfig.preset("quick", vocab_size=83, n_ctx=73, n_kv_heads=2).model_dump()["n_kv_heads"] == 2


def test_analyses_read_grouped_query_models(tmp_path):
    """Under grouped-query attention K and V are narrower than Q: the weight diff and the pruning report split
    ``attn.qkv`` at the right rows."""
    from wrapperlab.analysis.pruning import Unit
    from wrapperlab.analysis.weight_diff import weight_diff

    model = load_hf(_llama(tmp_path))  # 4 heads of 16, 2 key/value heads
    diffs = {d.name: d.shape for d in weight_diff(model, model)}
    assert diffs["blocks.0.attn.W_Q"] == (64, 64) and diffs["blocks.0.attn.W_V"] == (32, 64)
    described = Unit(block=0, matrix="attn.qkv", index=64 + 32 + 17, score=0.0).describe(model.cfg)
    assert (described["qkv"], described["head"]) == ("V", 1)
