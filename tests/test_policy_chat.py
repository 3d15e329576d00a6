"""Recovering the conversation from a policy's chat-templated prompt (what OpenRLHF posts)."""

import pytest

from gram_ray.policy_chat import PolicyTemplate

CONVERSATION = [
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris."},
    {"role": "user", "content": "And of Italy?"},
]

# Chat templates in the Jinja form their model repositories ship (shortened: no tools, no dates).
LLAMA3 = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
GEMMA = (
    "{{ bos_token }}{% for m in messages %}{% set role = 'model' if m['role'] == 'assistant' else m['role'] %}"
    "<start_of_turn>{{ role }}\n{{ m['content'] | trim }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
RENDERED = {
    "phi3": "<|user|>\nWhat is the capital of France?<|end|>\n<|assistant|>\nParis.<|end|>\n<|user|>\nAnd of Italy?<|end|>\n<|assistant|>\n",
    "mistral": "<s>[INST] What is the capital of France? [/INST] Paris.</s>[INST] And of Italy? [/INST]",
    "deepseek": "<｜begin▁of▁sentence｜><｜User｜>What is the capital of France?<｜Assistant｜>Paris."
                "<｜end▁of▁sentence｜><｜User｜>And of Italy?<｜Assistant｜>",
}



@pytest.mark.parametrize("template,bos", [(None, ""), (LLAMA3, "<|begin_of_text|>"), (GEMMA, "<bos>")])
def test_real_chat_templates_give_back_the_conversation(smol_tokenizer, template, bos):
    """SmolLM2's own template (ChatML, which adds a default system prompt) and Jinja renderings of
    the Llama 3 and Gemma formats: auto recovers the conversation the dataset holds."""
    text = smol_tokenizer.apply_chat_template(CONVERSATION, chat_template=template, tokenize=False, add_generation_prompt=True,
                                              **({"bos_token": bos} if bos else {}))
    parsed = PolicyTemplate("auto").parse_prompt(text)
    assert parsed.family is not None and parsed.prompt == CONVERSATION, text


@pytest.mark.parametrize("family", sorted(RENDERED))
def test_other_families(family):
    parsed = PolicyTemplate("auto").parse_prompt(RENDERED[family])
    assert (parsed.family, parsed.prompt) == (family, CONVERSATION)


def test_a_single_user_turn_is_the_plain_question_and_the_response_loses_its_end_of_turn(smol_tokenizer):
    question = [{"role": "user", "content": "What is 2+2?"}]
    prompt = smol_tokenizer.apply_chat_template(question, tokenize=False, add_generation_prompt=True)
    template = PolicyTemplate("auto")
    parsed = template.parse_prompt(prompt)
    assert parsed == type(parsed)("What is 2+2?", "chatml")  # SmolLM2's default system prompt is dropped
    assert template.clean_response("4<|im_end|>\n", parsed.family) == "4"
    assert template.clean_response("4<|im_end|><|endoftext|>", parsed.family) == "4"
    assert template.clean_response("4 is <|im_end|> odd", parsed.family) == "4 is <|im_end|> odd"  # only the end


def test_a_tokenizer_spec_learns_its_family_and_default_system_prompt(smol_tokenizer):
    template = PolicyTemplate("smollm2-135m")
    assert [f.name for f in template.families] == ["chatml"]
    custom = "<|im_start|>system\nAnswer in French.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    assert template.parse_prompt(custom).prompt == [{"role": "system", "content": "Answer in French."},
                                                    {"role": "user", "content": "Hi"}]  # a real system prompt stays


def test_plain_text_and_unparseable_markup():
    template = PolicyTemplate("auto")
    assert template.parse_prompt("Human: hi\n\nAssistant:").family == "plain"
    broken = "<|im_start|>user\nno end of turn and no generation prompt"
    parsed = template.parse_prompt(broken)
    assert parsed.family is None and parsed.prompt == broken  # judged as it came; the caller counts it
    with pytest.raises(ValueError, match="not a model directory"):
        PolicyTemplate(__file__)  # not a model spec at all
