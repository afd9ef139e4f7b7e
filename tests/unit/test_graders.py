"""Grader semantics: OpenAI's documented behaviour, as a table of cases (exact numbers where defined)."""

from __future__ import annotations

import math

import pytest
from pydantic import TypeAdapter

from align_api.graders import Grader as GraderSpec
from align_trainer import graders
from align_trainer.graders.judges import parse_label, parse_score
from align_trainer.graders.templates import TemplateError, make_sample, render

SPEC = TypeAdapter(GraderSpec)


def grader(**fields):  # type: ignore[no-untyped-def]
    return graders.build(SPEC.validate_python(fields))


def check(op: str, reference: str = "{{item.answer}}"):  # type: ignore[no-untyped-def]
    return grader(type="string_check", name="s", input="{{sample.output_text}}", reference=reference, operation=op)


# (operation, answer, reference, reward): eq/ne exact and case-sensitive; like = contains; ilike = contains, any case
STRING_CHECK = [
    ("eq", "Paris", "Paris", 1.0), ("eq", "paris", "Paris", 0.0), ("eq", "Paris ", "Paris", 0.0),
    ("ne", "Paris", "Paris", 0.0), ("ne", "London", "Paris", 1.0),
    ("like", "The capital is Paris.", "Paris", 1.0), ("like", "the capital is paris", "Paris", 0.0),
    ("ilike", "THE CAPITAL IS PARIS", "paris", 1.0), ("ilike", "Lyon", "paris", 0.0),
    ("like", "anything", "", 1.0), ("eq", "", "", 1.0),
]


@pytest.mark.parametrize("op,answer,reference,reward", STRING_CHECK)
def test_string_check_table(op: str, answer: str, reference: str, reward: float) -> None:
    result = check(op).grade({"answer": reference}, answer)
    assert result.reward == reward and not result.failed


def test_templates_item_nested_and_output_json() -> None:
    sample = make_sample('{"city": {"name": "Paris"}, "n": [1, 2]}')
    item = {"ref": {"list": ["a", "Paris"]}, "n": 3}
    assert render("{{ sample.output_json.city.name }}={{item.ref.list[1]}}", sample, item) == "Paris=Paris"
    assert render("{{item.ref}}", sample, item) == '{"list": ["a", "Paris"]}'
    assert render("{{item.n}} {{sample.output_json.n}}", sample, item) == "3 [1, 2]"
    g = grader(type="string_check", name="j", input="{{sample.output_json.city.name}}", reference="{{item.ref.list[1]}}",
               operation="eq")
    assert g.grade(item, '{"city": {"name": "Paris"}}').reward == 1.0


def test_template_errors_are_recorded_not_raised() -> None:
    with pytest.raises(TemplateError):
        render("{{item.missing}}", make_sample("x"), {})
    result = check("eq").grade({}, "Paris")  # the item has no `answer`
    assert result.reward == 0.0 and result.errors == {"invalid_variable_error": True}
    g = grader(type="string_check", name="j", input="{{sample.output_json.a}}", reference="x", operation="eq")
    result = g.grade({}, "not json")
    assert result.reward == 0.0 and result.errors == {"sample_parse_error": True}
    out = result.to_dict()
    assert set(graders.ERROR_FLAGS) <= set(out["metadata"]["errors"]) and out["metadata"]["errors"]["sample_parse_error"]


def similarity(metric: str, answer: str, reference: str) -> float:
    g = grader(type="text_similarity", name="t", input="{{sample.output_text}}", reference="{{item.r}}",
               evaluation_metric=metric)
    result = g.grade({"r": reference}, answer)
    assert not result.failed
    return result.reward


SIMILARITY = ["fuzzy_match", "bleu", "gleu", "rouge_1", "rouge_2", "rouge_3", "rouge_4", "rouge_5", "rouge_l"]
REFERENCE = "the quick brown fox jumps over the lazy dog"


@pytest.mark.parametrize("metric", SIMILARITY)
def test_similarity_bounds(metric: str) -> None:
    same = similarity(metric, REFERENCE, REFERENCE)
    close = similarity(metric, "the quick brown fox jumped over a lazy dog", REFERENCE)
    unrelated = similarity(metric, "zebra xylophone quartz", REFERENCE)
    assert same == pytest.approx(1.0)
    assert 0.0 <= unrelated < close < 1.0
    assert unrelated <= 0.4  # fuzzy_match gives unrelated strings a small positive score


def test_similarity_known_values() -> None:
    # ROUGE-1 F: 5 of 6 unigrams shared both ways -> 5/6; BLEU is sacrebleu's sentence BLEU / 100.
    assert similarity("rouge_1", "the cat is on the mat", "the cat sat on the mat") == pytest.approx(5 / 6)
    assert similarity("fuzzy_match", "Hello World!", "hello world") == 1.0  # default_process ignores case/punct
    assert similarity("bleu", "a b c d", "a b c d") == pytest.approx(1.0)


def test_pass_threshold_marks_passed() -> None:
    g = grader(type="text_similarity", name="t", input="{{sample.output_text}}", reference="x y z",
               evaluation_metric="rouge_1", pass_threshold=0.5)
    assert g.grade({}, "x y z").passed is True and g.grade({}, "q").passed is False


def test_meteor_and_cosine_unavailable_is_a_validation_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from align_trainer.graders import similarity as sim
    monkeypatch.setattr(sim, "wordnet_location", lambda: None)
    monkeypatch.delenv("ALIGN_EMBEDDING_MODEL", raising=False)
    for metric, needle in (("meteor", "WordNet"), ("cosine", "ALIGN_EMBEDDING_MODEL")):
        spec = SPEC.validate_python({"type": "text_similarity", "name": "t", "input": "{{sample.output_text}}",
                                     "reference": "r", "evaluation_metric": metric})
        with pytest.raises(graders.GraderUnavailable, match=needle):
            graders.check_available(spec)
        assert isinstance(graders.GraderUnavailable("x"), ValueError)  # alignctl validate catches ValueError
        with pytest.raises(graders.GraderUnavailable):
            graders.build(spec)


def test_cosine_with_a_local_embedding_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALIGN_EMBEDDING_MODEL", "builtin://tiny")
    assert 0.0 < similarity("cosine", "abc def", "abc def") == pytest.approx(1.0, abs=1e-5)
    assert 0.0 <= similarity("cosine", "zzz", "hello there") <= 1.0


def multi(formula: str, **subs):  # type: ignore[no-untyped-def]
    return grader(type="multi", name="m", graders=subs, calculate_output=formula)


EXACT = {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}", "reference": "{{item.answer}}",
         "operation": "eq"}
CONTAINS = {"type": "string_check", "name": "contains", "input": "{{sample.output_text}}",
            "reference": "{{item.answer}}", "operation": "ilike"}
LENGTH = {"type": "python", "name": "length", "source": "def grade(sample, item):\n    return len(sample['output_text'])\n"}

# (formula, answer, reward, sub_rewards) with answer key "Paris"
MULTI = [
    ("0.5 * exact + 0.5 * contains", "Paris", 1.0, {"exact": 1.0, "contains": 1.0}),
    ("0.5 * exact + 0.5 * contains", "in paris", 0.5, {"exact": 0.0, "contains": 1.0}),
    ("max(exact, contains) - 0.1", "no", -0.1, {"exact": 0.0, "contains": 0.0}),
    ("contains * 2 ** 3 % 5", "PARIS", 3.0, {"exact": 0.0, "contains": 1.0}),
    ("length / 10", "Paris!", 0.6, {"length": 6.0}),
]


@pytest.mark.parametrize("formula,answer,reward,subs", MULTI)
def test_multi_table(formula: str, answer: str, reward: float, subs: dict) -> None:
    names = set(subs)
    table = {"exact": EXACT, "contains": CONTAINS, "length": LENGTH}
    result = multi(formula, **{n: table[n] for n in names}).grade({"answer": "Paris"}, answer)
    assert result.reward == pytest.approx(reward) and result.sub_rewards == subs and not result.failed


def test_multi_division_by_zero_is_a_formula_error_and_subgrader_errors_carry_up() -> None:
    result = multi("1 / exact", exact=EXACT).grade({"answer": "Paris"}, "London")
    assert result.reward == 0.0 and result.errors["formula_parse_error"]
    result = multi("exact + contains", exact=EXACT, contains=CONTAINS).grade({}, "x")  # no item.answer
    assert result.reward == 0.0 and result.errors["invalid_variable_error"]


def test_nested_multi_flattens_sub_rewards() -> None:
    inner = {"type": "multi", "name": "inner", "graders": {"exact": EXACT}, "calculate_output": "exact * 2"}
    result = multi("inner + contains", inner=inner, contains=CONTAINS).grade({"answer": "Paris"}, "Paris")
    assert result.reward == 3.0 and result.sub_rewards == {"inner": 2.0, "contains": 1.0, "exact": 1.0}


PYTHON = [
    ("return 1 if sample['output_text'] == item['answer'] else 0", "Paris", 1.0),
    ("return True", "x", 1.0),
    ("return 5", "x", 5.0),  # OpenAI's own example grader returns 0..5
    ("return -0.25", "x", -0.25),
    ("import json\n    return json.loads(sample['output_text'])['score'] / 10", '{"score": 7}', 0.7),
    ("return float(sample['output_json']['score'])", '{"score": 3}', 3.0),
    ("import numpy as np\n    return np.float32(0.5)", "x", 0.5),
]


@pytest.mark.parametrize("body,answer,reward", PYTHON)
def test_python_table(body: str, answer: str, reward: float) -> None:
    g = grader(type="python", name="p", source=f"def grade(sample, item):\n    {body}\n")
    result = g.grade({"answer": "Paris"}, answer)
    assert not result.failed, result.details
    assert result.reward == pytest.approx(reward)


def test_python_state_persists_only_within_one_grader() -> None:
    src = "calls = []\ndef grade(sample, item):\n    calls.append(1)\n    return len(calls)\n"
    g = grader(type="python", name="p", source=src)
    values = [r.reward for r in g.grade_batch([{}] * 3, ["a", "b", "c"])]
    assert all(v >= 1 for v in values) and not any(math.isnan(v) for v in values)


@pytest.mark.parametrize("text,score", [
    ("0.8", 0.8), ('{"result": 7, "steps": []}', 7.0), ("Score: 4/5", 4.0), ("I'd say 3", 3.0),
    ("The answer has 2 errors. Rating: 0.25", 0.25), ("7.5e-1", 0.75),
])
def test_parse_score(text: str, score: float) -> None:
    assert parse_score(text) == pytest.approx(score)


@pytest.mark.parametrize("text,label", [
    ("correct", "correct"), ("Correct.", "correct"), ('"incorrect"', "incorrect"),
    ('{"result": "incorrect"}', "incorrect"), ("The answer is correct", "correct"),
])
def test_parse_label(text: str, label: str) -> None:
    assert parse_label(text, ["correct", "incorrect"]) == label


def test_parse_label_ambiguous_is_a_parse_error() -> None:
    with pytest.raises(ValueError):
        parse_label("correct or incorrect", ["correct", "incorrect"])
    with pytest.raises(ValueError):
        parse_score("no number here")


def test_hosted_judge_without_endpoint_is_unavailable() -> None:
    spec = SPEC.validate_python({"type": "score_model", "name": "j", "model": "gpt-4o-2024-08-06",
                                 "input": [{"role": "user", "content": "{{sample.output_text}}"}]})
    assert graders.problems(spec) and "endpoint" in graders.problems(spec)[0]


def test_run_grader_has_openai_shape() -> None:
    out = graders.run_grader(SPEC.validate_python(EXACT), {"answer": "Paris"}, "Paris")
    assert out["reward"] == 1.0 and out["sub_rewards"] == {}
    assert out["metadata"]["type"] == "string_check" and out["metadata"]["errors"]["other_error"] is False


def test_meteor_when_wordnet_is_present(monkeypatch: pytest.MonkeyPatch) -> None:
    # No WordNet ships here; a stand-in without synonyms exercises the metric (exact and stem matches only).
    from align_trainer.graders import similarity as sim

    class NoSynonyms:
        def synsets(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            return []

    monkeypatch.setattr(sim, "wordnet_location", lambda: "stub")
    monkeypatch.setattr(sim, "_wordnet", lambda: NoSynonyms())
    assert similarity("meteor", REFERENCE, REFERENCE) > 0.99
    assert 0.0 < similarity("meteor", "the quick brown fox jumped over a lazy dog", REFERENCE) < 1.0
    assert similarity("meteor", "zebra xylophone", REFERENCE) == 0.0


def test_trl_reward_function_logs_sub_rewards_and_errors() -> None:
    from align_trainer.graders.rewards import GraderReward
    reward = GraderReward(graders.build(SPEC.validate_python(
        {"type": "multi", "name": "score", "graders": {"exact": EXACT, "contains": CONTAINS},
         "calculate_output": "exact + contains"})))
    logged: dict[str, float] = {}
    prompts = [[{"role": "user", "content": "Capital of France?"}]] * 3
    completions = [[{"role": "assistant", "content": "Paris"}], [{"role": "assistant", "content": "paris!"}],
                   [{"role": "assistant", "content": "Rome"}]]
    rewards = reward(prompts, completions, answer=["Paris", "Paris", "Paris"], completion_ids=[[1]] * 3,
                     trainer_state=None, log_metric=lambda k, v: logged.__setitem__(k, v))
    assert reward.__name__ == "score" and rewards[:2] == [2.0, 1.0] and rewards[2] == 0.0
    assert logged["rewards/exact/mean"] == pytest.approx(1 / 3) and logged["graders/errors"] == 0.0
    assert reward.last[0].to_dict()["reward"] == 2.0
    # the conversation is the item's `messages`, as in OpenAI RFT
    g = grader(type="string_check", name="m", input="{{item.messages[0].content}}", reference="France", operation="like")
    from align_trainer.graders.rewards import row_items
    item = row_items([{"prompt": prompts[0], "answer": "Paris"}])[0]
    assert g.grade(item, "x").reward == 1.0


def test_local_judge_model_answers_and_a_missing_one_is_unavailable(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from align_trainer.graders.core import GraderUnavailable
    from align_trainer.graders.judges import LocalJudge

    judge = LocalJudge("builtin://tiny", default_max_tokens=4)
    answers = judge([[{"role": "user", "content": "Score 0-1: hi"}]], None)
    assert len(answers) == 1 and isinstance(answers[0], str)
    assert judge.tokenizer.pad_token is not None and judge.tokenizer.padding_side == "left"
    with pytest.raises(GraderUnavailable, match="cannot load judge model"):
        LocalJudge(f"file://{tmp_path / 'no-model'}")
