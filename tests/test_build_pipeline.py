"""The build's failure paths and its cache, each in a temporary copy of the build code."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from conftest import PY, ROOT

OK = "import json, os\nprint('{msg}')\nopen(os.path.join(os.environ['SNIPPET_OUT'], 'results.json'), 'w').write(json.dumps({{'v': {v}}}))\n"


@pytest.fixture
def repo(tmp_path):
    """A small repository: the real build scripts and one real card, two tiny snippets."""
    root = tmp_path / "repo"
    shutil.copytree(ROOT / "scripts", root / "scripts", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "problems").mkdir(parents=True)
    # without its `shown:` marks: they name snippets this small repository does not have
    card = (ROOT / "problems" / "01_quadratic_complexity.yaml").read_text()
    (root / "problems" / "01_quadratic_complexity.yaml").write_text(
        "".join(line for line in card.splitlines(keepends=True) if not line.lstrip().startswith("shown:")))
    snip = root / "snippets" / "demo"
    snip.mkdir(parents=True)
    (snip / "alpha.py").write_text(OK.format(msg="alpha v1", v=1))
    (snip / "beta.py").write_text(OK.format(msg="beta v1", v=2))
    return root


def build(root, *args, timeout=180):
    proc = subprocess.run(
        [PY, "scripts/build.py", "--no-site", *args], cwd=root, capture_output=True, text=True, timeout=timeout
    )
    return proc.returncode, proc.stdout + proc.stderr


def counts(out: str) -> tuple[int, int]:
    line = next(x for x in out.splitlines() if x.startswith("snippets:"))
    words = line.replace(",", "").split()
    return int(words[words.index("ran") - 1]), int(words[words.index("cached") - 1])


def output_of(root, name):
    return (root / "build" / "out" / "demo" / name / "_stdout.txt").read_text()


def test_second_build_executes_nothing_and_one_edit_runs_one(repo):
    code, out = build(repo)
    assert code == 0, out
    assert counts(out) == (2, 0)
    code, out = build(repo)
    assert code == 0, out
    assert counts(out) == (0, 2), out
    (repo / "snippets" / "demo" / "beta.py").write_text(OK.format(msg="beta v2", v=3))
    code, out = build(repo)
    assert code == 0, out
    assert counts(out) == (1, 1), out
    assert "ran" in next(x for x in out.splitlines() if "beta.py" in x)
    assert output_of(repo, "beta").strip() == "beta v2"
    report = json.loads((repo / "build" / "report.json").read_text())
    assert {r["path"]: r["cache_hit"] for r in report["snippets"]} == {
        "snippets/demo/alpha.py": True, "snippets/demo/beta.py": False}


def test_a_file_the_snippet_reads_is_part_of_its_cache_key(repo):
    data = repo / "snippets" / "demo" / "table.txt"
    data.write_text("1\n")
    (repo / "snippets" / "demo" / "reader.py").write_text("print(open('snippets/demo/table.txt').read())\n")
    assert build(repo)[0] == 0
    data.write_text("2\n")
    code, out = build(repo)
    assert code == 0 and counts(out) == (1, 2), out
    assert output_of(repo, "reader").strip() == "2"


def test_raising_snippet_stops_with_file_and_line_and_keeps_outputs(repo):
    assert build(repo)[0] == 0
    before = output_of(repo, "alpha")
    alpha = repo / "snippets" / "demo" / "alpha.py"
    alpha.write_text("print('partial output')\nx = 1\nassert x == 2, 'the claim is false'\n")
    code, out = build(repo)
    assert code != 0
    assert "snippets/demo/alpha.py:3" in out and "AssertionError: the claim is false" in out, out
    assert output_of(repo, "alpha") == before, "the previous good output must stay"
    assert not any((repo / "build" / "tmp").iterdir()), "no half-written output left behind"
    report = json.loads((repo / "build" / "report.json").read_text())
    assert [r["status"] for r in report["snippets"] if r["path"].endswith("alpha.py")] == ["failed"]


def test_hanging_snippet_times_out_naming_the_line(repo):
    (repo / "snippets" / "demo" / "hang.py").write_text(
        "# build: timeout=2\nimport time\nwhile True:\n    time.sleep(0.05)\n"
    )
    code, out = build(repo)
    assert code != 0
    assert "TIMEOUT snippets/demo/hang.py:4" in out and "2s limit" in out, out
    assert not (repo / "build" / "out" / "demo" / "hang").exists()


def test_crashing_snippet_kills_only_itself(repo):
    (repo / "snippets" / "demo" / "crash.py").write_text("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n")
    code, out = build(repo)
    assert code != 0 and "snippets/demo/crash.py" in out and "signal 11" in out, out
    assert output_of(repo, "alpha").strip() == "alpha v1"


def test_malformed_card_fails_with_a_clear_error(repo):
    card = repo / "problems" / "01_quadratic_complexity.yaml"
    card.write_text(card.read_text().replace("category: Efficiency", "category: 7"))
    code, out = build(repo)
    assert code != 0
    assert "01_quadratic_complexity.yaml: field 'category' has type int" in out, out


def test_only_flag_runs_just_those_snippets(repo):
    code, out = build(repo, "--only", "snippets/demo/alpha.py")
    assert code == 0 and counts(out) == (1, 0), out
    assert not (repo / "build" / "out" / "demo" / "beta").exists()


NOTEBOOK = {
    "nbformat": 4, "nbformat_minor": 5,
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    "cells": [
        {"cell_type": "markdown", "id": "m1", "metadata": {}, "source": ["# A notebook"]},
        {"cell_type": "code", "id": "c1", "metadata": {}, "execution_count": None, "outputs": [],
         "source": ["import sys\n", "sys.path.insert(0, 'snippets/demo')\n", "import shared\n", "print('value', shared.VALUE)"]},
        {"cell_type": "code", "id": "c2", "metadata": {}, "execution_count": None, "outputs": [],
         "source": ["assert shared.VALUE == 3, 'the claim is false'"]},
    ],
}


def test_notebook_runs_in_a_kernel_and_is_cached_on_what_it_imports(repo):
    import json as _json

    demo = repo / "snippets" / "demo"
    (demo / "shared.py").write_text("VALUE = 3\n")
    (demo / "notebook.ipynb").write_text(_json.dumps(NOTEBOOK))
    code, out = build(repo)
    assert code == 0, out
    assert output_of(repo, "notebook").strip() == "value 3"
    executed = _json.loads((repo / "build" / "out" / "demo" / "notebook" / "notebook.ipynb").read_text())
    assert executed["cells"][1]["outputs"], "the executed notebook keeps its outputs"
    assert len(executed["cells"]) == len(NOTEBOOK["cells"]), "the runner's tracking cells are not saved"
    assert [c["execution_count"] for c in executed["cells"] if c["cell_type"] == "code"] == [1, 2]
    assert counts(build(repo)[1])[0] == 0, "second build executes nothing"
    (demo / "alpha.py").write_text(OK.format(msg="alpha v2", v=5))  # a sibling the notebook does not import
    assert counts(build(repo)[1]) == (1, 3), "editing a sibling re-runs that sibling only"
    (demo / "shared.py").write_text("VALUE = 4\n")  # a module the notebook imports
    code, out = build(repo)
    assert code != 0 and "FAILED snippets/demo/notebook.ipynb: cell 3: AssertionError: the claim is false" in out, out
    assert output_of(repo, "notebook").strip() == "value 3", "the previous good output stays"


def test_cpu_kernel_set_is_part_of_the_cache_key(repo):
    import os

    assert counts(build(repo)[1]) == (2, 0)
    proc = subprocess.run([PY, "scripts/build.py", "--no-site"], cwd=repo, capture_output=True, text=True,
                          env=dict(os.environ, ATEN_CPU_CAPABILITY="default"), timeout=180)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and counts(out) == (2, 0), "results from one kernel set are not reused for another"
    assert "CPU capability DEFAULT" in out, out
    meta = json.loads((repo / "build" / "out" / "demo" / "alpha" / "_meta.json").read_text())
    assert meta["env"]["cpu_capability"] == "DEFAULT" and meta["env"]["kernel_env"]["ATEN_CPU_CAPABILITY"] == "default"


def test_keep_going_runs_everything_and_names_every_failure(repo):
    demo = repo / "snippets" / "demo"
    (demo / "bad1.py").write_text("assert 1 == 2, 'first false claim'\n")
    (demo / "bad2.py").write_text("x = 0\nassert x, 'second false claim'\n")
    code, out = build(repo, "--keep-going")
    assert code == 1
    assert "snippets/demo/bad1.py:1" in out and "snippets/demo/bad2.py:2" in out, out
    assert (repo / "build" / "out" / "demo" / "alpha").exists() and (repo / "build" / "out" / "demo" / "beta").exists()


def test_build_dir_can_be_moved(repo):
    import os

    proc = subprocess.run([PY, "scripts/build.py", "--no-site"], cwd=repo, capture_output=True, text=True,
                          env=dict(os.environ, TP_BUILD_DIR="build/elsewhere"), timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (repo / "build" / "elsewhere" / "out" / "demo" / "alpha" / "results.json").is_file()
    assert not (repo / "build" / "out").exists()
