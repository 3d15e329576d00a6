"""The GRAM judge: templates, verdict tokens and the scoring rule.

This is the single source of truth that training, evaluation and serving import. The verdict
template is the one the released GRAM checkpoints were trained with (NiuTrans/GRAM), so a released
checkpoint such as ``wangclnlp/GRAM-Qwen3-1.7B-RewardModel`` works unchanged: the template fills the
user turn, the model's chat template is applied with a generation prompt, and the reward is the
probability of the first assistant token being "A" rather than "B".

Conventions used everywhere in gram-ray:

* ``p_ab``: probability that ``response_a`` is better, judged with A shown first (order a, b).
* ``p_ba``: probability that ``response_a`` is better, judged with the two swapped (order b, a):
  there ``response_a`` sits in position B, so ``p_ba`` is the verdict probability of "B".
* ``p_a_better``: the mean of the two (or ``p_ab`` alone with ``orders="ab"``). Averaging both
  orders cancels the judge's position bias.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

VERDICTS: tuple[str, str] = ("A", "B")
"""The two verdict tokens, in the order of the two-row head: index 0 means "A is better"."""

Orders = Literal["both", "ab"]
ORDERS: tuple[str, ...] = ("both", "ab")

JUDGE_INSTRUCTION = (
    "Please act as an impartial judge and evaluate the quality of the responses provided by two AI "
    "assistants to the user question displayed below. You should choose the assistant that follows "
    "the user's instructions and answers the user's question better.\n"
    "Your evaluation should consider factors such as the helpfulness, relevance, accuracy, depth, "
    "creativity, and level of detail of their responses. Avoid any position biases and ensure that "
    "the order in which the responses were presented does not influence your decision. Do not allow "
    "the length of the responses to influence your evaluation. Do not favor certain names of the "
    "assistants. Be as objective as possible.\n"
    'Please directly output your final verdict by strictly following this format: "A" if assistant '
    'A is better, "B" if assistant B is better.'
)

QUESTION_BLOCK = "[User Question]\n{question}\n\n"
ANSWERS_BLOCK = (
    "[The Start of Assistant A's Answer]\n{response_a}\n[The End of Assistant A's Answer]\n\n"
    "[The Start of Assistant B's Answer]\n{response_b}\n[The End of Assistant B's Answer]"
)

VERDICT_TEMPLATE = JUDGE_INSTRUCTION + "\n\n" + QUESTION_BLOCK + ANSWERS_BLOCK + "\n\n#Preferred: "
"""Stage-2 (fine-tuning) and inference prompt; the verdict token is the model's next token."""

PRETRAIN_PROMPT_TEMPLATE = QUESTION_BLOCK
PRETRAIN_TARGET_TEMPLATE = ANSWERS_BLOCK
"""Stage-1 (pre-training) pair: the model reads the question and generates both answers."""

REASONING_INSTRUCTION = (
    "Please act as an impartial judge and evaluate the quality of the responses provided by two AI "
    "assistants to the user question displayed below. You should choose the assistant that follows "
    "the user's instructions and answers the user's question better. Avoid any position biases, do "
    "not let the length of the responses or the names of the assistants influence you, and be as "
    "objective as possible.\n"
    "First reason inside <think> and </think>: give brief feedback on each response, compare them, "
    "and draw a conclusion. Then output your final verdict by strictly following this format: "
    "<answer>A</answer> if assistant A is better, <answer>B</answer> if assistant B is better."
)
REASONING_TEMPLATE = REASONING_INSTRUCTION + "\n\n" + QUESTION_BLOCK + ANSWERS_BLOCK
"""GRAM-R² reasoning judge prompt: the model writes ``<think>rationale</think><answer>X</answer>``."""

REASONING_TARGET_TEMPLATE = "<think>\n{rationale}\n</think>\n<answer>{verdict}</answer>"

PROVING_INSTRUCTION = (
    "Below are a user question and the responses of two AI assistants. An impartial expert judge "
    "found that assistant {verdict} answered better. Write the judge's reasoning: inside <think> and "
    "</think>, give brief feedback on each response, compare them, and conclude why assistant "
    "{verdict}'s answer is the better one. Refer to the assistants as Assistant A and Assistant B."
)
PROVING_TEMPLATE = PROVING_INSTRUCTION + "\n\n" + QUESTION_BLOCK + ANSWERS_BLOCK
"""GRAM-R² preference-proving prompt: the label is given, the model writes a rationale for it."""

PROVING_TARGET_TEMPLATE = "<think>\n{rationale}\n</think>"


# ----------------------------------------------------------------------------------------------
# Prompts: plain strings or chat messages
# ----------------------------------------------------------------------------------------------

Prompt = str | Sequence[Mapping[str, str]]


@dataclass(frozen=True)
class Pair:
    """One comparison: a prompt (a string or chat messages) and two responses."""

    prompt: Prompt
    response_a: str
    response_b: str

_ROLE_NAMES = {"user": "Human", "human": "Human", "assistant": "Assistant", "system": "System"}
ROLES: tuple[str, ...] = tuple(_ROLE_NAMES)


def render_question(prompt: Prompt) -> str:
    """Render a prompt (a string or a list of ``{"role", "content"}`` messages) as the question text.

    A single user message is its content. A multi-turn conversation becomes a transcript in the
    ``Human: …\\n\\nAssistant: …`` form, the same form as the multi-turn training data
    (hh-rlhf), so that serving renders conversations exactly as training saw them.
    """
    if isinstance(prompt, str):
        return prompt
    messages = list(prompt)
    if not messages:
        raise ValueError("prompt: empty list of messages")
    for i, message in enumerate(messages):
        if "content" not in message or not isinstance(message["content"], str):
            raise ValueError(f"prompt[{i}].content: missing or not a string")
        role = message.get("role", "user")
        if role not in _ROLE_NAMES:
            raise ValueError(f"prompt[{i}].role: unknown role {role!r} (use user, assistant or system)")
    if len(messages) == 1 and messages[0].get("role", "user") in ("user", "human"):
        return messages[0]["content"]
    return "\n\n".join(f"{_ROLE_NAMES[m.get('role', 'user')]}: {m['content']}" for m in messages)


# ----------------------------------------------------------------------------------------------
# Untrusted text
# ----------------------------------------------------------------------------------------------

_OPEN, _CLOSE = "\ue000", "\ue001"  # private-use code points: mark where untrusted text starts and ends


def untrusted(text: str) -> str:
    """Mark ``text`` (a question, a response, a rationale: anything a user or a policy wrote) so that
    :func:`encode_text` tokenizes it as plain text. Without this, a response containing
    ``<|im_end|>`` would become the real control token: a policy under RL could close the judge's
    turn and write its own verdict. The two marker characters are removed from the text itself."""
    return _OPEN + visible(text) + _CLOSE


def visible(text: str) -> str:
    """``text`` as a reader sees it: the :func:`untrusted` marks removed (for display and logs)."""
    return text.replace(_OPEN, "").replace(_CLOSE, "")


_WORD_JOINER = "\u2060"  # zero-width: splits a control-token string into plain-text tokens


def encode_text(tokenizer: Any, text: str, add_special_tokens: bool = False) -> list[int]:
    """Token ids of ``text`` in which template parts may hold control tokens (``<|im_start|>``…) and
    :func:`untrusted` parts never do.

    Inside untrusted parts, every string that the tokenizer would read as one of its added tokens
    gets a zero-width word joiner after its first character, so it is tokenized as plain text; the
    whole string is then tokenized at once, so text without such strings (all the training data)
    gets exactly the tokens it always had, with no seams at the template's edges.
    """
    added = sorted(getattr(tokenizer, "added_tokens_encoder", {}), key=len, reverse=True)
    parts: list[str] = []
    template_part, *rest = text.split(_OPEN)
    parts.append(template_part)
    for chunk in rest:
        user, _, after = chunk.partition(_CLOSE)
        for token in added:
            if token in user:
                user = user.replace(token, token[:1] + _WORD_JOINER + token[1:])
        parts += [user, after]
    return tokenizer("".join(parts), add_special_tokens=add_special_tokens)["input_ids"]


def verdict_content(question: str, response_a: str, response_b: str) -> str:
    """The user-turn text of the verdict prompt (its fields marked :func:`untrusted`)."""
    return VERDICT_TEMPLATE.format(
        question=untrusted(question), response_a=untrusted(response_a), response_b=untrusted(response_b)
    )


def reasoning_content(question: str, response_a: str, response_b: str) -> str:
    """The user-turn text of the GRAM-R² reasoning prompt."""
    return REASONING_TEMPLATE.format(
        question=untrusted(question), response_a=untrusted(response_a), response_b=untrusted(response_b)
    )


def reasoning_target(rationale: str, verdict: str) -> str:
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
    return REASONING_TARGET_TEMPLATE.format(rationale=untrusted(rationale.strip()), verdict=verdict)


def proving_content(question: str, response_a: str, response_b: str, verdict: str) -> str:
    """The user-turn text of the preference-proving prompt (``verdict`` is the known label)."""
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
    return PROVING_TEMPLATE.format(
        question=untrusted(question), response_a=untrusted(response_a), response_b=untrusted(response_b), verdict=verdict
    )


def proving_target(rationale: str) -> str:
    return PROVING_TARGET_TEMPLATE.format(rationale=untrusted(rationale.strip()))


def pretrain_texts(question: str, response_a: str, response_b: str) -> tuple[str, str]:
    """(prompt, target) of a stage-1 example; the loss covers the target (the two answers) only."""
    return (
        PRETRAIN_PROMPT_TEMPLATE.format(question=untrusted(question)),
        PRETRAIN_TARGET_TEMPLATE.format(response_a=untrusted(response_a), response_b=untrusted(response_b)),
    )


def chat_prompt(tokenizer: Any, content: str) -> str:
    """Wrap a user-turn ``content`` in the model's chat template, ending with the generation prompt.

    Qwen3-style templates take ``enable_thinking``; it is turned off so that the verdict is the first
    assistant token, as in the released GRAM checkpoints. A tokenizer without a chat template (a
    plain base model) gets the content as it is.
    """
    if not getattr(tokenizer, "chat_template", None):
        return content
    messages = [{"role": "user", "content": content}]
    kwargs: dict[str, Any] = {"tokenize": False, "add_generation_prompt": True}
    if "enable_thinking" in tokenizer.chat_template:
        kwargs["enable_thinking"] = False
    return tokenizer.apply_chat_template(messages, **kwargs)


def encode_user_turn(tokenizer: Any, content: str) -> list[int]:
    """Token ids of :func:`chat_prompt` (BOS added only where there is no chat template to add it);
    :func:`untrusted` parts of ``content`` are plain text."""
    return encode_text(tokenizer, chat_prompt(tokenizer, content), add_special_tokens=not uses_chat_template(tokenizer))


def uses_chat_template(tokenizer: Any) -> bool:
    """Whether :func:`chat_prompt` output already carries the special tokens (BOS etc.)."""
    return bool(getattr(tokenizer, "chat_template", None))


_SENTINEL = "\u2063GRAM_QUESTION\u2063"


def verdict_prefix_ids(tokenizer: Any) -> list[int]:
    """The token ids every verdict prompt starts with: the chat template's opening and the judge
    instruction, up to the question. Scoring and training compute its key/value states once and share
    them across sequences. The last token is left out: it may merge with the question's first characters."""
    text = chat_prompt(tokenizer, verdict_content(_SENTINEL, "", ""))
    prefix = text[: text.index(_OPEN + _SENTINEL)]
    ids = encode_text(tokenizer, prefix, add_special_tokens=not uses_chat_template(tokenizer))
    return list(ids[:-1])


# ----------------------------------------------------------------------------------------------
# Verdict tokens
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerdictTokens:
    """Token ids of "A" and "B" for one tokenizer, looked up once."""

    a: int
    b: int

    @property
    def ids(self) -> list[int]:
        return [self.a, self.b]

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> VerdictTokens:
        ids = []
        for verdict in VERDICTS:
            encoded = tokenizer(verdict, add_special_tokens=False)["input_ids"]
            if len(encoded) != 1:
                raise ValueError(
                    f"verdict {verdict!r} is not a single token for this tokenizer (got ids {encoded}); "
                    "GRAM needs single-token verdicts"
                )
            ids.append(int(encoded[0]))
        if ids[0] == ids[1]:
            raise ValueError(f"verdicts A and B map to the same token id {ids[0]}")
        return cls(a=ids[0], b=ids[1])


# ----------------------------------------------------------------------------------------------
# Scoring rule
# ----------------------------------------------------------------------------------------------


def verdict(p_a_better: float) -> str | None:
    """The verdict a probability gives: "A" above 0.5, "B" below, None on an exact tie.

    The one rule every consumer uses (``gram-ray score``, evaluation, self-training): a tie is no
    verdict, so it is never counted as a correct one.
    """
    return "A" if p_a_better > 0.5 else "B" if p_a_better < 0.5 else None


@dataclass(frozen=True)
class Calibration:
    """How a judge's verdict margin becomes a probability: ``σ((logit_A - logit_B - position_bias) / temperature)``.

    ``position_bias`` is the log-odds the judge adds to whichever response it is shown first, and
    ``temperature`` undoes over- or under-confidence. Both are fitted on held-out pairs (never on
    the pairs a model is evaluated on; :mod:`gram_ray.eval.calibrate`) and saved beside the model as
    ``calibration.json``; the identity (0, 1) is the raw verdict probability. Removing a constant
    first-position preference makes each order's verdict agree more often with the swapped one;
    the temperature leaves every verdict as it is and only rescales its confidence.
    """

    position_bias: float = 0.0
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.position_bias) and math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"calibration: need a finite position_bias and temperature > 0, got {self}")

    def p_first_better(self, margin: float) -> float:
        """P(the response shown first is better) from ``logit("A") - logit("B")``."""
        return sigmoid((margin - self.position_bias) / self.temperature)

    def margin(self, p_first_better: float, eps: float = 1e-7) -> float:
        """The raw verdict margin this calibration turned into ``p_first_better`` (its inverse)."""
        return self.temperature * log_odds(p_first_better, eps) + self.position_bias

    def as_dict(self) -> dict[str, float]:
        return {"position_bias": self.position_bias, "temperature": self.temperature}


def combine_orders(p_ab: float, p_ba: float | None) -> float:
    """``p_a_better`` from the per-order probabilities (both in "response_a is better" terms)."""
    return p_ab if p_ba is None else 0.5 * (p_ab + p_ba)


def sigmoid(z: float) -> float:
    """σ(z) without overflow for large |z|."""
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def log_odds(p: float, eps: float = 1e-6) -> float:
    """The reward used for RL: log(p / (1 - p)), clipped away from ±inf."""
    p = min(max(p, eps), 1.0 - eps)
    return math.log(p) - math.log1p(-p)


# ----------------------------------------------------------------------------------------------
# GRAM-R² answers
# ----------------------------------------------------------------------------------------------

_ANSWER_RE = re.compile(r"<answer>\s*\(?\s*(?:Assistant\s+)?([AB])\s*\)?\s*</answer>", re.IGNORECASE)


def parse_answer(text: str) -> str | None:
    """The verdict ("A"/"B") of a reasoning output, or None when none can be read.

    The last well-formed ``<answer>X</answer>`` wins (a model may quote the format inside its
    reasoning before answering). Text after ``</think>`` is searched first so that an answer tag
    echoed inside the rationale does not override the real one.
    """
    tail = text.rsplit("</think>", 1)[-1] if "</think>" in text else text
    for scope in (tail, text):
        matches = _ANSWER_RE.findall(scope)
        if matches:
            return matches[-1].upper()
    return None


_THINK_RE = re.compile(r"<think>(.*?)</think>", re.DOTALL)


def parse_rationale(text: str) -> str | None:
    """The rationale of a reasoning or proving output: the last ``<think>…</think>`` block; an
    unclosed ``<think>`` (generation cut at its token budget) keeps what follows it; text with no
    tags is taken whole, less any ``<answer>`` tag. None when nothing is left."""
    blocks = _THINK_RE.findall(text)
    if blocks:
        rationale = blocks[-1]
    elif "<think>" in text:
        rationale = text.rsplit("<think>", 1)[1]
    else:
        rationale = _ANSWER_RE.sub("", text.replace("</think>", ""))
    rationale = rationale.strip()
    return rationale or None


_NAME_RE = re.compile(r"\b(Assistant|Response|Answer|assistant|response|answer)(\s+|_)([AB])\b")


def swap_names(text: str) -> str:
    """Swap "Assistant A" and "Assistant B" (also Response/Answer) in a rationale, for the example
    with the two responses in the other order."""
    return _NAME_RE.sub(lambda m: m.group(1) + m.group(2) + ("B" if m.group(3) == "A" else "A"), text)


@dataclass(frozen=True)
class Vote:
    """The outcome of k sampled reasoning verdicts for one pair (in "response_a is better" terms)."""

    p_a_better: float
    votes_a: int
    votes_b: int
    unparsed: int
    tie_broken: bool


def majority_vote(verdicts: Sequence[str | None], p_tiebreak: float) -> Vote:
    """GRAM-R² test-time voting: ``p_a_better`` is the share of readable verdicts that prefer A.

    With no majority (a tie, or no readable verdict at all) the votes carry no preference, so the
    verdict-token probability ``p_tiebreak`` decides and is returned as the score.
    """
    a = sum(v == "A" for v in verdicts)
    b = sum(v == "B" for v in verdicts)
    unparsed = len(verdicts) - a - b
    if a == b:
        return Vote(float(p_tiebreak), a, b, unparsed, True)
    return Vote(a / (a + b), a, b, unparsed, False)
