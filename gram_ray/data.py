"""Reading pair files: JSON Lines (optionally gzip-compressed), one pair per line.

Accepted rows (extra fields are kept and ignored):

* ``{"prompt", "response_a", "response_b"[, "label": "A"|"B"|"A>B"|"B>A"][, "prob_a"]}``
* ``{"prompt", "chosen", "rejected"}`` — ``chosen`` becomes response A, so the label is "A".
* JudgeBench rows use ``question``/``response_A``/``response_B`` and are read the same way.

``prompt`` is a string or a list of ``{"role", "content"}`` messages. A malformed row raises
:class:`DataError` naming the file, the line and the field, before any scoring work is done.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gram_ray.judge import Pair, render_question


class DataError(ValueError):
    """A malformed input row: ``path:line: field: problem``."""

    def __init__(self, path: str | os.PathLike, line: int, field_name: str | None, problem: str):
        self.path, self.line, self.field, self.problem = str(path), line, field_name, problem
        where = f"{path}:{line}"
        super().__init__(f"{where}: {field_name}: {problem}" if field_name else f"{where}: {problem}")

    def __reduce__(self):
        # Raised in Ray workers and actors: unpickling must rebuild it, or the caller gets a
        # deserialization error in place of the line and field.
        return type(self), (self.path, self.line, self.field, self.problem)


@dataclass(frozen=True)
class PairRow:
    """One pair read from a file, with where it came from."""

    line: int
    pair: Pair
    id: Any = None
    label: str | None = None  # "A" or "B": which response is better, when known
    prob_a: float | None = None
    rationale: str | None = None  # GRAM-R²: a written justification of ``label``


def open_text(path: str | os.PathLike) -> io.TextIOBase:
    path = Path(path)
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8")


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line; bad JSON raises DataError."""
    with open_text(path) as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(path, line_no, None, f"invalid JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(obj, dict):
                raise DataError(path, line_no, None, f"expected a JSON object, got {type(obj).__name__}")
            yield line_no, obj


def _text(row: dict, name: str, path: Any, line: int) -> str:
    if name not in row:
        raise DataError(path, line, name, "missing")
    value = row[name]
    if not isinstance(value, str):
        raise DataError(path, line, name, f"expected a string, got {type(value).__name__}")
    return value


def _prompt(row: dict, path: Any, line: int) -> Any:
    name = "prompt" if "prompt" in row else "question" if "question" in row else None
    if name is None:
        raise DataError(path, line, "prompt", "missing")
    value = row[name]
    if isinstance(value, str):
        if not value.strip():
            raise DataError(path, line, name, "empty")
        return value
    if isinstance(value, list):
        try:
            render_question(value)
        except (ValueError, TypeError, AttributeError) as exc:
            raise DataError(path, line, name, str(exc)) from None
        return value
    raise DataError(path, line, name, f"expected a string or a list of messages, got {type(value).__name__}")


def _label(row: dict, path: Any, line: int) -> str | None:
    if "label" not in row or row["label"] is None:
        return None
    value = str(row["label"]).strip()
    labels = {"A": "A", "B": "B", "A>B": "A", "B>A": "B"}
    if value not in labels:
        raise DataError(path, line, "label", f"expected A, B, A>B or B>A, got {row['label']!r}")
    return labels[value]


def parse_pair_row(row: dict[str, Any], path: Any, line: int) -> PairRow:
    prompt = _prompt(row, path, line)
    if "chosen" in row or "rejected" in row:
        a, b, label = _text(row, "chosen", path, line), _text(row, "rejected", path, line), "A"
    elif "response_A" in row:  # JudgeBench
        a, b = _text(row, "response_A", path, line), _text(row, "response_B", path, line)
        label = _label(row, path, line)
    else:
        a, b = _text(row, "response_a", path, line), _text(row, "response_b", path, line)
        label = _label(row, path, line)
    prob_a = row.get("prob_a")
    if prob_a is not None and not (isinstance(prob_a, int | float) and 0.0 <= prob_a <= 1.0):
        raise DataError(path, line, "prob_a", f"expected a number in [0, 1], got {prob_a!r}")
    rationale = row.get("rationale")
    if rationale is not None and not (isinstance(rationale, str) and rationale.strip()):
        raise DataError(path, line, "rationale", "expected a non-empty string")
    row_id = row.get("id", row.get("pair_id"))
    return PairRow(line=line, pair=Pair(prompt, a, b), id=row_id, label=label, prob_a=prob_a, rationale=rationale)


def read_pairs(path: str | os.PathLike, skip_bad_rows: bool = False, limit: int | None = None) -> tuple[list[PairRow], list[DataError]]:
    """All pairs of a file, and the errors of the rows skipped (only with ``skip_bad_rows``)."""
    rows: list[PairRow] = []
    skipped: list[DataError] = []
    try:
        for line, obj in iter_jsonl(path):
            if limit is not None and len(rows) >= limit:
                break
            try:
                rows.append(parse_pair_row(obj, path, line))
            except DataError as exc:
                if not skip_bad_rows:
                    raise
                skipped.append(exc)
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DataError(path, len(rows) + len(skipped) + 1, None, f"unreadable file ({exc})") from None
    return rows, skipped


@contextmanager
def atomic_writer(path: str | os.PathLike, mode: str = "w") -> Iterator[Any]:
    """Write to a temporary file beside ``path`` and rename it into place only on success.

    Gzip-compressed when ``path`` ends in ``.gz``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        if path.suffix == ".gz":
            f: Any = io.TextIOWrapper(gzip.open(tmp, "wb"), encoding="utf-8")
        else:
            f = open(tmp, mode, encoding="utf-8")
        with f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def is_heldout(prompt: Any, fraction: float, salt: str = "gram-ray") -> bool:
    """Deterministic prompt-level split: the same prompt always lands on the same side.

    Hashing the prompt text (not the row) keeps every pair of a held-out prompt out of training,
    so an evaluation on the held-out side never sees a question the model was trained on.
    """
    text = prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True)
    digest = hashlib.sha256(f"{salt}\0{text}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def split_by_prompt(
    path: str | os.PathLike, train_out: str | os.PathLike, heldout_out: str | os.PathLike,
    fraction: float, seed: int = 0, salt: str = "gram-ray",
) -> tuple[int, int]:
    """Split a JSONL(.gz) file by prompt into train / held-out files (both written atomically).

    Rows keep their order in the train file; the held-out file is shuffled with ``seed`` so that
    ``--limit N`` on it samples many prompts rather than the first few. Splitting a train split
    again needs another ``salt``: with the same one, every prompt it holds hashes above the first
    split's fraction.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    train, heldout = [], []
    for line, row in iter_jsonl(path):
        if "prompt" not in row:
            raise DataError(path, line, "prompt", "missing")
        (heldout if is_heldout(row["prompt"], fraction, salt) else train).append(row)
    random.Random(seed).shuffle(heldout)
    for out, rows in ((train_out, train), (heldout_out, heldout)):
        with atomic_writer(out) as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return len(train), len(heldout)
