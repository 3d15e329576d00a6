"""Recover the conversation from a policy's chat-templated prompt (OpenRLHF's remote reward client).

OpenRLHF posts ``prompts[i]``, the policy's prompt *after* its chat template (system prompt, role
headers and control tokens included), and ``query[i]`` = that prompt + the response + the policy's
end-of-turn token. The judge must read the conversation, not the policy's markup: nested inside the
judge's own template, the markup is noise at best and forged turns at worst. :func:`parse_prompt`
turns the templated text back into ``{"role", "content"}`` messages, and :func:`clean_response`
strips the end-of-turn/EOS markers from the response.

Families (``policy_template``): ``chatml`` (Qwen, SmolLM, …), ``llama3``, ``gemma``, ``mistral``
(``[INST]``), ``phi3``, ``deepseek``, ``plain`` (no template); ``auto`` tries each; a model spec or
tokenizer directory renders a probe conversation with that tokenizer's own chat template and
picks the family that parses it (its default system prompt, e.g. SmolLM2's, is learned too and
dropped, so the judge sees the conversation the dataset holds).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class ChatFamily:
    name: str
    turn: re.Pattern[str]  # one whole turn: groups (role, content), anchored where the last turn ended
    generation_prompt: str  # the prompt ends with it (the assistant's header)
    end_of_turn: tuple[str, ...]  # stripped from the end of a response
    bos: tuple[str, ...] = ()
    roles: dict[str, str] = field(default_factory=dict)  # the family's role names → user/assistant/system


def _family(name: str, turn: str, generation_prompt: str, end_of_turn: tuple[str, ...], **kw: Any) -> ChatFamily:
    return ChatFamily(name, re.compile(turn, re.DOTALL), generation_prompt, end_of_turn, **kw)


FAMILIES: dict[str, ChatFamily] = {f.name: f for f in (
    _family("chatml", r"<\|im_start\|>(\w+)\n(.*?)<\|im_end\|>\n?", "<|im_start|>assistant\n", ("<|im_end|>", "<|endoftext|>")),
    _family("llama3", r"<\|start_header_id\|>(\w+)<\|end_header_id\|>\n\n(.*?)<\|eot_id\|>",
            "<|start_header_id|>assistant<|end_header_id|>\n\n", ("<|eot_id|>", "<|end_of_text|>"), bos=("<|begin_of_text|>",)),
    _family("gemma", r"<start_of_turn>(\w+)\n(.*?)<end_of_turn>\n?", "<start_of_turn>model\n", ("<end_of_turn>", "<eos>"),
            bos=("<bos>",), roles={"model": "assistant"}),
    _family("phi3", r"<\|(system|user|assistant)\|>\n(.*?)<\|end\|>\n?", "<|assistant|>\n", ("<|end|>", "<|endoftext|>")),
    # [INST] user [/INST] answer</s>: the role is implied by the position, see _parse_mistral.
    _family("mistral", r"", "[/INST]", ("</s>",), bos=("<s>",)),
    _family("deepseek", r"", "<｜Assistant｜>", ("<｜end▁of▁sentence｜>",), bos=("<｜begin▁of▁sentence｜>",)),
)}
ORDER = ("chatml", "llama3", "gemma", "phi3", "mistral", "deepseek")
MARKUP = re.compile(r"<\|[^|>\s]{1,40}\|>|<start_of_turn>|<end_of_turn>|\[/?INST\]|<｜[^｜]{1,40}｜>")

KNOWN_DEFAULT_SYSTEM_PROMPTS = (
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face",
    "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
    "You are a helpful assistant.",
)


def _strip_bos(text: str, family: ChatFamily) -> str:
    for bos in family.bos:
        if text.startswith(bos):
            return text[len(bos):]
    return text


def _parse_turns(text: str, family: ChatFamily) -> Messages | None:
    if not text.endswith(family.generation_prompt):
        return None
    body = _strip_bos(text[: len(text) - len(family.generation_prompt)], family)
    messages, at = [], 0
    while at < len(body):
        match = family.turn.match(body, at)
        if match is None:
            return None
        role = family.roles.get(match.group(1), match.group(1))
        if role not in ("system", "user", "assistant"):
            return None
        messages.append({"role": role, "content": match.group(2)})
        at = match.end()
    return messages or None


def _parse_mistral(text: str, family: ChatFamily) -> Messages | None:
    body = _strip_bos(text.rstrip(), family)
    if not body.endswith("[/INST]"):
        return None
    messages: Messages = []
    for match in re.finditer(r"\[INST\](.*?)\[/INST\](.*?)(?=\[INST\]|$)", body, re.DOTALL):
        messages.append({"role": "user", "content": match.group(1).strip()})
        answer = match.group(2).replace("</s>", "").replace("<s>", "").strip()
        if answer:
            messages.append({"role": "assistant", "content": answer})
    rebuilt = "".join(m.group(0) for m in re.finditer(r"\[INST\](.*?)\[/INST\](.*?)(?=\[INST\]|$)", body, re.DOTALL))
    return messages if messages and rebuilt == body else None


def _parse_deepseek(text: str, family: ChatFamily) -> Messages | None:
    body = _strip_bos(text, family)
    body = body.removesuffix("<think>\n")  # R1-style templates open the reasoning
    if not body.endswith("<｜Assistant｜>"):
        return None
    system, _, rest = body.partition("<｜User｜>")
    if not rest:
        return None
    messages: Messages = [{"role": "system", "content": system}] if system else []
    for turn in rest.split("<｜User｜>"):
        user, sep, answer = turn.partition("<｜Assistant｜>")
        if not sep:
            return None
        messages.append({"role": "user", "content": user})
        answer = answer.replace("<｜end▁of▁sentence｜>", "")
        if answer:
            messages.append({"role": "assistant", "content": answer})
    return messages


def _parse(text: str, family: ChatFamily) -> Messages | None:
    if family.name == "mistral":
        return _parse_mistral(text, family)
    if family.name == "deepseek":
        return _parse_deepseek(text, family)
    return _parse_turns(text, family)


@dataclass(frozen=True)
class ParsedPrompt:
    prompt: str | Messages  # what the judge reads: messages, or the text as it came
    family: str | None  # the family that parsed it; None: not parsed (judged as plain text)


class PolicyTemplate:
    """How to read a policy's templated prompts: ``auto``, a family name, or a model spec / tokenizer
    directory whose chat template decides the family."""

    def __init__(self, spec: str = "auto"):
        self.spec = spec
        self.default_system: set[str] = set(KNOWN_DEFAULT_SYSTEM_PROMPTS)
        if spec == "auto":
            self.families = [FAMILIES[name] for name in ORDER]
        elif spec == "plain":
            self.families = []
        elif spec in FAMILIES:
            self.families = [FAMILIES[spec]]
        else:
            self.families = [self._from_tokenizer(spec)]

    def _from_tokenizer(self, spec: str) -> ChatFamily:
        from gram_ray.models import load_tokenizer, resolve_model

        tokenizer = load_tokenizer(resolve_model(spec))
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError(f"openrlhf.policy_template: {spec!r} has no chat template (use plain)")
        probe = [{"role": "user", "content": "PROBE-QUESTION"}]
        text = tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=True)
        for name in ORDER:
            messages = _parse(text, FAMILIES[name])
            if messages and messages[-1] == {"role": "user", "content": "PROBE-QUESTION"}:
                self.default_system |= {m["content"] for m in messages[:-1] if m["role"] == "system"}
                return FAMILIES[name]
        raise ValueError(f"openrlhf.policy_template: the chat template of {spec!r} is none of {', '.join(ORDER)}; "
                         f"its rendering starts {text[:80]!r}")

    def parse_prompt(self, text: str) -> ParsedPrompt:
        """The conversation in ``text``; text with no chat markup is a plain question; markup that no
        family parses is judged as it came, with ``family`` None (the caller counts it)."""
        for family in self.families:
            messages = _parse(text, family)
            if messages is not None:
                messages = [m for m in messages if not (m["role"] == "system" and m["content"].strip() in self.default_system)]
                if messages:
                    return ParsedPrompt(messages[0]["content"] if len(messages) == 1 and messages[0]["role"] == "user"
                                        else messages, family.name)
        if not MARKUP.search(text):
            return ParsedPrompt(text, "plain")
        return ParsedPrompt(text, None)

    def clean_response(self, response: str, family: str | None) -> str:
        """The response without the end-of-turn/EOS markers the policy appended (its family's, or
        every known family's when the prompt was not parsed)."""
        markers = FAMILIES[family].end_of_turn if family in FAMILIES else tuple(
            m for f in FAMILIES.values() for m in f.end_of_turn)
        changed = True
        while changed:
            changed = False
            stripped = response.rstrip("\n")
            for marker in markers:
                if stripped.endswith(marker):
                    response, changed = stripped[: -len(marker)], True
        return response
