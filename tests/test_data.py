import json

import pytest

from degaml.data import DataFormatError, MultipleChoiceItem, PartitionOverlapError, partition, read_task_file
from degaml.data.files import split_lettered_options
from degaml.data.splits import Partition

FIXTURES = __import__("pathlib").Path(__file__).parent / "fixtures"


def test_reads_our_schema():
    items = read_task_file(FIXTURES / "ours.jsonl")
    assert [i.id for i in items] == ["q1", "1"]
    assert items[0].contexts == ("Question: Which gas do plants absorb?\nAnswer:",) * 2
    assert items[0].continuations == (" carbon dioxide", " oxygen")
    assert items[1].contexts[0] == "4 * 8 =" and items[1].gold == 0


def test_reads_reference_schema_with_options_beyond_d():
    first, second = read_task_file(FIXTURES / "reference.json")
    assert first.question == "Which gas do plants absorb?"
    assert first.choices == ("carbon dioxide", "oxygen", "helium") and first.gold == 0
    assert second.choices == ("3", "5", "7", "9", "11", "12") and second.gold == 5


def test_lettered_options_ignore_letters_inside_words():
    question, options = split_lettered_options("What is DNA: a molecule? A: yes B: no", "x")
    assert question == "What is DNA: a molecule?" and options == ["yes", "no"]


@pytest.mark.parametrize("line, message", [
    ('{"question": "q", "choices": ["a", "b"]}', "missing field 'gold'"),
    ('{"question": "q", "choices": ["a", "b"], "gold": 2}', "field 'gold'"),
    ('{"question": "q", "choices": ["a"], "gold": 0}', "field 'choices'"),
    ('{"prompt": "q A: x B: y", "response": "[C]"}', "field 'response'"),
    ('{"prompt": "q A: x", "response": "[A]"}', "field 'prompt'"),
    ('{"question": "q", "choices": ["a", "b"], "gold": 0', "not valid JSON"),
])
def test_malformed_records_name_file_line_and_field(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "ok", "choices": ["a", "b"], "gold": 1}\n' + line + "\n")
    with pytest.raises(DataFormatError) as err:
        read_task_file(path)
    assert f"{path}:2" in str(err.value) and message in str(err.value)


def test_json_list_errors_name_the_record(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([{"question": "q", "choices": ["a", "b"], "gold": 0}, {"question": "q"}]))
    with pytest.raises(DataFormatError, match="record 1: missing field 'choices'"):
        read_task_file(path)


def test_item_validation():
    with pytest.raises(DataFormatError, match="at least two"):
        MultipleChoiceItem.cloze("x", "q", "c", ["only"], 0)
    with pytest.raises(DataFormatError, match="outside"):
        MultipleChoiceItem.cloze("x", "q", "c", ["a", "b"], 5)


def _items(n):
    return [MultipleChoiceItem.cloze(f"id{i}", "q", "c", ["a", "b"], i % 2) for i in range(n)]


def test_partitions_are_disjoint_complete_and_sized():
    p = partition("t", _items(1000), seed=0, validation_fraction=0.1, test_fraction=0.3)
    sets = {s: set(ids) for s, ids in p.ids.items()}
    assert not (sets["train"] & sets["test"]) and not (sets["train"] & sets["validation"])
    assert not (sets["validation"] & sets["test"])
    assert sum(map(len, sets.values())) == 1000
    assert (len(sets["test"]), len(sets["validation"])) == (300, 100)


def test_partitions_are_stable_and_independent_of_item_order():
    items = _items(200)
    a = partition("t", items, seed=3)
    b = partition("t", list(reversed(items)), seed=3)
    assert a.ids == b.ids
    assert partition("t", items, seed=4).ids != a.ids


def test_partition_refuses_overlap_and_duplicate_ids():
    with pytest.raises(PartitionOverlapError, match="'x' is in both"):
        Partition("t", 0, 0.1, 0.3, {"train": ("x", "y"), "validation": (), "test": ("x",)})
    with pytest.raises(PartitionOverlapError, match="not unique"):
        partition("t", _items(3) + _items(1))


def test_limit_takes_prefix_of_the_seeded_order():
    items = _items(100)
    p = partition("t", items)
    assert [i.id for i in p.select(items, "test", limit=5)] == list(p.ids["test"][:5])
