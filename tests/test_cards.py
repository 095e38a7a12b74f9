"""The 18 problem cards validate; a malformed card is rejected with file, field and expectation."""
from __future__ import annotations

import copy

import pytest
import yaml

import cards
from conftest import ROOT


def test_all_eighteen_cards_load():
    loaded = cards.load_cards(ROOT / "problems")
    assert [c["number"] for c in loaded] == list(range(1, 19))


def test_categories_match_the_problem_list():
    want = {
        "Efficiency": [1, 7, 8, 17],
        "Architecture": [2, 5, 11, 12],
        "Scaling": [3, 6, 9, 13],
        "Training & quality": [10, 14, 15],
        "Deployment": [4, 16, 18],
    }
    got: dict[str, list[int]] = {}
    for c in cards.load_cards(ROOT / "problems"):
        got.setdefault(c["category"], []).append(c["number"])
    assert got == want


GOOD = ROOT / "problems" / "01_quadratic_complexity.yaml"


def _write(tmp_path, mutate):
    data = yaml.safe_load(GOOD.read_text())
    data = copy.deepcopy(data)
    mutate(data)
    path = tmp_path / GOOD.name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize(
    "mutate, expect",
    [
        (lambda d: d.pop("title"), "field 'title' is missing"),
        (lambda d: d.update(number="one"), "field 'number' has type str"),
        (lambda d: d.update(category="Speed"), "field 'category' is 'Speed'"),
        (lambda d: d["solutions"][0].pop("trade_off"), "field 'solutions[0].trade_off' is missing"),
        (lambda d: d["solutions"][0]["paper"].update(url="http://example.com/x"), "solutions[0].paper.url"),
        (lambda d: d["papers"][0].update(year="2017"), "field 'papers[0].year' has type str"),
        (lambda d: d["visual"].update(kind="pie"), "field 'visual.kind' is 'pie'"),
        (lambda d: d.update(solutions=[]), "field 'solutions' is empty"),
        (lambda d: d["visual"].update(x_label=3), "field 'visual.x_label' has type int"),
        (lambda d: d["solutions"][0].update(shown="no_such_snippet"), "solutions[0].shown"),
    ],
)
def test_malformed_card_names_file_field_and_expectation(tmp_path, mutate, expect):
    path = _write(tmp_path, mutate)
    with pytest.raises(cards.CardError) as info:
        cards.load_card(path)
    msg = str(info.value)
    assert str(path) in msg and expect in msg and "expected" in msg, msg


def test_invalid_yaml_is_reported(tmp_path):
    path = tmp_path / GOOD.name
    path.write_text("number: 1\ntitle: [unclosed\n")
    with pytest.raises(cards.CardError, match="not valid YAML"):
        cards.load_card(path)
