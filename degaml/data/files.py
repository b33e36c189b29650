"""Local task files: JSON (a list of records) or JSONL (a record per line), in two schemas.

- ours: `{"id"?, "question", "choices": [...], "gold": int, "context"?}`; the context defaults to
  "Question: {question}\\nAnswer:" and each choice is scored after it;
- the reference implementation's: `{"prompt", "response": "[X]", "system"?}` with the options written
  inside the prompt as "A: ... B: ..." (any number of options, not only A-D).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .example import DataFormatError, MultipleChoiceItem

_BRACKETED_LETTER = re.compile(r"\[([A-Z])\]")


def default_context(question: str) -> str:
    return f"Question: {question}\nAnswer:"


MAX_RECORD_CHARS = 100_000
"""A record longer than this is refused: no benchmark item comes near it, and tokenizing megabytes of one
prompt would run for minutes before any error."""


def check_prompts(prompts: Sequence[str], where: str = "prompts") -> list[str]:
    """The prompts, each refused when longer than `MAX_RECORD_CHARS` (the limit of a task file's record, for
    every prompt format: a .txt line, a list given in Python, the demo's text box)."""
    for i, prompt in enumerate(prompts):
        if len(prompt) > MAX_RECORD_CHARS:
            raise DataFormatError(f"{where}: prompt {i + 1} has {len(prompt):,} characters, more than the "
                                  f"{MAX_RECORD_CHARS:,} a prompt may have")
    return list(prompts)


def read_prompt_lines(path: str | Path) -> list[str]:
    """The non-blank lines of a UTF-8 .txt file, one prompt each; a line longer than `MAX_RECORD_CHARS` is
    refused, naming the file and line, before anything else is read."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such prompts file")
    prompts = []
    with path.open("rb") as f:
        for line_no, raw in enumerate(f, start=1):
            if len(raw) > 4 * MAX_RECORD_CHARS or len(line := _decode(raw, f"{path}:{line_no}")) > MAX_RECORD_CHARS:
                raise DataFormatError(f"{path}:{line_no}: a line of {len(raw):,} bytes, more than the "
                                      f"{MAX_RECORD_CHARS:,} characters a prompt may have")
            if line.strip():
                prompts.append(line.rstrip("\r\n"))
    return prompts


def _decode(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataFormatError(f"{where}: not UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start}); "
                              "re-encode the file as UTF-8") from None


def _records(path: Path) -> Iterator[tuple[str, Any]]:
    """(where, record) pairs; `where` is "file:line" for JSONL and "file record N" for JSON."""
    if path.suffix == ".jsonl":
        with path.open("rb") as f:
            for line_no, raw in enumerate(f, start=1):
                where = f"{path}:{line_no}"
                line = _decode(raw, where)
                if not line.strip():
                    continue
                if len(line) > MAX_RECORD_CHARS:
                    raise DataFormatError(f"{where}: record of {len(line):,} characters, more than the "
                                          f"{MAX_RECORD_CHARS:,} a task record may have")
                try:
                    yield where, json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataFormatError(f"{where}: not valid JSON ({e.msg})") from None
    elif path.suffix == ".json":
        try:
            data = json.loads(_decode(path.read_bytes(), str(path)))
        except json.JSONDecodeError as e:
            raise DataFormatError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
        if not isinstance(data, list):
            raise DataFormatError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
        for i, record in enumerate(data):
            where = f"{path} record {i}"
            size = len(json.dumps(record, ensure_ascii=False))
            if size > MAX_RECORD_CHARS:  # the same limit as a JSONL line's, before any record is parsed
                raise DataFormatError(f"{where}: record of {size:,} characters, more than the "
                                      f"{MAX_RECORD_CHARS:,} a task record may have")
            yield where, record
    else:
        raise DataFormatError(f"{path}: unsupported file type {path.suffix!r} (use .json or .jsonl)")


def _field(record: Any, name: str, where: str) -> Any:
    if not isinstance(record, dict):
        raise DataFormatError(f"{where}: expected a JSON object, got {type(record).__name__}")
    if name not in record:
        raise DataFormatError(f"{where}: missing field {name!r}")
    return record[name]


def split_lettered_options(prompt: str, where: str) -> tuple[str, list[str]]:
    """Split "question ... A: x B: y C: z" into the question and the options, in letter order."""
    positions: list[tuple[int, int]] = []  # (start of "X:", start of option text)
    cursor = 0
    for letter in map(chr, range(ord("A"), ord("Z") + 1)):
        match = re.compile(rf"(?:^|(?<=\s)){letter}:\s").search(prompt, cursor)
        if match is None:
            break
        positions.append((match.start(), match.end()))
        cursor = match.end()
    if len(positions) < 2:
        raise DataFormatError(f"{where}: field 'prompt' must list at least two options as 'A: ... B: ...'")
    ends = [start for start, _ in positions[1:]] + [len(prompt)]
    options = [prompt[text_start:end].strip() for (_, text_start), end in zip(positions, ends)]
    return prompt[: positions[0][0]].strip(), options


def _parse_reference(record: dict, where: str, index: int) -> MultipleChoiceItem:
    question, options = split_lettered_options(str(_field(record, "prompt", where)), where)
    response = str(_field(record, "response", where))
    match = _BRACKETED_LETTER.search(response)
    if match is None:
        raise DataFormatError(f"{where}: field 'response' must hold a bracketed letter such as '[B]', got {response!r}")
    gold = ord(match.group(1)) - ord("A")
    if gold >= len(options):
        raise DataFormatError(f"{where}: field 'response' answers {match.group(0)} but only {len(options)} options are listed")
    return MultipleChoiceItem.cloze(str(record.get("id", index)), question, default_context(question), options, gold)


def _parse_ours(record: dict, where: str, index: int) -> MultipleChoiceItem:
    question = str(_field(record, "question", where))
    choices = _field(record, "choices", where)
    if not isinstance(choices, list) or len(choices) < 2:
        raise DataFormatError(f"{where}: field 'choices' must be a list of at least two options")
    for i, choice in enumerate(choices):
        if not isinstance(choice, (str, int, float)) or isinstance(choice, bool) or not str(choice).strip():
            raise DataFormatError(f"{where}: field 'choices' option {i} must be non-empty text, got {choice!r}")
    gold = _field(record, "gold", where)
    if not isinstance(gold, int) or isinstance(gold, bool) or not 0 <= gold < len(choices):
        raise DataFormatError(f"{where}: field 'gold' must be an integer in 0..{len(choices) - 1}, got {gold!r}")
    context = str(record.get("context", default_context(question)))
    return MultipleChoiceItem.cloze(str(record.get("id", index)), question, context, choices, gold)


def read_task_file(path: str | Path) -> list[MultipleChoiceItem]:
    """Parse a local task file; the schema is detected per record ("prompt" means the reference's)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"task file {path} does not exist")
    items = []
    for index, (where, record) in enumerate(_records(path)):
        parse = _parse_reference if isinstance(record, dict) and "prompt" in record else _parse_ours
        items.append(parse(record, where, index))
    if not items:
        raise DataFormatError(f"{path}: no records")
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        if item.id in seen:
            raise DataFormatError(f"{path}: item id {item.id!r} of record {index} repeats record {seen[item.id]}'s; "
                                  "ids must be unique")
        seen[item.id] = index
    return items
