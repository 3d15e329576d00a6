"""The Serve application in a local Ray cluster (tiny model), called over a real gRPC channel."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from conftest import post_json

from gram_ray import judge, ranking
from gram_ray.client import AsyncGramClient, GramClient, RetryPolicy, grpo_reward_function
from gram_ray.judge import Pair
from gram_ray.proto import gram_pb2 as pb
from gram_ray.proto import gram_pb2_grpc
from gram_ray.scorer import GramScorer, ScorerConfig
from gram_ray.serve.config import LimitsConfig
from gram_ray.serve.launch import free_port

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "Name a good colour for a kitchen."
RESPONSES = ["White: it reflects light.", "Purple!!!", "A soft sage green, calm and warm.", "no", "Yellow is cheerful."]


@pytest.fixture(scope="module")
def service(tiny_model_dir, tmp_path_factory):
    """The shipped serve_configs/gram.yaml with a tiny judge and other numbers, started by Serve's own
    `serve run` command (gram_ray.serve.launch.serve_run) on a local cluster: the path users take."""
    import ray
    from ray import serve

    from gram_ray.serve.launch import start_on_free_ports

    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    args = {
        "scorer": {"model": str(tiny_model_dir), "dtype": "float32"},
        "batching": {"max_batch_pairs": 16, "batch_wait_timeout_s": 0.05},
        "limits": {"max_pairs_per_request": 50, "max_rank_responses": 8, "max_text_chars": 5000},
        "reasoning": {"enabled": True, "max_votes": 3, "sampling": {"max_new_tokens": 6, "seed": 0}},
    }
    started = start_on_free_ports(ROOT / "serve_configs" / "gram.yaml", tmp_path_factory.mktemp("serve"), args=args,
                                  judge={"autoscaling_config": {"min_replicas": 1, "max_replicas": 1}}, timeout_s=180)
    yield {"address": started.grpc, "http": started.http}
    serve.shutdown()
    ray.shutdown()


@pytest.fixture(scope="module")
def client(service):
    with GramClient(service["address"], timeout_s=60) as c:
        yield c


@pytest.fixture(scope="module")
def offline(tiny_model_dir):
    return GramScorer.from_config(ScorerConfig(model=str(tiny_model_dir), dtype="float32"))


def test_health(client, tiny_model_dir):
    health = client.health()
    assert health["status"] == "SERVING" and health["model"] == str(tiny_model_dir)
    assert health["verdict_token_a"] == "A" and health["max_pairs_per_request"] == 50


def test_compare_matches_the_offline_scorer(client, offline):
    pairs = [(PROMPT, RESPONSES[0], RESPONSES[1]), ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}, {"role": "user", "content": "bye"}], "Bye!", "ok")]
    served = client.compare(pairs)
    expected = offline.score([Pair(*p) for p in pairs])
    for s, e in zip(served, expected, strict=True):
        assert s["p_a_better"] == pytest.approx(e.p_a_better, abs=1e-5)
        assert s["p_ab"] == pytest.approx(e.p_ab, abs=1e-5) and s["p_ba"] == pytest.approx(e.p_ba, abs=1e-5)
    (ab_only,) = client.compare(pairs[:1], orders="ab")
    assert ab_only["p_ba"] is None and ab_only["p_a_better"] == pytest.approx(expected[0].p_ab, abs=1e-5)


@pytest.mark.parametrize("strategy, expected_comparisons", [("knockout", 4), ("tournament", 4), ("round_robin", 10)])
def test_rank_agrees_with_the_offline_scorer(client, offline, strategy, expected_comparisons):
    async def compare(indices):
        return [r.p_a_better for r in offline.score([Pair(PROMPT, RESPONSES[i], RESPONSES[j]) for i, j in indices])]

    expected = asyncio.run(ranking.rank(len(RESPONSES), compare, strategy))
    served = client.rank(PROMPT, RESPONSES, strategy=strategy)
    assert served["comparisons"] == expected.comparisons == expected_comparisons
    assert served["best_index"] == expected.best_index and served["ranking"] == expected.ranking
    assert served["scores"] == pytest.approx(expected.scores, abs=1e-4)


def test_reward_with_reference_and_by_group(client, offline):
    (p,) = offline.score([Pair(PROMPT, RESPONSES[2], RESPONSES[0])])
    assert client.reward([PROMPT], [RESPONSES[2]], references=[RESPONSES[0]]) == pytest.approx([judge.log_odds(p.p_a_better)], abs=1e-4)
    # No references: each group is judged against its first response.
    rewards = client.reward([PROMPT] * 3 + ["other"] * 2, RESPONSES)
    assert rewards[0] == 0.0 and rewards[3] == 0.0
    (p1,) = offline.score([Pair(PROMPT, RESPONSES[1], RESPONSES[0])])
    assert rewards[1] == pytest.approx(judge.log_odds(p1.p_a_better), abs=1e-4)


def _status(call, request):
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=30)
    return info.value.code(), info.value.details()


def _pair(prompt="q", a="a", b="b"):
    return pb.Pair(prompt=pb.Prompt(text=prompt), response_a=a, response_b=b)


@pytest.mark.parametrize(
    "rpc, request_, code, field",
    [
        ("Compare", pb.CompareRequest(), "INVALID_ARGUMENT", "pairs: empty"),
        ("Compare", pb.CompareRequest(pairs=[pb.Pair(response_a="a", response_b="b")]), "INVALID_ARGUMENT", "pairs[0].prompt: missing"),
        ("Compare", pb.CompareRequest(pairs=[_pair(), _pair(b=" ")]), "INVALID_ARGUMENT", "pairs[1].response_b: empty"),
        ("Compare", pb.CompareRequest(pairs=[_pair()], orders=7), "INVALID_ARGUMENT", "orders: unknown value 7"),
        ("Compare", pb.CompareRequest(pairs=[_pair()] * 51), "RESOURCE_EXHAUSTED", "pairs: 51 items"),
        ("Compare", pb.CompareRequest(pairs=[_pair(a="x" * 5001)]), "RESOURCE_EXHAUSTED", "pairs[0].response_a: 5001 characters"),
        ("Compare", pb.CompareRequest(pairs=[pb.Pair(prompt=pb.Prompt(conversation=pb.Conversation(messages=[pb.ChatMessage(role="robot", content="x")])), response_a="a", response_b="b")]), "INVALID_ARGUMENT", "pairs[0].prompt.conversation.messages[0].role"),
        ("Compare", pb.CompareRequest(pairs=[_pair()], reasoning=True, votes=4), "RESOURCE_EXHAUSTED", "votes: 4, over the limit of 3"),
        ("Compare", pb.CompareRequest(pairs=[_pair()], reasoning=True, votes=-1), "INVALID_ARGUMENT", "votes: must be >= 0"),
        ("Compare", pb.CompareRequest(pairs=[_pair()], votes=2), "INVALID_ARGUMENT", "votes: only used with reasoning=true"),
        ("Rank", pb.RankRequest(prompt=pb.Prompt(text="q"), responses=["only one"]), "INVALID_ARGUMENT", "responses: need at least 2"),
        ("Rank", pb.RankRequest(prompt=pb.Prompt(text="q"), responses=["a", "b"], strategy=9), "INVALID_ARGUMENT", "strategy: unknown value 9"),
        ("Rank", pb.RankRequest(prompt=pb.Prompt(text="q"), responses=["a"] * 9), "RESOURCE_EXHAUSTED", "responses: 9 responses"),
        ("Rank", pb.RankRequest(responses=["a", "b"]), "INVALID_ARGUMENT", "prompt: missing"),
        ("Reward", pb.RewardRequest(items=[pb.RewardItem(prompt=pb.Prompt(text="q"), response="")]), "INVALID_ARGUMENT", "items[0].response: empty"),
    ],
)
def test_bad_input_gets_a_status_naming_the_field(service, rpc, request_, code, field):
    with grpc.insecure_channel(service["address"]) as channel:
        stub = gram_pb2_grpc.RewardComparatorStub(channel)
        got_code, details = _status(getattr(stub, rpc), request_)
    assert got_code.name == code and details.startswith(field), details


def test_reasoning_returns_rationales_and_a_vote(client):
    (result,) = client.compare([(PROMPT, RESPONSES[0], RESPONSES[1])], reasoning=True, votes=2)
    rationales = result["rationales"]
    assert len(rationales) == 4 and {r["order"] for r in rationales} == {"ab", "ba"}
    assert all(r["verdict"] in ("A", "B", None) for r in rationales)
    assert result["unparsed"] == sum(r["verdict"] is None for r in rationales)
    votes_a = sum(r["verdict"] == "A" for r in rationales)
    votes_b = sum(r["verdict"] == "B" for r in rationales)
    if votes_a != votes_b:  # else the verdict-token probability breaks the tie
        assert result["p_a_better"] == pytest.approx(votes_a / (votes_a + votes_b))
    plain = client.compare_one(PROMPT, RESPONSES[0], RESPONSES[1])
    assert "rationales" not in plain


def test_reasoning_is_unimplemented_where_not_enabled():
    from gram_ray.serve.service import ComparatorService, RequestError

    async def score_pairs(pairs, orders):
        raise AssertionError("not reached")

    service = ComparatorService(score_pairs, {}, LimitsConfig())
    with pytest.raises(RequestError) as info:
        asyncio.run(service.compare(pb.CompareRequest(pairs=[_pair()], reasoning=True)))
    assert info.value.code == grpc.StatusCode.UNIMPLEMENTED and info.value.message.startswith("reasoning: not enabled")


def test_server_keeps_serving_after_errors(client):
    with pytest.raises(grpc.RpcError):
        client.compare([("q", "a", "")])
    assert client.health()["status"] == "SERVING"
    assert 0.0 <= client.compare_one("q", "a", "b")["p_a_better"] <= 1.0


def test_concurrent_calls_are_batched(service, client):
    from ray import serve

    handle = serve.get_deployment_handle("Judge", app_name="gram")
    before = handle.stats.remote().result()
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda i: client.compare_one(f"question {i}", "yes", "no"), range(32)))
    assert len(results) == 32
    after = handle.stats.remote().result()
    assert after["pairs"] - before["pairs"] == 32
    assert after["max_batch_pairs_seen"] > 1, after["batch_sizes"]


def test_async_client(service):
    async def main():
        async with AsyncGramClient(service["address"]) as c:
            results = await asyncio.gather(*(c.compare_one("q", "a", f"b{i}") for i in range(4)))
            ranked = await c.rank("q", ["a", "b", "c"], strategy="round_robin")
            return results, ranked

    results, ranked = asyncio.run(main())
    assert len(results) == 4 and ranked["comparisons"] == 3


def test_client_retries_while_unavailable_then_fails():
    policy = RetryPolicy(attempts=3, initial_backoff_s=0.1)
    start = time.perf_counter()
    with GramClient(f"127.0.0.1:{free_port()}", timeout_s=5, retry=policy) as c:
        with pytest.raises(grpc.RpcError) as info:
            c.health()
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert time.perf_counter() - start >= 0.3  # backoffs of 0.1 s then 0.2 s before giving up


def test_trl_grpo_reward_function(service):
    reward_fn = grpo_reward_function(service["address"])
    prompts = [[{"role": "user", "content": "hi"}]] * 2 + [[{"role": "user", "content": "2+2?"}]] * 2
    completions = [[{"role": "assistant", "content": c}] for c in ("hello", "hey there", "4", "5")]
    rewards = reward_fn(prompts=prompts, completions=completions)
    assert len(rewards) == 4 and rewards[0] == 0.0 and rewards[2] == 0.0 and rewards[1] != 0.0
    with_refs = reward_fn(prompts=["q"], completions=["a"], reference=["b"])
    assert len(with_refs) == 1 and with_refs[0] != 0.0


def test_openrlhf_http_route(service):
    prompts = ["<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n"] * 2
    status, body = post_json(service["http"] + "/get_reward", {"query": [prompts[0] + "good answer", prompts[1] + "bad"], "prompts": prompts})
    assert status == 200 and len(body["rewards"]) == 2 and body["rewards"][0] == 0.0
    status, body = post_json(service["http"] + "/get_reward", {"query": ["x"], "prompts": ["x"], "references": ["y"]})
    assert status == 400 and body["error"].startswith("items[0].response: empty")
    status, body = post_json(service["http"] + "/get_reward", {"query": "nope"})
    assert status == 400 and "query" in body["error"]


@pytest.mark.parametrize("family", ["chatml", "llama3", "gemma"])
def test_openrlhf_route_judges_the_conversation_not_the_policy_markup(service, client, smol_tokenizer, family):
    """OpenRLHF's stock request, as openrlhf/utils/remote_rm_utils.py (remote_rm_fn_ray) posts it:
    ``{"query": prompt + response + end-of-turn, "prompts": the chat-templated prompt, "labels": the
    dataset's reference answers}``, with prompts from three chat templates (SmolLM2's own ChatML with
    its default system prompt, and Jinja renderings of Llama 3 and Gemma). The reward equals `Reward`
    on the plain conversation against the label: the policy's system prompt and markup are gone."""
    from test_policy_chat import GEMMA, LLAMA3

    template, bos, end = {"chatml": (None, None, "<|im_end|>"), "llama3": (LLAMA3, "<|begin_of_text|>", "<|eot_id|>"),
                          "gemma": (GEMMA, "<bos>", "<end_of_turn>")}[family]
    question = [{"role": "user", "content": "What is the capital of France?"}]
    templated = smol_tokenizer.apply_chat_template(question, chat_template=template, tokenize=False,
                                                   add_generation_prompt=True, **({"bos_token": bos} if bos else {}))
    assert templated != question[0]["content"]
    responses = ["The capital of France is Paris.", "It is Lyon."]
    body = {"query": [templated + r + end for r in responses], "prompts": [templated] * 2,
            "labels": ["Paris is the capital of France."] * 2}
    status, out = post_json(service["http"] + "/get_reward", body)
    assert status == 200, out
    expected = client.reward([question[0]["content"]] * 2, responses, references=body["labels"])
    assert out["rewards"] == pytest.approx(expected, abs=1e-5)
    assert out["extra_logs"]["gram_unparsed_prompts"] == [0.0, 0.0]
    broken = {"query": ["<|im_start|>user\nhi there"], "prompts": ["<|im_start|>user\nhi"], "labels": ["hello"]}
    status, out = post_json(service["http"] + "/get_reward", broken)
    assert status == 200 and out["extra_logs"]["gram_unparsed_prompts"] == [1.0]  # judged as text, counted
    status, out = post_json(service["http"] + "/get_reward", {**body, "labels": ["ok", 3]})
    assert status == 400 and out["error"] == "labels[1]: expected a non-empty string"


def test_openrlhf_own_remote_reward_client(service, client, smol_tokenizer):
    """OpenRLHF 0.11.2's own code that calls a remote reward model during rollouts
    (SingleTurnAgentExecutor._fetch_rewards_via_http: aiohttp, one query per request, the prompt
    and the dataset's label): rewards against the label, and 0 (no reference) for null labels."""
    import asyncio

    from openrlhf.utils.agent import SingleTurnAgentExecutor

    question = "What is the capital of France?"
    prompt = smol_tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True)
    executor = SingleTurnAgentExecutor(service["http"] + "/get_reward")
    fetch = executor._fetch_rewards_via_http
    label = "Paris is the capital of France."
    (out,) = asyncio.run(fetch([prompt + "It is Paris.<|im_end|>"], [prompt], [label]))
    assert out["rewards"] == pytest.approx(client.reward([question], ["It is Paris."], references=[label]), abs=1e-5)
    assert out["extra_logs"]["gram_unparsed_prompts"] == [0.0]
    (out,) = asyncio.run(fetch([prompt + "It is Paris.<|im_end|>"], [prompt], [None]))
    assert out["rewards"] == [0.0] and out["extra_logs"]["gram_comparisons"] == [0.0]


@pytest.mark.parametrize("conversational", [True, False])
def test_trl_grpo_trainer_trains_with_the_service_as_its_reward(service, smol_tokenizer, tmp_path, conversational):
    """TRL's real GRPOTrainer (a tiny random policy, 2 steps) with `grpo_reward_function` as its only
    reward: every reward call is answered and every logged step has a finite reward."""
    import math

    from conftest import tiny_llama
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    questions = ["What is 2+2?", "Name a colour.", "Say hello.", "What is the capital of France?"]
    rows = [{"prompt": [{"role": "user", "content": q}] if conversational else q} for q in questions]
    reward = grpo_reward_function(service["address"], timeout_s=60)
    calls: list[list[float]] = []

    def gram(prompts, completions, **kwargs):
        calls.append(reward(prompts, completions, **kwargs))
        return calls[-1]

    args = GRPOConfig(
        output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=4, num_generations=4,
        max_completion_length=8, logging_steps=1, report_to=[], use_cpu=True, save_strategy="no",
        temperature=1.0, seed=0,
    )
    trainer = GRPOTrainer(model=tiny_llama(smol_tokenizer, seed=1), reward_funcs=[gram], args=args,
                          train_dataset=Dataset.from_list(rows), processing_class=smol_tokenizer)
    trainer.train()
    assert len(calls) >= 2 and all(len(c) == 4 and all(math.isfinite(r) for r in c) for c in calls)
    logged = [entry["reward"] for entry in trainer.state.log_history if "reward" in entry]
    assert len(logged) == 2 and all(math.isfinite(r) for r in logged)


def test_group_scoring_anchor_circular_all_pairs(client, offline):
    """Within a group (no reference): anchor judges each against the first (n-1 comparisons, the first
    gets 0), circular each against the next (n), all_pairs all n(n-1)/2 with Bradley-Terry strengths
    (mean 0). The rewards equal the offline scorer's verdicts on the same pairs."""
    from gram_ray.proto.enums import GROUP_SCORINGS
    from gram_ray.serve.service import group_comparisons

    responses = RESPONSES[:4]
    p = {(i, j): offline.score([Pair(PROMPT, responses[i], responses[j])])[0].p_a_better for i in range(4) for j in range(4) if i != j}
    anchor = client.reward([PROMPT] * 4, responses, group_scoring="anchor")
    assert anchor[0] == 0.0 and anchor[1:] == pytest.approx([judge.log_odds(p[(i, 0)]) for i in (1, 2, 3)], abs=1e-4)
    circular = client.reward([PROMPT] * 4, responses, group_scoring="circular")
    assert circular == pytest.approx([judge.log_odds(p[(i, (i + 1) % 4)]) for i in range(4)], abs=1e-4)
    strengths = ranking.fit_bradley_terry(4, [(i, j) for i in range(4) for j in range(i + 1, 4)],
                                          [p[(i, j)] for i in range(4) for j in range(i + 1, 4)])
    mean = sum(strengths) / 4
    all_pairs = client.reward([PROMPT] * 4, responses, group_scoring="all_pairs")
    assert all_pairs == pytest.approx([s - mean for s in strengths], abs=1e-3) and sum(all_pairs) == pytest.approx(0, abs=1e-6)
    costs = {name: client._call(client.stub.Reward, pb.RewardRequest(
        items=[pb.RewardItem(prompt=pb.Prompt(text=PROMPT), response=r) for r in responses],
        group_scoring=value)).comparisons for name, value in GROUP_SCORINGS.items()}
    assert costs == {"anchor": 3, "circular": 4, "all_pairs": 6}
    assert [len(group_comparisons(n, "all_pairs")) for n in (1, 2, 5)] == [0, 1, 10]
    with pytest.raises(grpc.RpcError) as err:
        client._call(client.stub.Reward, pb.RewardRequest(items=[pb.RewardItem(prompt=pb.Prompt(text="q"), response="a")],
                                                         group_scoring=9))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "group_scoring" in err.value.details()


def test_binding_beyond_loopback_needs_a_token():
    from gram_ray.serve.auth import check_exposure, is_loopback
    from gram_ray.serve.config import AuthConfig

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and not is_loopback("0.0.0.0")
    check_exposure("127.0.0.1", None, AuthConfig(), "grpc.host")
    check_exposure("0.0.0.0", "token", AuthConfig(), "grpc.host")
    check_exposure("0.0.0.0", None, AuthConfig(allow_insecure=True), "grpc.host")
    with pytest.raises(ValueError, match="without an auth token; set GRAM_RAY_AUTH_TOKEN"):
        check_exposure("0.0.0.0", None, AuthConfig(), "grpc.host")


def _compare_while_killing(address: str, pid: int, retry: RetryPolicy) -> tuple[list, list]:
    """3 callers send 6 Compare calls of 40 long pairs each; 1 s in, SIGKILL process ``pid``.
    Returns the answers and the status codes of the calls that failed."""
    import os
    import signal
    import threading

    long_pairs = [(PROMPT, "a long answer " * 150 + str(i), "another long answer " * 150) for i in range(40)]
    results, errors = [], []

    def send() -> None:
        with GramClient(address, timeout_s=120, retry=retry) as c:
            for _ in range(6):
                try:
                    results.append(c.compare(long_pairs))
                except grpc.RpcError as exc:  # noqa: PERF203
                    errors.append(exc.code())

    threads = [threading.Thread(target=send) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    os.kill(pid, signal.SIGKILL)
    for t in threads:
        t.join()
    return results, errors


def test_no_request_is_lost_when_the_judge_replica_is_killed(service, client):
    """SIGKILL the real judge replica process while requests are in flight: Serve restarts it, the
    ingress retries the idempotent scoring on the new replica within each caller's deadline, and
    every request succeeds (before: the in-flight ones failed with INTERNAL)."""
    from ray import serve

    def judge_pid() -> int:
        return serve.get_deployment_handle("Judge", app_name="gram").stats.remote().result()["pid"]

    pid = judge_pid()
    # no client-side retries: the server alone must not lose the request
    results, errors = _compare_while_killing(service["address"], pid, RetryPolicy(attempts=1))
    assert errors == [] and len(results) == 18 and all(len(r) == 40 for r in results)
    assert judge_pid() != pid  # a new replica answered
    assert client.health()["status"] == "SERVING"


def test_no_request_is_lost_when_the_ingress_replica_is_killed(service, client):
    """SIGKILL the real ingress replica (the process running the gRPC server) while GramClient calls
    are in flight: the calls on the dead connection fail with UNAVAILABLE, the client retries them
    with its default backoff while Serve restarts the replica on the same port, and none is lost."""
    import subprocess

    def ingress_pids() -> set[int]:
        out = subprocess.run(["pgrep", "-f", "ServeReplica:gram:RewardComparator"], capture_output=True, text=True)
        return {int(pid) for pid in out.stdout.split()}

    (pid,) = ingress_pids()
    results, errors = _compare_while_killing(service["address"], pid, RetryPolicy())  # the default retry policy
    assert errors == [] and len(results) == 18 and all(len(r) == 40 for r in results)
    assert pid not in ingress_pids() and len(ingress_pids()) == 1  # a new ingress answered
    assert client.health()["status"] == "SERVING"


def test_the_judge_skips_pairs_whose_caller_gave_up(service):
    """A pair whose caller's deadline passed while it queued is not scored (DeadlineExpired, which the
    ingress maps to DEADLINE_EXCEEDED), is counted, and does not hold up the live pairs beside it."""
    from ray import serve

    from gram_ray.judge import Pair
    from gram_ray.serve.scorer_deployment import DeadlineExpired, PairJob

    handle = serve.get_deployment_handle("Judge", app_name="gram")
    before = handle.stats.remote().result()
    pair = Pair("q", "a", "b")
    expired = handle.score.remote(PairJob(pair, "both", time.time() - 1))
    live = handle.score.remote(PairJob(pair, "both", time.time() + 60))
    plain = handle.score.remote(PairJob(pair, "both"))
    with pytest.raises(DeadlineExpired):
        expired.result()
    assert live.result().p_a_better == pytest.approx(plain.result().p_a_better)
    after = handle.stats.remote().result()
    assert after["expired_pairs"] - before["expired_pairs"] == 1
    assert after["scorer"]["pairs"] - before["scorer"]["pairs"] == 2


def test_fuzzed_requests_never_crash_the_server(service):
    """Property-based requests (hypothesis, bounded: 90 calls): arbitrary unicode including control-token
    strings, sizes, enum values and conversation shapes. Every call answers OK or a precise client
    status, never INTERNAL/UNKNOWN, and the server is still SERVING afterwards."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    text = st.one_of(st.text(max_size=40), st.sampled_from(["", " ", "<|im_end|>", "<|im_start|>assistant\nA", "\x00", "é" * 3]))
    message = st.builds(pb.ChatMessage, role=st.sampled_from(["user", "assistant", "system", "robot", ""]), content=text)
    prompt = st.one_of(st.builds(pb.Prompt, text=text),
                       st.builds(lambda m: pb.Prompt(conversation=pb.Conversation(messages=m)), st.lists(message, max_size=3)),
                       st.just(None))
    enum = st.integers(min_value=-1, max_value=5)
    pair = st.builds(lambda p, a, b: pb.Pair(prompt=p, response_a=a, response_b=b), prompt, text, text)
    requests = st.one_of(
        st.builds(lambda ps, o, r, v: ("Compare", pb.CompareRequest(pairs=ps, orders=o, reasoning=r, votes=v)),
                  st.lists(pair, max_size=4), enum, st.booleans(), st.integers(min_value=-1, max_value=4)),
        st.builds(lambda p, rs, s, o: ("Rank", pb.RankRequest(prompt=p, responses=rs, strategy=s, orders=o)),
                  prompt, st.lists(text, max_size=5), enum, enum),
        st.builds(lambda items, g: ("Reward", pb.RewardRequest(items=items, group_scoring=g)),
                  st.lists(st.builds(lambda p, r, ref, grp: pb.RewardItem(prompt=p, response=r, group=grp, **({} if ref is None else {"reference": ref})),
                                     prompt, text, st.one_of(st.none(), text), text), max_size=4), enum),
    )
    seen: set[str] = set()
    with grpc.insecure_channel(service["address"]) as channel:
        stub = gram_pb2_grpc.RewardComparatorStub(channel)

        @settings(max_examples=90, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
        @given(requests)
        def call(rpc_request):
            rpc, request = rpc_request
            try:
                getattr(stub, rpc)(request, timeout=60)
                seen.add("OK")
            except grpc.RpcError as exc:
                assert exc.code() not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), (rpc, request, exc.details())
                assert exc.details(), (rpc, request)
                seen.add(exc.code().name)

        call()
        assert stub.Health(pb.HealthRequest(), timeout=30).status == "SERVING"
    assert {"OK", "INVALID_ARGUMENT"} <= seen, seen  # the generator reached both valid and invalid requests


def test_verl_batch_reward_manager_with_the_service(service, client, smol_tokenizer):
    """verl 0.9.1's own BatchRewardManager (installed --no-deps by `make setup`) decodes a DataProto of
    rollouts and calls gram-ray's verl_compute_score exactly as verl does; the reward lands on each
    response's last token and equals `Reward` on the same items (a ground truth is the reference; rows
    without one are scored within their question's group)."""
    import numpy as np
    import torch
    from verl import DataProto
    from verl.workers.reward_manager.batch import BatchRewardManager

    from gram_ray.client import verl_compute_score

    questions = ["What is 2+2?", "What is 2+2?", "Name a colour.", "Name a colour."]
    responses = ["4", "It is 5.", "Blue.", "A soft sage green."]
    truths = ["Four.", "Four.", None, None]
    pad = smol_tokenizer.pad_token_id if smol_tokenizer.pad_token_id is not None else 0
    prompt_ids = [smol_tokenizer(q, add_special_tokens=False)["input_ids"] for q in questions]
    response_ids = [smol_tokenizer(r, add_special_tokens=False)["input_ids"] for r in responses]
    p_len, r_len = max(map(len, prompt_ids)), max(map(len, response_ids))
    prompts = torch.tensor([[pad] * (p_len - len(p)) + p for p in prompt_ids])  # verl left-pads prompts
    resp = torch.tensor([r + [pad] * (r_len - len(r)) for r in response_ids])  # and right-pads responses
    mask = torch.tensor([[0] * (p_len - len(p)) + [1] * len(p) + [1] * len(r) + [0] * (r_len - len(r))
                         for p, r in zip(prompt_ids, response_ids, strict=True)])
    data = DataProto.from_dict(
        tensors={"prompts": prompts, "responses": resp, "attention_mask": mask, "input_ids": torch.cat([prompts, resp], 1)},
        non_tensors={"data_source": np.array(["gram"] * 4, dtype=object),
                     "reward_model": np.array([{"ground_truth": t} for t in truths], dtype=object),
                     "extra_info": np.array([{"question": q} for q in questions], dtype=object)},
    )
    manager = BatchRewardManager(smol_tokenizer, num_examine=0, compute_score=verl_compute_score, address=service["address"])
    rewards = manager(data)
    expected = client.reward(questions, responses, references=truths, groups=questions)
    for i, r in enumerate(response_ids):
        assert rewards[i, len(r) - 1].item() == pytest.approx(expected[i], abs=1e-6)
        assert rewards[i].abs().sum().item() == pytest.approx(abs(expected[i]), abs=1e-6)  # nowhere else
    assert expected[2] == 0.0 and expected[0] != 0.0  # group anchor scores 0; a reference row is judged against it
    with pytest.raises(ValueError, match=r"extra_infos\[0\]: needs 'question'"):
        verl_compute_score(["gram"], ["4"], ["Four."], [{}], address=service["address"])
