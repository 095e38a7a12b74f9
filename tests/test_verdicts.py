"""Sentences that interpret a measurement agree with the measurement.

Some snippets write the page's machine-dependent sentences themselves ("1.6 times slower", "This CPU
has no native bfloat16 instructions ...", "memory does slow it down") into a `verdicts` object in
their results.json, and the page renders them with `{{ result name.verdicts.key }}`. Each check below
takes one snippet's results dict and re-derives every verdict's direction, number and wording from
the numbers next to it, independently of the snippet's code, so a verdict that says "faster" over a
slower timing, or "has" where the flags are absent, fails here.

`CHECKS` maps a snippet (its path under build/out, without the results.json) to its check, and
`check_out_dir(out)` applies them all to a build/out-like folder: the same checks can be run on
results produced under another kernel set (for example with ATEN_CPU_CAPABILITY=avx2).
"""
from __future__ import annotations

import copy
import importlib.util
import json
import math
import re
from pathlib import Path

import pytest

from conftest import ROOT

OUT = ROOT / "build" / "out"
TIE = 1.1  # the snippets call two timings "about as fast" when neither is 10% faster than the other


# --------------------------------------------------------------------------- shared helpers

def check_comparison(text: str, new: float, ref: float, what: str) -> None:
    """`text` says how `new` compares with `ref` (both times): 'X times faster/slower' or 'about as fast'."""
    r = ref / new  # > 1: new is faster
    if "about as fast" in text:
        assert 1 / TIE < r < TIE, f"{what}: says 'about as fast' but the ratio is {r:.3f}: {text!r}"
        assert not re.search(r"times (faster|slower)", text), f"{what}: two verdicts in {text!r}"
        return
    m = re.search(r"(\d+(?:\.\d+)?)(?: times|×) (faster|slower)", text)
    assert m, f"{what}: no 'N times faster/slower' in {text!r}"
    number, word = float(m.group(1)), m.group(2)
    expected_word = "faster" if r >= 1 else "slower"
    assert word == expected_word, f"{what}: says {word!r} but new={new:.4g}, ref={ref:.4g}: {text!r}"
    size = r if r >= 1 else 1 / r
    decimals = len(m.group(1).partition(".")[2])
    assert abs(number - size) <= 0.5 * 10 ** -decimals + 1e-9, \
        f"{what}: says {number} times {word}, the numbers give {size:.3f}: {text!r}"
    assert number >= 1, f"{what}: a factor below 1 next to {word!r}: {text!r}"


def check_ms_pair(text: str, new_ms: float, ref_ms: float, what: str) -> None:
    """'took A ms against B ms ...': A and B are the measured values (as rounded in the text)."""
    m = re.search(r"took (\d+(?:\.\d+)?) ms against (?:the baseline's )?(\d+(?:\.\d+)?) ms", text)
    assert m, f"{what}: no 'took A ms against B ms' in {text!r}"
    for shown, value in ((m.group(1), new_ms), (m.group(2), ref_ms)):
        decimals = len(shown.partition(".")[2])
        assert abs(float(shown) - value) <= 0.5 * 10 ** -decimals + 1e-9, f"{what}: {shown} ms is not {value:.4g} ms"


def percent_in(text: str, pattern: str) -> float:
    m = re.search(pattern, text)
    assert m, f"no match for {pattern!r} in {text!r}"
    return float(m.group(1)) / 100


# --------------------------------------------------------------------------- one check per snippet

def check_fixes(r: dict) -> None:
    """problems/18_realtime_deployment/fixes: bf16 / int8 instructions, speed words, table cells."""
    v, m, rows = r["verdicts"], r["machine"], r["rows"]
    cap = m["cpu_capability"]
    kernels = v["kernels"]
    if cap == "DEFAULT":
        assert "without vector instructions (DEFAULT)" in kernels and "vectorised" not in kernels, kernels
    else:
        assert f"vectorised kernels used the {cap} instruction set" in kernels, kernels
    for key, val in m.get("kernel_env", {}).items():
        assert f"{key}={val}" in kernels, f"kernel setting {key} not reported: {kernels!r}"
    assert v["threads"] == ("one CPU thread" if m["torch_threads"] == 1 else f"{m['torch_threads']} CPU threads")

    base, cache = rows["baseline"], rows["kv_cache"]
    check_ms_pair(v["kv_cache_ttft"], cache["ttft_ms"], base["ttft_ms"], "kv_cache_ttft")
    check_comparison(v["kv_cache_ttft"], cache["ttft_ms"], base["ttft_ms"], "kv_cache_ttft")
    assert set(v["table"]) == {n.replace("+", "_") for n in rows if n != "baseline"}, sorted(v["table"])
    for name in (n for n in rows if n != "baseline"):
        cells = v["table"][name.replace("+", "_")]  # keys without '+', for the page's placeholders
        check_comparison(cells["ttft"], rows[name]["ttft_ms"], base["ttft_ms"], f"table {name} TTFT")
        check_comparison(cells["per_token"], rows[name]["per_token_ms"], base["per_token_ms"], f"table {name} per token")

    for key, flags in (("bf16", ("avx512_bf16", "amx_bf16")), ("int8", ("avx512_vnni", "avx_vnni", "amx_int8"))):
        name = f"kv_cache+{key}"
        if name not in rows:
            assert f"{key}_cpu" not in v
            continue
        have = m[f"cpu_{key}_support"]
        sentence = v[f"{key}_cpu"]
        assert set(have) <= set(flags), have
        if have:
            assert sentence.startswith("This CPU has ") and "has no" not in sentence, sentence
            assert all(f in sentence for f in have), f"flags {have} not all named: {sentence!r}"
            assert not any(f in sentence for f in set(flags) - set(have)), f"names a flag it lacks: {sentence!r}"
        else:
            assert sentence.startswith("This CPU has no "), f"no {key} flags, but: {sentence!r}"
            assert all(f in sentence for f in flags), f"should list the flags it looked for: {sentence!r}"
        assert kernels.rstrip(".") in sentence, f"the {key} sentence should say which kernels ran: {sentence!r}"
        for part, unit in (("prefill", "ttft_ms"), ("decode", "per_token_ms")):
            text = v[f"{key}_{part}"]
            check_ms_pair(text, rows[name][unit], cache[unit], f"{key}_{part}")
            check_comparison(text, rows[name][unit], cache[unit], f"{key}_{part}")

    if "bf16_summary" in v:
        s, have = v["bf16_summary"], bool(m["cpu_bf16_support"])
        ratio = cache["ttft_ms"] / rows["kv_cache+bf16"]["ttft_ms"]  # > 1: bf16 prefill faster
        if "within 10%" in v["bf16_prefill"]:
            assert "neither sped up nor slowed down" in s, s
        elif ratio > 1:
            assert ("paid off" in s) if have else ("was faster" in s and "without native" in s), s
        else:
            assert ("did not make bfloat16 faster" in s) if have else ("cost time" in s and "without native" in s), s
        if not have:
            assert "having the instructions" not in s and "despite the instructions" not in s, s


def check_latency_profile(r: dict) -> None:
    """problems/18_realtime_deployment/latency_profile: threads, batch-2 cost, latency-model error."""
    v, m, e = r["verdicts"], r["machine"], r["end_to_end"]
    assert v["threads"] == ("one CPU thread" if m["torch_threads"] == 1 else f"{m['torch_threads']} CPU threads")
    r2 = r["batch2"]["ratio"]
    text = v["batch2"]
    shown = re.search(r"took (\d+\.\d+) times as long", text)
    assert shown and abs(float(shown.group(1)) - r2) <= 0.005 + 1e-9, f"batch-2 ratio {r2:.3f} vs {text!r}"
    if r2 <= 1.15:
        assert "almost for free" in text and "not free" not in text, text
    else:
        assert "not free" in text and "almost for free" not in text, text
        assert abs(percent_in(text, r"(\d+)% of a batch-1 step") - (r2 - 1)) <= 0.005 + 1e-9, text
    off = e["model_ms"] / e["measured_ms"] - 1
    text = v["end_to_end"]
    if abs(off) < 0.01:
        assert text.startswith("right to within 1%"), f"model/measured = {1 + off:.3f}: {text!r}"
    else:
        assert text.startswith("overestimated" if off >= 0 else "underestimated"), f"model/measured = {1 + off:.3f}: {text!r}"
        assert abs(percent_in(text, r"by (\d+)%") - abs(off)) <= 0.005 + 1e-9, text
    assert f"median of {len(e['rounds'])} rounds" in text and text.endswith(e["clock"]), text


def check_roofline(r: dict) -> None:
    """problems/17_hardware_inefficiency/roofline: fused against unfused; is the softmax waiting on memory?"""
    v = r["verdicts"]
    fused_ms = r["parts"]["fused_attention"]["ms"]
    check_ms_pair(v["fused"], fused_ms, r["unfused_total_ms"], "fused")
    check_comparison(v["fused"], fused_ms, r["unfused_total_ms"], "fused")
    # the softmax on the score matrix, against the bandwidth roof (the add's GB/s)
    f, text = r["parts"]["softmax"]["fraction_of_roof"], v["softmax_roof"]
    shown = re.search(r"^reached (?:only )?(\d+)% of the bandwidth roof", text)
    assert shown and abs(int(shown.group(1)) - 100 * f) <= 0.5 + 1e-9, f"share of roof {f:.3f} vs {text!r}"
    if f >= 0.7:
        assert "only" not in text and "as the roofline predicts" in text, f"share of roof {f:.2f}: {text!r}"
    elif f >= 0.4:
        assert "only" in text and "part of its time, not all of it" in text, f"share of roof {f:.2f}: {text!r}"
    else:
        assert "only" in text and "something other than moving bytes" in text, f"share of roof {f:.2f}: {text!r}"
        assert re.findall(r"(\d+)%", text)[1] == shown.group(1), text
    one = r.get("one_core")
    if not one:
        assert v["softmax"] == "not measured on this device"
        return
    s, text = one["memory_slowdown"], v["softmax"]
    assert text == one["verdict"]
    if s >= 1.3:
        assert "memory does slow it down" in text and "roofline's verdict holds" in text, f"slowdown {s:.2f}: {text!r}"
    elif s >= 1.1:
        assert "only" in text and "most of its pace" in text, f"slowdown {s:.2f}: {text!r}"
    else:
        assert "no faster" in text and "does not hold" in text, f"slowdown {s:.2f}: {text!r}"
    if s >= 1.1:
        shown = re.search(r"ran (?:only )?(\d+\.\d) times faster", text)
        assert shown and abs(float(shown.group(1)) - s) <= 0.05 + 1e-9, f"slowdown {s:.3f} vs {text!r}"


def check_tiled_attention(r: dict) -> None:
    """problems/17_hardware_inefficiency/tiled_attention: fused SDPA against naive attention."""
    a = r["at_max_n"]
    check_comparison(r["verdicts"]["sdpa_vs_naive"], a["sdpa_ms"], a["naive_ms"], "sdpa_vs_naive")
    check_comparison(r["verdicts"]["tiled_vs_sdpa"], a["tiled_ms"], a["sdpa_ms"], "tiled_vs_sdpa")


def check_tokens_vs_resolution(r: dict) -> None:
    """problems/16_inefficient_dense_inputs/tokens_vs_resolution: time share next to FLOP share."""
    text, s = r["verdicts"]["layer_224"], r["layer_split"]["224"]
    shares = re.search(r"took (\d+\.\d)% of one layer's time, (\d+\.\d) times its (\d+\.\d)% share of the FLOPs", text)
    assert shares, text
    assert abs(float(shares.group(1)) / 100 - s["attention_time_share"]) <= 0.0005 + 1e-9, text
    assert abs(float(shares.group(2)) - s["attention_time_share"] / s["attention_flop_share"]) <= 0.05 + 1e-9, text
    assert abs(float(shares.group(3)) / 100 - s["attention_flop_share"]) <= 0.0005 + 1e-9, text
    for row in r["table"]:
        assert row["tokens_with_cls"] == row["tokens"] + 1


def check_window_attention(r: dict) -> None:
    """problems/16_inefficient_dense_inputs/window_attention: windows against global attention."""
    v = r["verdicts"]
    for key, row in (("at_56", r["at_56"]), ("at_max", r["at_max"]), ("at_min", r["rows"][0])):
        check_comparison(v[key], row["window_ms"], row["global_ms"], key)


def check_attribution(r: dict) -> None:
    """problems/15_poor_interpretability/attribution: one layer's raw map against rollout and |grad x input|."""
    hit, text = r["finds_match"], r["verdicts"]["raw_vs_methods"]
    words = "as often as|more often than|less often than"
    m = re.fullmatch(rf"the raw layer-1 map picked the match in (\d+\.\d)% of the sequences, ({words}) rollout "
                     rf"\((\d+\.\d)%\) and ({words}) \|gradient × input\| \((\d+\.\d)%\)", text)
    assert m, text
    raw = hit["layer1_attention"]
    for shown, value in ((m.group(1), raw), (m.group(3), hit["rollout"]), (m.group(5), hit["grad_x_input_abs"])):
        assert abs(float(shown) / 100 - value) <= 0.0005 + 1e-9, f"{shown}% is not {value:.4f}: {text!r}"
    n = r["config"]["test"]  # hit rates are multiples of 1/n: equal, or at least 1/n apart
    for word, other in ((m.group(2), hit["rollout"]), (m.group(4), hit["grad_x_input_abs"])):
        expected = "as often as" if abs(raw - other) < 0.5 / n else "more often than" if raw > other else "less often than"
        assert word == expected, f"raw {raw:.4f} vs {other:.4f}: says {word!r}: {text!r}"


def check_speculative(r: dict) -> None:
    """problems/04_slow_autoregressive_decoding/speculative: which k was fastest, and where the formula peaks."""
    v, rows = r["verdicts"], r["rows"]
    best = max(rows, key=lambda row: row["speedup"])
    text = v["k_ranking"]
    assert f"The highest median speed-up, {best['speedup']:.2f} times, was at k = {best['k']}," in text, text
    overlap = {row["k"] for row in rows if row is not best
               and row["speedup_max"] >= best["speedup_min"] and row["speedup_min"] <= best["speedup_max"]}
    if overlap:
        m = re.search(r"the ranges? of k = ([\d, and]+) over the (\d+) repeats overlaps? its range", text)
        assert m and "does not tell" in text, f"ranges overlap ({sorted(overlap)}), but: {text!r}"
        assert {int(k) for k in re.findall(r"\d+", m.group(1))} == overlap, f"overlapping k {sorted(overlap)}: {text!r}"
        assert int(m.group(2)) == r["config"]["repeats"], text
        assert "faster in every one" not in text, text
    else:
        assert all(row["speedup_max"] < best["speedup_min"] for row in rows if row is not best), rows
        assert f"faster in every one of the {r['config']['repeats']} repeats" in text and "does not tell" not in text, text
    alpha, c, ks = r["alpha"], r["cost_ratio_c"], r["config"]["ks"]
    formula = lambda k: (1 - alpha ** (k + 1)) / ((1 - alpha) * (k * c + 1))  # noqa: E731
    k_star = max(range(1, 65), key=formula)
    peak = v["formula_peak"]
    assert peak.startswith(f"at k = {k_star}") and r["formula_peak"]["k"] == k_star, f"formula peaks at {k_star}: {peak!r}"
    assert ("beyond the largest k tried here" in peak) == (k_star > max(ks)), f"k* = {k_star}, ks = {ks}: {peak!r}"
    for row in rows:  # the per-k numbers the sentences rest on
        assert row["speedup_min"] <= row["speedup"] <= row["speedup_max"], row



def _se(seeds) -> float:
    """Standard error of the mean over seeds, recomputed from the seeds themselves."""
    n = len(seeds)
    m = sum(seeds) / n
    return (sum((s - m) ** 2 for s in seeds) / (n - 1)) ** 0.5 / n ** 0.5 if n > 1 else 0.0


def check_crossover(r: dict) -> None:
    """learning_curves' sentence on the full split: CNN still ahead, level, or overtaken, at two standard errors."""
    n = r["sizes"][-1]
    seeds = r["gap"][str(n)]["seeds"]
    m, se, text = sum(seeds) / len(seeds), _se(seeds), r["verdicts"]["crossover"]
    if m > 2 * se:
        assert text.startswith("It does **not** show the crossover") and "still ahead" in text, f"{m:+.4f} ± {se:.4f}: {text!r}"
    elif m < -2 * se:
        assert "the ViT overtakes the CNN" in text and "not" not in text, f"{m:+.4f} ± {se:.4f}: {text!r}"
    else:
        assert "level within two standard errors" in text and "still ahead" not in text, f"{m:+.4f} ± {se:.4f}: {text!r}"
    shown = re.search(r"(?:by (\d\.\d{3}) \(|\(gap ([+-]\d\.\d{3}), )standard error (\d\.\d{3})\)", text)
    assert shown, f"no gap and standard error in {text!r}"
    value = abs(float(shown.group(1) or shown.group(2)))
    assert abs(value - abs(m)) <= 0.0005 + 1e-9 and abs(float(shown.group(3)) - se) <= 0.0005 + 1e-9, \
        f"gap {m:+.4f}, standard error {se:.4f}: {text!r}"
    assert f"of {n} images" in text and f"ahead for {sum(g > 0 for g in seeds)} of {len(seeds)} seeds" in text, text


def check_learning_curves(r: dict) -> None:
    """problems/06_data_hungry/learning_curves: does the CNN-ViT gap narrow at every step up in size?"""
    sizes, gap, text = r["sizes"], r["gap"], r["verdicts"]["gap_trend"]
    means = [sum(gap[str(n)]["seeds"]) / len(gap[str(n)]["seeds"]) for n in sizes]
    listed = re.search(r"\(((?:-?\d+\.\d{3}, )+-?\d+\.\d{3})\)", text)
    assert listed, f"gap_trend should list the mean gaps: {text!r}"
    shown = [float(v) for v in listed.group(1).split(", ")]
    assert len(shown) == len(sizes) and all(abs(s - m) <= 0.0005 + 1e-9 for s, m in zip(shown, means)), \
        f"gap_trend lists {shown}, the seeds give {[round(m, 4) for m in means]}: {text!r}"
    check_crossover(r)
    rises = [(a, b, i) for i, (a, b) in enumerate(zip(sizes, sizes[1:])) if means[i + 1] > means[i]]
    if not rises:
        assert text.startswith("narrows at every step") and "widens" not in text, f"no rise, but: {text!r}"
        return
    assert text.startswith("narrows overall but not at every step"), f"the gap rises at {rises}, but: {text!r}"
    assert text.count("widens") == len(rises), f"{len(rises)} rise(s) expected in {text!r}"
    for a, b, i in rises:
        two_se = 2 * math.hypot(_se(gap[str(a)]["seeds"]), _se(gap[str(b)]["seeds"]))
        m = re.search(rf"from {a} to {b} images it widens from (-?\d\.\d{{3}}) to (-?\d\.\d{{3}}) \(\+(\d\.\d{{3}}), "
                      rf"(within|more than) two standard errors of the difference, (\d\.\d{{3}})\)", text)
        assert m, f"no sentence for the rise from {a} to {b}: {text!r}"
        rise = means[i + 1] - means[i]
        for got, want in ((m.group(1), means[i]), (m.group(2), means[i + 1]), (m.group(3), rise), (m.group(5), two_se)):
            assert abs(float(got) - want) <= 0.0005 + 1e-9, f"{got} is not {want:.4f}: {text!r}"
        assert m.group(4) == ("within" if rise <= two_se else "more than"), \
            f"rise {rise:.4f} against 2 SE {two_se:.4f}, but says {m.group(4)!r}: {text!r}"


CHECKS = {
    "problems/18_realtime_deployment/fixes": check_fixes,
    "problems/18_realtime_deployment/latency_profile": check_latency_profile,
    "problems/17_hardware_inefficiency/roofline": check_roofline,
    "problems/17_hardware_inefficiency/tiled_attention": check_tiled_attention,
    "problems/16_inefficient_dense_inputs/tokens_vs_resolution": check_tokens_vs_resolution,
    "problems/16_inefficient_dense_inputs/window_attention": check_window_attention,
    "problems/15_poor_interpretability/attribution": check_attribution,
    "problems/04_slow_autoregressive_decoding/speculative": check_speculative,
    "problems/06_data_hungry/learning_curves": check_learning_curves,
}


def check_out_dir(out: Path, only: list[str] | None = None) -> dict[str, str]:
    """Apply every check in CHECKS to `out/<snippet>/results.json`; returns {snippet: 'ok' or the error}.

    `out` is a build/out-like folder, e.g. results produced under another kernel set. A missing
    results.json is reported, not skipped.
    """
    report = {}
    for name in only or CHECKS:
        path = Path(out) / name / "results.json"
        if not path.is_file():
            report[name] = f"missing {path}"
            continue
        try:
            CHECKS[name](json.loads(path.read_text()))
            report[name] = "ok"
        except AssertionError as exc:
            report[name] = f"FAILED: {exc}"
    return report


# --------------------------------------------------------------------------- the build's outputs

@pytest.mark.parametrize("name", sorted(CHECKS))
def test_built_verdicts_agree_with_their_numbers(built, name):
    path = OUT / name / "results.json"
    assert path.is_file(), f"{path} missing: the build did not run {name}"
    CHECKS[name](json.loads(path.read_text()))


def test_every_snippet_with_verdicts_has_a_check(built):
    """A snippet that starts writing `verdicts` must get a check here too."""
    with_verdicts = sorted(p.parent.relative_to(OUT).as_posix() for p in OUT.rglob("results.json")
                           if "verdicts" in json.loads(p.read_text()))
    missing = [n for n in with_verdicts if n not in CHECKS]
    assert not missing, f"snippets that write verdicts without a check in CHECKS: {missing}"


# --------------------------------------------------------------------------- the checks can fail

def _snippet(rel: str):
    """Import a snippet as a module (its main() is not run) to call its verdict functions."""
    path = ROOT / "snippets" / f"{rel}.py"
    spec = importlib.util.spec_from_file_location("snippet_" + path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _rows(base, cache, bf16, int8):
    """Synthetic fixes.py rows: (ttft_ms, per_token_ms) per variant."""
    return {name: {"ttft_ms": t, "per_token_ms": p}
            for name, (t, p) in (("baseline", base), ("kv_cache", cache), ("kv_cache+bf16", bf16), ("kv_cache+int8", int8))}


def _machine(bf16=(), int8=(), cap="AVX512", env=None, threads=1):
    return {"cpu_capability": cap, "kernel_env": env or {}, "torch_threads": threads,
            "cpu_bf16_support": list(bf16), "cpu_int8_support": list(int8)}


FIXES_CASES = {
    # the review's AMD EPYC: AVX2, no bf16 or VNNI flags, bf16 prefill 6.2 times slower
    "no flags, bf16 slower": (_machine(cap="AVX2"), _rows((84, 90), (84, 9), (519, 10), (40, 5))),
    "flags, bf16 slower (this Xeon)": (_machine(["avx512_bf16"], ["avx512_vnni", "avx_vnni"]),
                                       _rows((32, 36), (33, 3.9), (50, 4.2), (15, 2.0))),
    "flags, bf16 faster": (_machine(["amx_bf16", "avx512_bf16"], ["amx_int8"]), _rows((60, 66), (60, 6), (20, 5), (30, 3))),
    "no flags, bf16 faster, int8 slower": (_machine(cap="DEFAULT", env={"ATEN_CPU_CAPABILITY": "default"}),
                                           _rows((60, 66), (61, 6), (50, 6.1), (80, 9))),
    "bf16 within 10%": (_machine(["avx512_bf16"]), _rows((60, 66), (60, 6), (62, 6), (30, 3))),
}


@pytest.mark.parametrize("case", sorted(FIXES_CASES))
def test_fixes_verdicts_follow_the_numbers(case):
    fixes = _snippet("problems/18_realtime_deployment/fixes")
    m, rows = FIXES_CASES[case]
    result = {"machine": m, "rows": rows, "verdicts": fixes.verdicts(m, rows, "x86")}
    check_fixes(result)
    v = result["verdicts"]
    if not m["cpu_bf16_support"]:
        assert "has no native bfloat16 instructions (none of avx512_bf16, amx_bf16" in v["bf16_cpu"]
    if rows["kv_cache+bf16"]["ttft_ms"] > 1.1 * rows["kv_cache"]["ttft_ms"]:
        assert "slower" in v["bf16_prefill"]


def _swap_first(text: str, pairs) -> str:
    for a, b in pairs:
        if a in text:
            return text.replace(a, b, 1)
    raise AssertionError(f"nothing to falsify in {text!r}")


OPPOSITES = [("faster", "slower"), ("slower", "faster"), ("This CPU has no ", "This CPU has "),
             ("This CPU has ", "This CPU has no "), ("about as fast (within 10%)", "1.5 times faster"),
             ("paid off", "did not make bfloat16 faster"), ("did not make bfloat16 faster", "paid off"),
             ("cost time", "was faster"), ("was faster", "cost time"),
             ("neither sped up nor slowed down", "paid off"), ("one CPU thread", "4 CPU threads")]


@pytest.mark.parametrize("case", sorted(FIXES_CASES))
@pytest.mark.parametrize("key", ["bf16_cpu", "int8_cpu", "bf16_prefill", "bf16_decode", "int8_prefill",
                                 "int8_decode", "kv_cache_ttft", "bf16_summary", "threads"])
def test_fixes_check_rejects_a_wrong_verdict(case, key):
    fixes = _snippet("problems/18_realtime_deployment/fixes")
    m, rows = FIXES_CASES[case]
    result = {"machine": m, "rows": rows, "verdicts": fixes.verdicts(m, rows, "x86")}
    result["verdicts"][key] = _swap_first(result["verdicts"][key], OPPOSITES)
    with pytest.raises(AssertionError):
        check_fixes(result)


def test_fixes_check_rejects_a_factor_below_one():
    fixes = _snippet("problems/18_realtime_deployment/fixes")
    m, rows = FIXES_CASES["no flags, bf16 slower"]
    result = {"machine": m, "rows": rows, "verdicts": fixes.verdicts(m, rows, "x86")}
    ok = copy.deepcopy(result)
    check_fixes(ok)
    # the review's sentence: 519 ms against 84 ms rendered as "0.2 times faster"
    result["verdicts"]["bf16_prefill"] = "took 519.0 ms against 84.0 ms in float32 with the same cache: 0.2 times faster"
    with pytest.raises(AssertionError):
        check_fixes(result)
    result = copy.deepcopy(ok)
    result["verdicts"]["table"]["kv_cache_bf16"]["ttft"] = "0.16× faster"
    with pytest.raises(AssertionError):
        check_fixes(result)


def _latency(step1, step2, model_ms, measured_ms, threads=1):
    e = {"model_ms": model_ms, "measured_ms": measured_ms, "rounds": [{}] * 7, "clock": "thread CPU time"}
    return {"machine": {"torch_threads": threads}, "end_to_end": e,
            "batch2": {"ratio": step2 / step1, "rounds": [step2 / step1] * 7, "clock": "thread CPU time"}}


@pytest.mark.parametrize("args", [(4.0, 5.76, 150, 160), (4.0, 4.1, 170, 160), (4.0, 3.6, 150, 160), (4.0, 4.6, 100, 130),
                                  (4.0, 4.0, 160.5, 160)])
def test_latency_profile_verdicts_follow_the_numbers(args):
    lp = _snippet("problems/18_realtime_deployment/latency_profile")
    summary = _latency(*args)
    summary["verdicts"] = lp.verdicts(summary)
    check_latency_profile(summary)
    r2 = args[1] / args[0]
    assert ("not free" in summary["verdicts"]["batch2"]) == (r2 > 1.15)
    for key, pairs in (("batch2", [("almost for free", "not free"), ("not free", "almost for free")]),
                       ("end_to_end", [("overestimated", "underestimated"), ("underestimated", "overestimated"),
                                       ("right to within 1%", "overestimated by 5%")]),
                       ("threads", [("one CPU thread", "2 CPU threads")])):
        bad = copy.deepcopy(summary)
        bad["verdicts"][key] = _swap_first(bad["verdicts"][key], pairs)
        with pytest.raises(AssertionError):
            check_latency_profile(bad)


@pytest.mark.parametrize("slowdown", [0.95, 1.05, 1.2, 1.6])
def test_roofline_softmax_verdict_follows_the_slowdown(slowdown):
    rl = _snippet("problems/17_hardware_inefficiency/roofline")
    verdict = rl.softmax_verdict(slowdown)
    result = {"parts": {"fused_attention": {"ms": 88.0}, "softmax": {"fraction_of_roof": 0.3}}, "unfused_total_ms": 130.0,
              "one_core": {"memory_slowdown": slowdown, "verdict": verdict},
              "verdicts": {"fused": f"took 88.0 ms against 130.0 ms for the three parts together: {rl.compare(88.0, 130.0)}",
                           "softmax": verdict, "softmax_roof": rl.softmax_roof_verdict(0.3)}}
    check_roofline(result)
    for wrong in (rl.softmax_verdict(s) for s in (0.95, 1.2, 1.6)):
        if wrong != verdict:  # the verdict written for another slowdown must be rejected
            bad = copy.deepcopy(result)
            bad["verdicts"]["softmax"] = bad["one_core"]["verdict"] = wrong
            with pytest.raises(AssertionError):
                check_roofline(bad)
    bad = copy.deepcopy(result)
    bad["verdicts"]["fused"] = bad["verdicts"]["fused"].replace("faster", "slower")
    with pytest.raises(AssertionError):
        check_roofline(bad)


@pytest.mark.parametrize("share", [0.12, 0.35, 0.45, 0.69, 0.75, 0.95])
def test_roofline_softmax_roof_verdict_follows_the_share(share):
    rl = _snippet("problems/17_hardware_inefficiency/roofline")
    result = {"parts": {"fused_attention": {"ms": 88.0}, "softmax": {"fraction_of_roof": share}}, "unfused_total_ms": 130.0,
              "verdicts": {"fused": f"took 88.0 ms against 130.0 ms for the three parts together: {rl.compare(88.0, 130.0)}",
                           "softmax": "not measured on this device", "softmax_roof": rl.softmax_roof_verdict(share)}}
    check_roofline(result)
    for other in (0.2, 0.5, 0.9, share + 0.05):  # a verdict written for another share must be rejected
        wrong = rl.softmax_roof_verdict(other)
        if wrong != result["verdicts"]["softmax_roof"]:
            bad = copy.deepcopy(result)
            bad["verdicts"]["softmax_roof"] = wrong
            with pytest.raises(AssertionError):
                check_roofline(bad)


def _hits(raw, rollout, gxi):
    return {"layer1_attention": raw, "layer2_attention": raw, "rollout": rollout, "grad_x_input_abs": gxi,
            "grad_x_input_signed": gxi}


@pytest.mark.parametrize("rates", [(1.0, 1.0, 0.894), (0.999, 1.0, 0.9), (0.95, 0.9, 0.96), (0.9, 0.9, 0.9)])
def test_attribution_verdict_follows_the_rates(rates):
    at = _snippet("problems/15_poor_interpretability/attribution")
    hit = _hits(*rates)
    result = {"finds_match": hit, "config": {"test": 1000}, "verdicts": at.verdicts(hit)}
    check_attribution(result)
    swaps = [("as often as", "more often than"), ("more often than", "less often than"),
             ("less often than", "as often as")]
    for i in range(2):  # each of the two comparison words, swapped, must be rejected
        bad = copy.deepcopy(result)
        text, done = bad["verdicts"]["raw_vs_methods"], False
        parts = text.split(" rollout ")
        target = 0 if i == 0 else 1
        for a, b in swaps:
            if a in parts[target]:
                parts[target] = parts[target].replace(a, b, 1)
                done = True
                break
        assert done, text
        bad["verdicts"]["raw_vs_methods"] = " rollout ".join(parts)
        with pytest.raises(AssertionError):
            check_attribution(bad)
    bad = copy.deepcopy(result)
    bad["verdicts"]["raw_vs_methods"] = bad["verdicts"]["raw_vs_methods"].replace(f"{rates[1]:.1%}", "50.0%", 1)
    if bad["verdicts"]["raw_vs_methods"] != result["verdicts"]["raw_vs_methods"]:
        with pytest.raises(AssertionError):
            check_attribution(bad)


@pytest.mark.parametrize("rel", ["problems/17_hardware_inefficiency/tiled_attention",
                                 "problems/16_inefficient_dense_inputs/window_attention",
                                 "problems/17_hardware_inefficiency/roofline",
                                 "problems/18_realtime_deployment/fixes"])
@pytest.mark.parametrize("new,ref", [(10.0, 45.0), (50.0, 10.0), (10.0, 10.5), (10.0, 10.9), (11.2, 10.0)])
def test_compare_helpers_agree_with_the_check(rel, new, ref):
    """Every snippet's compare(): the number and the word agree, in both directions and near a tie."""
    text = _snippet(rel).compare(new, ref)
    check_comparison(text, new, ref, rel)
    with pytest.raises(AssertionError):
        check_comparison(_swap_first(text, OPPOSITES), new, ref, rel)


def test_window_and_tiled_checks_reject_swapped_words():
    tiled = {"at_max_n": {"sdpa_ms": 56.6, "naive_ms": 254.2, "tiled_ms": 551.0},
             "verdicts": {"sdpa_vs_naive": "4.5 times faster", "tiled_vs_sdpa": "9.7 times slower"}}
    check_tiled_attention(tiled)
    tiled["verdicts"]["sdpa_vs_naive"] = "4.5 times slower"
    with pytest.raises(AssertionError):
        check_tiled_attention(tiled)
    row = {"window_ms": 8.7, "global_ms": 2.0}
    win = {"at_56": row, "at_max": row, "rows": [row],
           "verdicts": {"at_56": "4.3 times slower", "at_max": "4.3 times slower", "at_min": "4.3 times slower"}}
    check_window_attention(win)
    win["verdicts"]["at_min"] = "4.3 times faster"
    with pytest.raises(AssertionError):
        check_window_attention(win)


def test_tokens_check_rejects_a_wrong_share():
    split = {"attention_time_share": 0.046, "attention_flop_share": 0.041}
    split["time_over_flop_share"] = split["attention_time_share"] / split["attention_flop_share"]
    text = ("attention (SDPA: scores, softmax and weights times values) took 4.6% of one layer's time, "
            "1.1 times its 4.1% share of the FLOPs")
    result = {"verdicts": {"layer_224": text}, "layer_split": {"224": split},
              "table": [{"tokens": 196, "tokens_with_cls": 197}]}
    check_tokens_vs_resolution(result)
    result["verdicts"]["layer_224"] = text.replace("4.6%", "14.6%")
    with pytest.raises(AssertionError):
        check_tokens_vs_resolution(result)


def _spec_rows(speedups):
    """Synthetic speculative.py rows: {k: (min, median, max)}."""
    return [{"k": k, "speedup_min": lo, "speedup": med, "speedup_max": hi} for k, (lo, med, hi) in speedups.items()]


SPEC_CASES = {
    "ranges overlap": ({1: (1.0, 1.1, 1.2), 2: (1.15, 1.3, 1.4), 3: (1.2, 1.35, 1.5), 6: (0.8, 0.9, 1.0)}, 0.8, 0.1),
    "one overlaps": ({1: (1.0, 1.1, 1.2), 3: (1.15, 1.3, 1.4), 6: (0.8, 0.9, 1.0)}, 0.9, 0.05),
    "clear winner": ({1: (1.0, 1.1, 1.2), 2: (1.3, 1.4, 1.5), 4: (0.9, 1.0, 1.1)}, 0.7, 0.2),
}


@pytest.mark.parametrize("case", sorted(SPEC_CASES))
def test_speculative_verdicts_follow_the_numbers(case):
    spec = _snippet("problems/04_slow_autoregressive_decoding/speculative")
    speedups, alpha, c = SPEC_CASES[case]
    rows = _spec_rows(speedups)
    ks = sorted(speedups)
    peak = spec.formula_peak(alpha, c)
    result = {"rows": rows, "alpha": alpha, "cost_ratio_c": c, "formula_peak": peak,
              "config": {"repeats": 5, "ks": ks}, "verdicts": spec.k_verdicts(rows, 5, peak, ks)}
    check_speculative(result)
    assert ("does not tell" in result["verdicts"]["k_ranking"]) == (case != "clear winner")
    assert ("beyond" in result["verdicts"]["formula_peak"]) == (peak["k"] > max(ks))
    bad = copy.deepcopy(result)  # a ranking written for other numbers is rejected
    bad["rows"][0]["speedup"], bad["rows"][0]["speedup_max"] = 9.0, 9.5
    with pytest.raises(AssertionError):
        check_speculative(bad)
    bad = copy.deepcopy(result)  # a peak written for another alpha is rejected
    bad["verdicts"]["formula_peak"] = spec.k_verdicts(rows, 5, spec.formula_peak(0.99, 0.01), ks)["formula_peak"]
    with pytest.raises(AssertionError):
        check_speculative(bad)
    bad = copy.deepcopy(result)  # the other ranking sentence is rejected
    other = copy.deepcopy(rows)
    for row in other:
        row["speedup_min"], row["speedup_max"] = (row["speedup"], row["speedup"])
    if case == "clear winner":
        other[0]["speedup_max"] = other[1]["speedup"]  # make k=1 overlap the winner
    bad["verdicts"]["k_ranking"] = spec.k_verdicts(other, 5, peak, ks)["k_ranking"]
    with pytest.raises(AssertionError):
        check_speculative(bad)


def _gap(means_and_seeds):
    return {str(n): {"mean": sum(s) / len(s), "se": _se(s), "seeds": s} for n, s in means_and_seeds.items()}


GAP_CASES = {
    "narrows at every step": {50: [0.30, 0.28, 0.26], 100: [0.20, 0.21, 0.19], 1297: [0.05, 0.06, 0.04]},
    "small rise, within noise": {50: [0.30, 0.28, 0.26], 500: [0.08, 0.10, 0.06], 1297: [0.11, 0.05, 0.12]},
    "large rise": {50: [0.30, 0.28, 0.26], 500: [0.05, 0.05, 0.06], 1297: [0.15, 0.16, 0.15]},
}


@pytest.mark.parametrize("case", sorted(GAP_CASES))
def test_learning_curves_gap_verdict_follows_the_numbers(case):
    lc = _snippet("problems/06_data_hungry/learning_curves")
    gap = _gap(GAP_CASES[case])
    sizes = [int(n) for n in gap]
    result = {"sizes": sizes, "gap": gap, "verdicts": {"gap_trend": lc.gap_trend(sizes, gap),
                                                       "crossover": lc.crossover(sizes[-1], gap[str(sizes[-1])])}}
    check_learning_curves(result)
    text = result["verdicts"]["gap_trend"]
    assert ("widens" in text) == (case != "narrows at every step")
    for pairs in ([("narrows at every step", "narrows overall but not at every step")],
                  [("narrows overall but not at every step", "narrows at every step")],
                  [("within", "more than"), ("more than", "within")]):
        if any(a in text for a, _ in pairs):
            bad = copy.deepcopy(result)
            bad["verdicts"]["gap_trend"] = _swap_first(text, pairs)
            with pytest.raises(AssertionError):
                check_learning_curves(bad)


@pytest.mark.parametrize("last", [[0.03, 0.02, 0.04, 0.01], [0.03, -0.02, 0.01, -0.01], [-0.03, -0.04, -0.02, -0.05]])
def test_learning_curves_crossover_verdict_follows_the_numbers(last):
    lc = _snippet("problems/06_data_hungry/learning_curves")
    gap = _gap({50: [0.30, 0.28, 0.26, 0.27], 1297: last})
    result = {"sizes": [50, 1297], "gap": gap, "verdicts": {"gap_trend": lc.gap_trend([50, 1297], gap),
                                                            "crossover": lc.crossover(1297, gap["1297"])}}
    check_learning_curves(result)
    text = result["verdicts"]["crossover"]
    for wrong in (lc.crossover(1297, _gap({1297: s})["1297"]) for s in ([0.03, 0.02, 0.04, 0.01], [0.03, -0.02, 0.01, -0.01],
                                                                      [-0.03, -0.04, -0.02, -0.05])):
        if wrong != text:
            bad = copy.deepcopy(result)
            bad["verdicts"]["crossover"] = wrong
            with pytest.raises(AssertionError):
                check_learning_curves(bad)
