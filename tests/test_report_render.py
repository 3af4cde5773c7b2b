"""Every shipped spec reproduces on the test profile into one store, and the report over all of them is a page
a browser shows: headless Chromium loads it and every embedded figure decodes (naturalWidth > 0)."""

import json
import os
import re
import shutil
import subprocess

import pytest

from wrapperlab.orchestration.reproduce import reproduce
from wrapperlab.orchestration.spec import load_spec
from wrapperlab.report.docs import update_docs
from wrapperlab.report.render import write_report
from wrapperlab.runs.store import RunStore
from wrapperlab.training.config import Runtime

SPECS = ("pcfg-counter", "pcfg-indexer", "tracr-counter", "tracr-max", "stories-twist", "pcfg-table5", "pcfg-depth",
         "pcfg-pretraining", "stories-deep", "pcfg-mixing", "pcfg-randft", "pcfg-jailbreak")


@pytest.fixture(scope="module")
def shipped_specs_store(tmp_path_factory):
    pytest.importorskip("tracr", reason="the tracr specs compile their programs (pip install 'wrapperlab[tracr]')")
    root = tmp_path_factory.mktemp("specs") / "runs"
    store = RunStore(root)
    for name in SPECS:
        reproduce(load_spec(name), "test", store, runtime=Runtime(progress=False), say=lambda _: None)
    return root


def test_every_node_result_is_typed_and_round_trips(shipped_specs_store):
    """What crosses from the settings to the report is typed: every node of every shipped spec reads back as its
    stage's result type, and writes back the very JSON the runner stored."""
    from wrapperlab.report.records import read_reproduction
    from wrapperlab.schema import Result

    checked = 0
    for path in sorted((shipped_specs_store / "reproductions").glob("*.json")):
        raw = {n["key"]: n["data"] for n in json.loads(path.read_text())["nodes"]}
        for record in read_reproduction(path).nodes:
            assert isinstance(record.result, Result) and type(record.result).__name__ != "Result"
            written = json.dumps(record.result.to_json(), sort_keys=True)  # as text: an int stays an int
            assert written == json.dumps(raw[record.key], sort_keys=True), record.key
            checked += 1
    assert checked > 100


def test_every_shipped_spec_reproduces_and_reports(shipped_specs_store):
    paths = write_report(shipped_specs_store)
    markdown = paths["markdown"].read_text()
    for name in SPECS:
        assert f"## {name} (test profile" in markdown
    assert "(33.6 / 9.5)" in markdown  # Table 7 (Indexer, eta 1e-4, C_Tr 1, low prior) beside ours
    assert "(23.8)" in markdown  # Table 3 Max-identifier, eta 1e-2, C_Tr 1, Acc O_PT C_Te=0
    assert "44 / 81 / 81 / 82" in markdown  # Table 1 (stories reFT, F at eta_M)
    summary = json.loads(paths["summary"].read_text())
    assert set(summary) == {f"{name}/test" for name in SPECS}
    # the Table 5 replica: the paper's row for the high prior beside ours at "@1K" (here step 2) and the end; the
    # claims whose cells the test grid has (T1, T3, T5-T7), each with one seed: inconclusive, never shown
    table5 = markdown[markdown.index("## pcfg-table5"):]
    assert "ours @2 / end" in table5 and "(100 / 97.5)" in table5  # P_T(a) = 0.5, eta 1e-5, C_Tr 0, O_PT C_Te=0
    claims = summary["pcfg-table5/test"]["claims"]
    assert sorted(c["claim"][:2] for c in claims) == ["T1", "T3", "T5", "T6", "T7"]
    assert {c["outcome"] for c in claims} == {"inconclusive"}
    assert set(summary["pcfg-table5/test"]["pretrained_by_prior"]) == {"low", "high"}  # never pooled
    # localisation across depths: one row per depth, the pruned-unit shares over that many blocks summing to 1
    where = {c["blocks"]: c for c in summary["pcfg-depth/test"]["localisation"]}
    assert sorted(where) == [1, 2] and "low, 2 blocks, η_M, C_Tr=1" in markdown
    for blocks, cell in where.items():
        assert len(cell["pruned_share"]) == blocks == len(cell["probe_gain"])
        assert abs(sum(c["mean"] for c in cell["pruned_share"]) - 1) < 1e-9
    # pretraining length: 10 of the longest 40 steps reads the paper's 50K (Table 6), 40 its 200K (Table 5); the
    # pretrained models are never pooled across lengths, and the claims are read per length
    lengths = markdown[markdown.index("## pcfg-pretraining"):]
    assert "low (pretrained 10 steps)" in lengths and "(2.1 / 20.7)" in lengths  # Table 6: 1e-5, 0.999, C_Tr 1
    assert "(0.4 / 17.5)" in lengths  # Table 5: the same cell after 200K
    assert "paper 99.9), count b" in lengths and "(paper 5.17)" in lengths  # Table 6's pretrained low-prior model
    assert set(summary["pcfg-pretraining/test"]["pretrained_by_prior"]) == {
        f"{p}, pretrained {n} steps" for p in ("low", "high") for n in (10, 40)}
    wheres = [c["where"] for c in summary["pcfg-pretraining/test"]["claims"]]
    assert {w.rsplit("; ", 1)[-1] for w in wheres} == {"pretrained 10 steps", "pretrained 40 steps"}
    assert (summary["pcfg-indexer/test"]["task"], summary["pcfg-indexer/test"]["o_pt"]) == ("index", "a")
    for cell in summary["pcfg-indexer/test"]["analysed"]:  # the rules speak of the Indexer's task, not of counting
        assert all("index(O_PT)" in claim for claim in cell["signatures"])
    # the Tracr pruning verdict is a rule of claims/verdicts.py now: one seed in the test profile, so inconclusive
    assert summary["tracr-counter/test"]["single_weight_verdict"]["outcome"] == "inconclusive"
    moved = summary["tracr-max/test"]["finetune"][0]["attention_change"]
    assert len(moved) >= 2 and all(0.0 <= m["mean"] <= 1.0 for m in moved)
    # the deeper story model: probes at every one of its 6 blocks beside the random-init twin, the revival rules
    # (one seed: inconclusive, saying how many seeds the deletion worked in), all generated into docs blocks
    deep = summary["stories-deep/test"]
    assert len(deep["probes"]["requested_matched"]["pretrained"]["per_layer"]) == 7
    assert [e["label"] for e in deep["revival"]] == ["F η_M"] and len(deep["revival"][0]["worked"]) == 1
    assert {v["outcome"] for v in deep["verdicts"]} == {"inconclusive"} and len(deep["verdicts"]) == 2 + 2 + 3
    doc = paths["markdown"].parent / "stories-doc.md"
    doc.write_text("".join(f"<!-- wrapperlab:{kind} stories-deep/test -->\n<!-- /wrapperlab -->\n"
                           for kind in ("stories-behaviour", "stories-revival", "stories-probes"))
                   + "<!-- wrapperlab:pcfg-jailbreak pcfg-jailbreak/test -->\n<!-- /wrapperlab -->\n")
    update_docs(summary, [doc])
    text = doc.read_text()
    assert "| pretrained | 1 |" in text and "| random init (pretrained's twin) |" in text and "| B6 |" in text
    assert "**reFT from F η_M revives the Twist" in text and "of 1 seed(s); the rule needs 3" in text
    assert "| low, η_L, C_Tr=1 |" in text and "| fine-tuned T_J1 % |" in text  # the jailbreak table, per cell
    # the data interventions, each beside the same fine-tuning without it (whose runs the specs share)
    claims = {c["claim"]: c for name in ("pcfg-mixing", "pcfg-randft", "pcfg-jailbreak")
              for c in summary[f"{name}/test"]["claims"]}
    for claim in ("mixing 50 % pretraining data into fine-tuning keeps count(O_PT)",
                  "reFT revives count(O_PT) after randFT about as fast as after plain fine-tuning",
                  "a jailbreak token brings count(O_PT) back"):
        assert claims[claim]["outcome"] == "inconclusive", claim  # one seed
    assert "| low, randFT, η_L, C_Tr=1, reFT η L |" in markdown and "| low, PT mix 50 %, η_L, C_Tr=1, reFT η L |" in markdown
    assert "| cell | pretrained T_NJ % | pretrained T_J1 % | pretrained T_J2 % | fine-tuned T_NJ % |" in markdown
    store = RunStore(shipped_specs_store)
    randft = [r for r in store.runs() if r.kind == "randft"]
    assert len(randft) == 1 and {k: randft[0].config()["data"][k] for k in ("ask", "answer")} == {"ask": "pt", "answer": "ft"}
    assert sorted(r.config()["data"]["mix_pt"] for r in store.runs() if r.kind == "finetune"
                  and r.config()["data"]["mix_pt"]) == [0.5]
    links = re.findall(r"\]\((figures/[^)]+)\)", markdown)
    assert len(links) == len(set(links))  # one figure per cell: no cell's figure overwrites another's
    for link in links:
        assert (paths["markdown"].parent / link).exists()


#: injected into a copy of the page: the title reports how many images the browser decoded
_COUNT_IMAGES = ("<script>window.addEventListener('load', () => { const all = [...document.images]; "
                 "document.title = 'IMAGES ' + all.length + ' LOADED ' + "
                 "all.filter(i => i.complete && i.naturalWidth > 0).length; });</script>")
_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not found:
        if os.environ.get("WRAPPERLAB_REQUIRE_CHROMIUM"):
            pytest.fail("WRAPPERLAB_REQUIRE_CHROMIUM is set but no chromium is installed (.ci/run installs it)")
        pytest.skip("no chromium on this machine (CI installs Debian's)")
    return found


def test_report_renders_in_headless_chromium(shipped_specs_store, tmp_path):
    chromium = _chromium()
    page = write_report(shipped_specs_store)["html"]
    text = page.read_text()
    n_images = text.count("<img ")
    assert n_images >= 10
    probe = tmp_path / "probe.html"
    probe.write_text(text.replace("</body>", _COUNT_IMAGES + "</body>"))
    run = subprocess.run([chromium, *_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=15000",
                          "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=180)
    found = re.search(r"<title>IMAGES (\d+) LOADED (\d+)</title>", run.stdout)
    assert found, run.stderr[-1500:]
    assert int(found[1]) == n_images and int(found[2]) == n_images
    shot = tmp_path / "report.png"
    subprocess.run([chromium, *_FLAGS, f"--user-data-dir={tmp_path / 'profile2'}", "--window-size=1280,2400",
                    f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=180)
    assert shot.exists() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_max_identifier_sort_verdict_is_the_rule_seed_by_seed():
    """The report's Block-0 verdict comes from claims/verdicts.py (sort_kept), paired by seed across the lrs."""
    from wrapperlab.report.render import Section
    from wrapperlab.report.sections.tracr import _tracr_attention_verdict

    stat = {"mean": 1.0, "ci95": 0.1, "n": 3, "missing": 0}
    def cell(label, lr, by_seed):
        return {"label": label, "lr": lr, "attention_change": [stat], "acc_ft_cte0": stat,
                "block0_change_by_seed": by_seed}
    cells = [cell("η_M", "M", {0: 30.0, 1: 28.0, 2: 35.0}), cell("η_VS", "VS", {0: 1.0, 1: 2.0, 2: 1.5})]
    sec, summary = Section("tracr-max"), {}
    _tracr_attention_verdict(sec, cells, {"claims": {}}, "max-identifier", {"η_M": 1e-2, "η_VS": 1e-4}, summary)
    assert summary["sort_verdict"]["outcome"] == "shown" and summary["sort_verdict"]["numbers"]["effect"]["n"] == 3
    assert any("keeps the Block-0 sort" in text and "**shown**" in text for _, text in sec.parts)
    cells[1]["block0_change_by_seed"] = {0: 41.0, 1: 37.0, 2: 46.0}  # the smallest lr moved it most
    _tracr_attention_verdict(Section("again"), cells, {"claims": {}}, "max-identifier", {"η_M": 1e-2, "η_VS": 1e-4},
                             summary)
    assert summary["sort_verdict"]["outcome"] == "not shown"
