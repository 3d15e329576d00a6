import json

import torch

from gram_ray.cli import main


def test_compare_prints_the_scores(tiny_model_dir, capsys):
    assert main(["compare", "--model", str(tiny_model_dir), "--dtype", "float32", "--prompt", "2+2?", "--a", "4", "--b", "5"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"p_a_better", "p_ab", "p_ba", "truncated", "model"} <= set(out)
    assert 0 <= out["p_a_better"] <= 1 and out["model"]["verdict_tokens"] == {"A": 49, "B": 50}


def test_compare_with_reasoning_prints_rationales(tiny_model_dir, capsys):
    code = main(["compare", "--model", str(tiny_model_dir), "--prompt", "q", "--a", "yes", "--b", "no",
                 "--reasoning", "--votes", "2", "--max-new-tokens", "4", "--seed", "1"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and len(out["rationales"]) == 4 and out["unparsed"] <= 4


def test_score_writes_every_row_in_order(tiny_model_dir, tmp_path, capsys):
    rows = [{"id": i, "prompt": f"q{i}", "response_a": "a" * (i + 1), "response_b": "b", "label": "AB"[i % 2]} for i in range(5)]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out.jsonl"
    assert main(["score", str(src), "--model", str(tiny_model_dir), "--dtype", "float32", "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"] == 5 and summary["labeled"] == 5
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [w["id"] for w in written] == [0, 1, 2, 3, 4]
    assert all({"p_a_better", "p_ab", "p_ba", "correct"} <= set(w) for w in written)


def test_score_stops_on_a_malformed_row_with_its_line(tiny_model_dir, tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text('{"prompt": "q", "response_a": "a", "response_b": "b"}\n{"prompt": "q", "response_a": "a"}\n')
    out = tmp_path / "out.jsonl"
    assert main(["score", str(src), "--model", str(tiny_model_dir), "--out", str(out)]) == 2
    assert f"{src}:2: response_b: missing" in capsys.readouterr().err
    assert not out.exists()
    assert main(["score", str(src), "--model", str(tiny_model_dir), "--dtype", "float32", "--out", str(out), "--skip-bad-rows"]) == 0
    assert json.loads(capsys.readouterr().out)["skipped"] == 1
    assert len(out.read_text().splitlines()) == 1


def test_model_info_for_a_bad_spec_exits_2(capsys):
    assert main(["model", "info", "nope"]) == 2
    assert "not a known spec" in capsys.readouterr().err


def test_help_defaults_are_the_config_defaults():
    """The scoring and sampling flags are built from the pydantic fields: parsing no flags gives
    exactly the configs' defaults, and every field's help text is its description."""
    from gram_ray.cli import SAMPLING_FLAGS, SCORER_FLAGS, _sampling_config, _scorer_config, build_parser
    from gram_ray.reasoning import SamplingConfig
    from gram_ray.scorer import ScorerConfig

    args = build_parser().parse_args(["compare", "--prompt", "p", "--a", "x", "--b", "y"])
    assert _scorer_config(args) == ScorerConfig()
    assert _sampling_config(args) == SamplingConfig()
    help_text = " ".join(build_parser()._subparsers._group_actions[0].choices["compare"].format_help().split())
    for config, names in ((ScorerConfig, SCORER_FLAGS), (SamplingConfig, SAMPLING_FLAGS)):
        for name in names:
            description = config.model_fields[name].description
            assert description and " ".join(description.split()) in help_text, name


def test_score_and_eval_agree_on_a_tie(smol_tokenizer, tmp_path, capsys):
    """A judge whose "A" and "B" rows are identical says p = 0.5 exactly: `gram-ray score` and
    `gram-ray eval` both count that as no verdict (never correct), through the one rule in judge."""
    from conftest import tiny_llama

    from gram_ray.eval.run import compute_metrics
    from gram_ray.judge import VerdictTokens, verdict

    model = tiny_llama(smol_tokenizer, seed=3)
    a, b = VerdictTokens.from_tokenizer(smol_tokenizer).ids
    with torch.no_grad():
        model.get_output_embeddings().weight[b] = model.get_output_embeddings().weight[a]
    model.save_pretrained(tmp_path / "tie")
    smol_tokenizer.save_pretrained(tmp_path / "tie")
    data = tmp_path / "pairs.jsonl"
    data.write_text(json.dumps({"prompt": "2+2?", "response_a": "4", "response_b": "5", "label": "A"}) + "\n")
    assert main(["score", str(data), "--model", str(tmp_path / "tie"), "--out", str(tmp_path / "s.jsonl"), "--dtype", "float32"]) == 0
    (scored,) = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert scored["p_a_better"] == 0.5 and verdict(0.5) is None
    assert scored["correct"] is False
    summary = json.loads(capsys.readouterr().out)
    assert summary["accuracy"] == 0.0
    metrics = compute_metrics("pairs", [{"label": "A", "p_a_better": 0.5, "p_ab": 0.5, "p_ba": 0.5, "subset": "",
                                         "truncated": False, "rationales": []}])
    assert metrics["pairs"]["accuracy"] == 0.0
