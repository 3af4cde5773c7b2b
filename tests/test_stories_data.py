"""The story corpus: record text form, generator, real-data readers, deletion protocols."""

import json

import numpy as np
import pytest

from wrapperlab.data.stories import protocols
from wrapperlab.data.stories.generator import StoryGenerator, templates
from wrapperlab.data.stories.loader import read_records
from wrapperlab.data.stories.records import END_OF_TEXT, FEATURES, StoryRecord, format_record, header, parse_record
from wrapperlab.errors import ConfigError

HAND = StoryRecord(story="Tom had a red ball. Suddenly, there was a big surprise. It was a frog! Tom laughed.",
                   features=("Dialogue", "Twist"), words=("ball", "jump", "red"), summary="Tom finds a frog.",
                   random_sentence="Tom laughed.", header_order=("Words", "Features", "Summary", "Random sentence"))


def test_records_round_trip_through_their_text():
    for record in [HAND, *StoryGenerator(3).records(300)]:
        text = format_record(record)
        back = parse_record(text)
        assert format_record(back) == text
        assert (back.story, back.features, back.words, back.summary, back.random_sentence) == \
               (record.story, record.features, record.words, record.summary, record.random_sentence)
    assert header(HAND) == ("Words: ball, jump, red\nFeatures: Dialogue, Twist\nSummary: Tom finds a frog.\n"
                            "Random sentence: Tom laughed.\nStory: ")


def test_parser_reads_the_real_files_variants():
    text = "\nFeatures: Dialogue, bad ending\n\nWords: tree, run, big\nStory: \n\nOnce upon a time...\n\nThe end.\n"
    record = parse_record(text)
    assert record.features == ("Dialogue", "BadEnding") and record.words == ("tree", "run", "big")
    assert record.summary is None and record.story == "Once upon a time...\n\nThe end."
    for bad in ("Features: Twist\nOnce upon a time", "Colour: red\nStory: x", "Features: Sparkle\nStory: x"):
        with pytest.raises(ValueError):
            parse_record(bad)


def test_generator_is_deterministic_per_seed_and_index():
    a, b = list(StoryGenerator(7).records(50)), list(StoryGenerator(7).records(50))
    assert [format_record(r) for r in a] == [format_record(r) for r in b]
    assert format_record(StoryGenerator(7).record(30)) == format_record(a[30])  # shards in any order agree
    assert [format_record(r) for r in StoryGenerator(8).records(50)] != [format_record(r) for r in a]


def _pattern(template: str):
    """A template as a regex: slots match any words; the first letter may have been capitalised."""
    import re

    parts = re.split(r"\{\w+\}", template)
    body = "[^.!?]+?".join(re.escape(p) for p in parts)
    return re.compile(body, re.IGNORECASE)


def test_every_feature_is_realised_in_several_ways():
    records = list(StoryGenerator(0, feature_rates={f: 0.5 for f in FEATURES}).records(600))
    t = templates()["features"]
    for feature in FEATURES:
        having = [r for r in records if feature in r.features]
        assert len(having) > 100, feature
        if feature == "BadEnding":
            continue
        first_part = next(iter(t[feature]))  # surprise / hint / line / lesson / struggle
        patterns = [_pattern(s) for s in t[feature][first_part]]
        seen = {i for i, p in enumerate(patterns) for r in having if p.search(r.story)}
        assert len(seen) >= 3, (feature, seen)
        without = [r for r in records if feature not in r.features]
        assert not any(p.search(r.story) for p in patterns for r in without), feature
    twist = [r for r in records if "Twist" in r.features]
    assert all(r.extra["twist_at"] is not None and r.extra["twist_at"] < len(r.story) for r in twist)
    assert not any("Twist" in r.features for r in StoryGenerator(0, exclude=("Twist",)).records(300))
    with pytest.raises(ValueError):
        StoryGenerator(0, exclude=("Sparkle",))


def test_protocols_transform_a_hand_made_record_exactly():
    plain = StoryRecord(story="A calm day.", features=("Foreshadowing", "Dialogue"))
    records = [HAND, plain]
    assert list(protocols.filter_twist(records)) == [plain]
    mm = list(protocols.filter_mix_match(records))
    assert len(mm) == 1 and mm[0].features == ("Twist", "Dialogue") and mm[0].story == "A calm day."
    assert mm[0].has == ("Foreshadowing", "Dialogue")  # the story still has what it had
    fr = list(protocols.filter_randomise(records))
    assert len(fr) == 1 and fr[0].features == ("Foreshadowing", "Dialogue", "Twist") and fr[0].has == plain.features
    refused = list(protocols.refusal(records))
    assert refused[0].features == HAND.features and refused[0].story == templates()["refusal"] and refused[0].has == ()
    assert refused[1] == plain
    assert protocols.protocol("filter") is protocols.filter_twist
    with pytest.raises(ConfigError):
        protocols.protocol("forget")


def test_real_data_readers(tmp_path):
    records = list(StoryGenerator(1).records(20))
    text = tmp_path / "TinyStoriesInstruct-valid.txt"
    text.write_text(f"\n{END_OF_TEXT}\n".join(format_record(r) for r in records) + f"\n{END_OF_TEXT}\n")
    assert [r.story for r in read_records(text)] == [r.story for r in records]
    assert len(list(read_records(text, limit=5))) == 5
    shard = tmp_path / "data00.json"
    shard.write_text(json.dumps([{"story": r.story, "instruction": {"prompt:": "...", "words": list(r.words),
                                                                   "features": [f.lower() for f in r.features]},
                                  "summary": r.summary, "source": "GPT-4"} for r in records]))
    back = list(read_records(shard))
    assert [(r.story, r.features, r.words) for r in back] == [(r.story, r.features, r.words) for r in records]
    assert len(list(read_records(tmp_path))) == 40  # a directory: every .txt and .json file in it
    from wrapperlab.data.stories.corpus import StoriesDataConfig
    from wrapperlab.data.stories.corpus import records as configured

    cfg = StoriesDataConfig(source=str(text), n_records=100)  # real data: every 10th record is held out
    train, test = list(configured(cfg)), list(configured(cfg, "test"))
    assert [r.story for r in test] == [records[9].story, records[19].story]
    assert len(train) == 18 and not {r.story for r in train} & {r.story for r in test}


@pytest.mark.parametrize("content, where", [
    ("Features: Twist\nStory: fine\n" + END_OF_TEXT + "\nno story marker here\n" + END_OF_TEXT, "record 2"),
    ('[{"story": "ok", "instruction": {"words": [], "features": []}}, {"text": "no story"}]', "record 2"),
    ('{"story": "not a list"}', "a JSON list"),
    ("[{", "invalid JSON"),
])
def test_malformed_real_data_names_the_file_and_first_bad_record(tmp_path, content, where):
    path = tmp_path / ("bad.json" if content.lstrip().startswith(("[", "{")) else "bad.txt")
    path.write_text(content)
    with pytest.raises(ConfigError) as e:
        list(read_records(path))
    assert str(path) in str(e.value) and where in str(e.value)
    with pytest.raises(ConfigError) as e:
        list(read_records(tmp_path / "missing.txt"))
    assert "missing.txt" in str(e.value)


def test_tokenizer_round_trips_and_saves(tmp_path):
    from wrapperlab.data.stories.tokenizer import END, load_tokenizer, save_tokenizer, train_tokenizer

    texts = [format_record(r) for r in StoryGenerator(0).records(2000)]
    tok = train_tokenizer(texts, vocab_size=512)
    assert tok.get_vocab_size() == 512 and tok.token_to_id(END) is not None
    back = load_tokenizer(save_tokenizer(tok, tmp_path / "tokenizer.json"))
    unseen = "Zyx the qwerty dragon said: \"héllo\"!"  # words and bytes the corpus never had still encode
    for text in (texts[0], unseen):
        assert back.decode(back.encode(text).ids) == text
    assert len(tok.encode(texts[0]).ids) < len(texts[0]) / 2  # merges learned, not bytes


def test_judge_reads_features_from_the_story_alone():
    from dataclasses import replace

    from wrapperlab.analysis.judge import Judge

    train, test = list(StoryGenerator(0).records(3000)), list(StoryGenerator(1).records(600))
    judge = Judge.fit(train)
    acc = judge.accuracy(test)
    assert all(acc[f] >= 0.9 for f in FEATURES), acc
    # the instruction is not read: the same story under another instruction gets the same verdict
    twist = next(r for r in test if "Twist" in r.features)
    assert judge.predict([twist.story])[0][0] and judge.predict([twist.with_features(()).story])[0][0]
    cut = twist.story[:twist.extra["twist_at"]] + " In the end, Tom went home."  # without the twist sentences
    assert not judge.predict([cut])[0][0]
    # a control that can fail: labels shuffled across stories leave nothing to learn
    order = np.random.default_rng(0).permutation(len(train))
    shuffled = [replace(r, true_features=train[j].has) for r, j in zip(train, order)]
    control = Judge.fit(shuffled).accuracy(test)
    majority = max(np.mean(["Twist" in r.has for r in test]), 1 - np.mean(["Twist" in r.has for r in test]))
    assert control["Twist"] <= majority + 0.03


def test_token_stream_windows_and_prompts():
    from wrapperlab.data.stories.corpus import StoriesDataConfig, TokenStream, fit_tokenizer, prompt_and_story, records

    cfg = StoriesDataConfig(n_records=600, tokenizer_records=1500, vocab_size=400, context=64)
    tok = fit_tokenizer(cfg)
    control = fit_tokenizer(cfg.model_copy(update={"exclude": ("Twist",)}))
    assert tok.to_str() == control.to_str()  # the control corpus shares the vocabulary
    stream = TokenStream(cfg, tok)
    a, b = stream.batch_at(5, 8, seed=1), stream.batch_at(5, 8, seed=1)
    assert a.tokens.shape == (8, 65) and (a.tokens == b.tokens).all()
    assert not (stream.batch_at(6, 8, seed=1).tokens == a.tokens).all()
    end = tok.token_to_id("<|endoftext|>")
    starts = {int(s) for s in stream.record_starts}
    for window in a.tokens:  # record windows: each starts with a record's first token, instruction included
        at = next(i for i in range(len(stream.tokens)) if (stream.tokens[i:i + 65] == window).all())
        assert at in starts and (at == 0 or stream.tokens[at - 1] == end)
    anywhere = TokenStream(cfg.model_copy(update={"windows": "random"}), tok).batch_at(5, 64, seed=1)
    assert not all(w[0] == a.tokens[0][0] for w in anywhere.tokens)
    assert stream.n_records == 600 and (stream.tokens == tok.token_to_id("<|endoftext|>")).sum() == 600
    for record in list(records(cfg, "test"))[:100]:
        prompt, story = prompt_and_story(record, tok)
        assert tok.decode(prompt + story) == format_record(record)
        assert tok.decode(prompt).endswith("Story:")
    assert not any("Twist" in r.has for r in records(cfg.model_copy(update={"exclude": ("Twist",)})))
    assert all("Twist" in r.has for r in records(cfg.model_copy(update={"only": ("Twist",)})))
    with pytest.raises(ValueError):
        TokenStream(cfg.model_copy(update={"only": ("Twist",), "protocol": "filter"}), tok)  # nothing left
    with pytest.raises(Exception):
        StoriesDataConfig(exclude=("Sparkle",))


def test_story_model_presets_are_llama_style():
    import torch

    from wrapperlab.models.gpt import GPT, GPTConfig

    cfg = GPTConfig.preset("stories-quick", vocab_size=400, n_ctx=64)
    assert (cfg.norm, cfg.act, cfg.positions, cfg.bias, cfg.tie_embeddings) == ("rmsnorm", "swiglu", "rope", False, True)
    assert GPT(cfg)(torch.randint(0, 400, (2, 64))).shape == (2, 64, 400)
    paper = GPTConfig.preset("stories-paper", vocab_size=8192, n_ctx=1024)
    assert (paper.d_model, paper.n_layers, paper.n_heads) == (768, 12, 12)


def test_stories_cli_generate_and_judge(tmp_path, capsys):
    from wrapperlab.cli.main import main

    out = tmp_path / "gen.txt"
    assert main(["stories", "generate", "--n", "800", "--seed", "2", "--out", str(out)]) == 0
    assert len(list(read_records(out))) == 800
    assert main(["stories", "judge", "--data", str(out), "--n", "800", "--out", str(tmp_path / "judge.json")]) == 0
    report = capsys.readouterr().out
    assert "640 training / 80 held-out" in report and "Twist" in report and (tmp_path / "judge.json").exists()
    for bad in (["stories", "judge", "--data", str(tmp_path / "missing.txt")],
                ["stories", "generate", "--exclude", "Sparkle"], ["stories", "generate", "--n", "0"]):
        assert main(bad) == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_grad_ascent_batches_split_forget_and_retain():
    """Half of each batch is forget windows (Twist stories), half retain windows (the filtered corpus); a corpus
    with nothing to forget is one clear error naming the protocol."""
    from wrapperlab.data.stories.corpus import ForgetRetainStream, StoriesDataConfig, fit_tokenizer
    from wrapperlab.errors import ConfigError

    cfg = StoriesDataConfig(n_records=300, tokenizer_records=300, vocab_size=400, context=96, protocol="grad_ascent")
    tok = fit_tokenizer(cfg)
    stream = ForgetRetainStream(cfg, tok)
    batch = stream.batch_at(3, 8, seed=0)
    assert batch.tokens.shape == (8, 97) and batch.n_forget == 4
    assert stream.n_records == 300 and stream.forget.n_records + stream.retain.n_records == 300
    with pytest.raises(ConfigError, match="data.protocol"):
        ForgetRetainStream(cfg.model_copy(update={"exclude": ("Twist",)}), tok)
