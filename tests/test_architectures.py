"""The architecture modules' claims, re-read from what the build measured.

Each `snippets/architectures/<slug>/model.py` asserts its own checks when the build runs it;
these tests read its results.json and check the headline claims again, independently of the
snippet's own thresholds, so a snippet that quietly stopped checking something still fails here:

- the parameter count at the published configuration agrees with the paper's figure within the
  rounding the paper used (or, where the paper's figure is known to be off, within the documented gap);
- the reference comparisons (nn.Transformer, SDPA, explicit masks, naive computations) are exact
  to floating-point precision;
- each notebook ran, trained, and left its numbers.
"""
from __future__ import annotations

import json
import math

import pytest

from conftest import ROOT

OUT = ROOT / "build" / "out" / "architectures"
SLUGS = ["vanilla", "bert", "gpt", "vit", "transformer_xl", "sparse_transformer", "performer", "reformer",
         "longformer", "switch_transformer"]


@pytest.fixture(autouse=True)
def _after_the_build(built):
    """Every test here reads what the build wrote: run (or reuse) the build first."""


def results(slug: str, name: str = "model") -> dict:
    path = OUT / slug / name / "results.json"
    assert path.is_file(), f"{path} missing: the build did not run {slug}/{name}"
    return json.loads(path.read_text())


def get(d: dict, dotted: str):
    for part in dotted.split("|"):
        d = d[part]
    return d


# (slug, key path in results.json ('|' separated), paper's figure, tolerance, where the figure is from)
# Tolerance is half the paper's rounding unit where the figure matches; where the paper is known to be
# inexact the tolerance is the documented gap and the page explains it.
PARAMS = [
    ("vanilla", "params|big|count", 213e6, 1.5e6, "Vaswani et al. 2017, Table 3 (big); vocabulary unstated, see page"),
    ("vanilla", "params|base|count", 65e6, 2.0e6, "Vaswani et al. 2017, Table 3 (base); the table's rows imply a "
                                                   "larger vocabulary than the 37000 of Section 5.1, see page"),
    ("bert", "params|base|total", 110e6, 0.5e6, "Devlin et al. 2018, Section 3 (BERT-base)"),
    ("bert", "params|large|total", 340e6, 5e6, "Devlin et al. 2018, Section 3 (BERT-large, given to tens of millions)"),
    ("gpt", "params|GPT-1|params", 117e6, 0.5e6, "Radford et al. 2018 / GPT-2 paper Section 3"),
    ("gpt", "params|GPT-2 small|params", 124e6, 0.5e6, "OpenAI gpt-2 README (the paper's 117M is GPT-1's count)"),
    ("gpt", "params|GPT-2 XL|params", 1558e6, 0.5e6, "OpenAI gpt-2 README (paper Table 2 says 1542M)"),
    ("vit", "params|ViT-B/16|params", 86e6, 1e6, "Dosovitskiy et al. 2020, Table 1 (given rounded down)"),
    ("vit", "params|ViT-L/16|params", 307e6, 3e6, "Dosovitskiy et al. 2020, Table 1 (the page shows the gap)"),
    ("vit", "params|ViT-H/14|params", 632e6, 0.5e6, "Dosovitskiy et al. 2020, Table 1"),
    ("transformer_xl", "params|12L|count", 41e6, 0.5e6, "Dai et al. 2019, Table 2"),
    ("transformer_xl", "params|24L|count", 277e6, 0.5e6, "Dai et al. 2019, Table 2"),
    ("sparse_transformer", "params|enwik8|count", 95e6, 0.5e6, "Child et al. 2019, Table 1"),
    ("sparse_transformer", "params|imagenet64|count", 152e6, 0.5e6, "Child et al. 2019, Table 1"),
    ("sparse_transformer", "params|cifar10|count", 59e6, 0.5e6, "Child et al. 2019, Table 1"),
    ("longformer", "params|small|count", 41e6, 0.5e6, "Beltagy et al. 2020, Table 2"),
    ("longformer", "params|large|count", 102e6, 0.5e6, "Beltagy et al. 2020, Table 3"),
    ("switch_transformer", "params|t5_base|count", 223e6, 0.5e6, "Fedus et al. 2021, Table 9 (T5-Base)"),
    ("switch_transformer", "params|switch_base|count", 7e9, 0.5e9, "Fedus et al. 2021, Table 9 (Switch-Base)"),
    ("switch_transformer", "params|switch_c|count", 1571e9, 0.5e9, "Fedus et al. 2021, Table 9 (Switch-C)"),
]


@pytest.mark.parametrize("slug,key,paper,tol,where", PARAMS, ids=[f"{s}:{k.split('|')[1]}" for s, k, *_ in PARAMS])
def test_parameter_count_matches_paper(slug, key, paper, tol, where):
    count = get(results(slug), key)
    assert isinstance(count, int) and count > 0
    assert abs(count - paper) <= tol, f"{slug} {key}: {count:,} vs paper {paper:,.0f} ({where})"


def test_papers_without_a_count_match_their_closed_form():
    """Performer and Reformer papers give no parameter count; the module's count equals the formula."""
    for slug in ("performer", "reformer"):
        p = results(slug)["params"]
        assert p["paper_figure"] is None
        assert p["count"] == p["formula"] > 0, (slug, p["count"], p["formula"])


# (slug, key path, bound): maximum absolute error against the reference named in the issue.
EXACT = [
    ("vanilla", "max_abs_err|encoder", 1e-12),  # nn.Transformer encoder, float64, copied weights
    ("vanilla", "max_abs_err|decoder", 1e-12),
    ("vanilla", "max_abs_err|full_model", 1e-12),
    ("bert", "max_abs_err|one_block", 1e-12),  # nn.TransformerEncoderLayer, float64
    ("bert", "max_abs_err|stack", 1e-12),
    ("gpt", "sdpa_max_abs_err", 1e-5),  # SDPA is_causal=True, float32
    ("gpt", "kv_cache|max_abs_logit_diff", 1e-4),
    ("vit", "patch_embed_max_abs_err", 1e-5),  # explicit unfold + linear, float32
    ("transformer_xl", "checks|rel_scores_vs_naive_max_abs_err", 1e-12),  # naive O(N^2) relative scores
    ("transformer_xl", "checks|grad_diff_detached_vs_constant", 0.0),  # memory carries no gradient
    ("sparse_transformer", "max_abs_err_all", 1e-12),  # SDPA with the equivalent boolean mask
    ("reformer", "lsh_vs_full_max_abs_err", 1e-12),  # one bucket = full shared-QK attention
    ("reformer", "reversible|block_reconstruction_max_abs_err_fp64", 1e-12),
    ("longformer", "max_abs_err|float64_max", 1e-12),  # SDPA with the explicit mask
    ("switch_transformer", "one_expert_max_abs_err", 1e-12),  # one expert = dense FFN
]


@pytest.mark.parametrize("slug,key,bound", EXACT, ids=[f"{s}:{k}" for s, k, _ in EXACT])
def test_reference_check_is_exact(slug, key, bound):
    err = get(results(slug), key)
    assert 0.0 <= err <= bound, f"{slug} {key} = {err} (bound {bound})"


def test_gpt_kv_cache_generation_is_identical():
    r = results("gpt")
    assert r["kv_cache"]["tokens_identical"] is True and r["kv_cache"]["n_new"] > 0


def test_bert_masking_rule_is_80_10_10():
    m = results("bert")["masking"]
    for part, expected in (("selected", 0.15), ("mask", 0.8)):
        assert abs(m[part]["rate"] - expected) < 5 * m[part]["sd"], (part, m[part])
    for part in ("random", "unchanged"):
        assert abs(m[part]["rate"] - m[part]["expected"]) < 5 * m[part]["sd"], (part, m[part])
        assert abs(m[part]["expected"] - 0.1) < 0.002


def test_transformer_xl_memory_is_detached_but_matters():
    c = results("transformer_xl")["checks"]
    assert c["grad_diff_detached_vs_constant"] == 0.0  # same gradients as if the memory were a constant
    assert c["grad_diff_live_vs_detached"] > 1e-3  # ... while letting gradients through would change them


def test_sparse_connections_grow_like_n_sqrt_n():
    fit = results("sparse_transformer")["fit"]
    assert abs(fit["full_causal"] - 2.0) < 0.05
    assert abs(fit["strided"] - 1.5) < 0.1 and abs(fit["fixed"] - 1.5) < 0.1


def test_performer_error_shrinks_and_estimator_is_unbiased():
    r = results("performer")
    mse = r["approx"]["mse_orthogonal"]
    assert len(mse) >= 5 and mse[-1] < mse[0] / 5
    assert sum(b < a for a, b in zip(mse, mse[1:])) >= len(mse) - 2  # monotone on average
    assert r["unbiased"]["draws"] >= 1000 and r["unbiased"]["max_abs_z"] < 4


def test_reformer_reversible_layers_cut_activation_memory():
    m = results("reformer")["memory"]
    assert m["ordinary_growth"] > 2 * m["reversible_growth"]
    assert m["reversible_at_max"] < m["ordinary_at_max"] / 2


def test_longformer_memory_is_linear_in_n():
    m = results("longformer")["memory"]
    assert 0.8 < m["exponent"] < 1.3, m["exponent"]
    assert m["at_max_n"]["peak_mib"] < m["at_max_n"]["score_matrix_mib"] / 4


def test_switch_capacity_and_balancing_loss():
    r = results("switch_transformer")
    cap = r["capacity"]
    expected_drops = sum(max(0, c - cap["capacity"]) for c in cap["counts"])
    assert cap["n_dropped"] == expected_drops > 0 and sum(cap["counts"]) == cap["tokens"]
    aux = r["aux_loss"]  # alpha * N * sum_i f_i P_i (Fedus et al. 2021, eq. 4)
    assert math.isclose(aux["value"], aux["independent"], rel_tol=1e-5)


@pytest.mark.parametrize("slug", SLUGS)
def test_notebook_ran_and_left_its_outputs(slug):
    """The executed notebook exists, every code cell ran, and none raised."""
    nb_path = OUT / slug / "notebook" / "notebook.ipynb"
    assert nb_path.is_file(), f"{slug}: the build has no executed notebook"
    nb = json.loads(nb_path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(c.get("execution_count") for c in code), f"{slug}: a code cell did not run"
    assert not any(o.get("output_type") == "error" for c in code for o in c.get("outputs", []))
    assert any(o.get("output_type") == "display_data" for c in code for o in c.get("outputs", [])), \
        f"{slug}: the notebook shows no figure"


@pytest.mark.parametrize("slug", SLUGS)
def test_notebook_shows_no_stray_return_values(slug):
    """A cell ending in an expression prints its value ('Out[7]: 376', '<torch._C.Generator ...>') on the
    page; every notebook ends such lines with `;` or assigns them to `_`, so no cell shows an execute_result."""
    nb = json.loads((OUT / slug / "notebook" / "notebook.ipynb").read_text())
    stray = [(i, "".join(o["data"].get("text/plain", ""))[:60]) for i, c in enumerate(nb["cells"])
             if c["cell_type"] == "code" for o in c.get("outputs", []) if o.get("output_type") == "execute_result"]
    assert not stray, f"{slug}: cells show return values {stray}"


def test_sparse_transformer_local_controls():
    """One local layer cannot see key i - 2l: its held-out loss stays at guessing; the strided model predicts."""
    r = results("sparse_transformer", "notebook")
    assert r["local_held_out"]["1"] > r["uniform_loss"] - 0.05, r["local_held_out"]
    assert r["held_out"] < 0.1 * r["uniform_loss"], r["held_out"]


def test_transformer_xl_held_out_comparisons():
    """Scored on paragraphs neither model trained on: the memory makes a segment's first positions cheaper for
    Transformer-XL, Transformer-XL beats character frequencies, and (as the page says) the baseline trained on
    separate chunks, same size and steps, scores lower still."""
    r = results("transformer_xl", "notebook")
    assert r["first8_reset"] - r["first8_with_memory"] > 0.1, r
    assert r["held_out_with_memory"] < r["unigram_held_out"], r
    assert r["held_out_baseline"] < r["held_out_with_memory"] - 0.05, r


def test_vit_position_embeddings_make_patch_order_matter():
    r = results("vit")
    assert r["shuffle_state_rel_change_at_init"] > 1e-3 and r["shuffle_state_rel_change"] > 0.05, r


def test_lsh_cost_formula_checked_against_a_run():
    """Reformer's count is checked against torch's FLOP count of a real chunked LSH attention, not a mask count."""
    r = results("index", "attention_cost")
    assert r["lsh_runs_checked"] >= 9, r["lsh_runs_checked"]


def test_switch_balancing_loss_ablation():
    """The same run without the load-balancing loss drops clearly more tokens and ends with a higher held-out loss."""
    r = results("switch_transformer", "notebook")
    assert r["no_aux_dropped_last20_mean"] > 3 * r["dropped_last20_mean"], r
    assert r["no_aux_dropped_last20_mean"] - r["dropped_last20_mean"] > 0.02, r
    assert r["no_aux"]["final_val"] > r["final_val"] + 0.03, r
