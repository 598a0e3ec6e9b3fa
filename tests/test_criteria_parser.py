"""The text syntax: round trips, positioned errors, and fuzzing that never runs code."""

from __future__ import annotations

import builtins

import pytest
from criteria_cases import criteria_strategy
from hypothesis import given, settings
from hypothesis import strategies as st

from armory_datasets import criteria as C
from armory_datasets.criteria.parser import CriteriaSyntaxError, parse


@settings(max_examples=500, deadline=None)
@given(criteria_strategy())
def test_printing_then_parsing_gives_the_same_criterion(criterion):
    assert parse(str(criterion)) == criterion


@pytest.mark.parametrize(
    "text,position",
    [("confidence <", 12), ("every_n_batches(5) |", 20), ("target in [6, x]", 14),
     ("foo(3)", 0), ("a & & b", 4), ("(a < 1", 6), ("x $ 1", 2), ("'open", 0),
     ("every_n_batches(-1)", 0), ("x % 0 == 1", 2)],
)
def test_errors_point_at_their_position(text, position):
    with pytest.raises(CriteriaSyntaxError) as caught:
        parse(text)
    assert caught.value.position == position
    assert "^" in str(caught.value)


@pytest.mark.parametrize("text,position,quoted", [
    ("größe == 'a'", 2, "`größe`"), ("a == 1 & café > 2", 12, "`café`"), ("x > é", 4, "`é`")])
def test_a_name_beyond_ascii_is_shown_in_backticks(text, position, quoted):
    with pytest.raises(CriteriaSyntaxError, match=f"in backticks: {quoted}") as caught:
        parse(text)
    assert caught.value.position == position
    assert parse(text.replace(quoted.strip("`"), quoted, 1)) is not None  # the advice parses


def test_the_documented_examples_parse():
    criterion = parse("every_n_batches(5) | (target in [6, 23] & confidence < 0.5)")
    assert criterion == C.every_n_batches(5) | (
        C.col("target").isin([6, 23]) & (C.col("confidence") < 0.5))
    assert parse("not correct and chain == 'fgsm'") == parse("~(correct == true) & chain == \"fgsm\"")
    assert parse("isclose(confidence, 0.5, atol=0.01)") == C.when_metric_isclose(
        "confidence", 0.5, atol=0.01)
    assert parse("`odd name` not in [1, 2]") == ~C.col("odd name").isin([1, 2])
    assert parse("all_satisfied(first_n_batches(2), ~samples([1]))") == (
        C.first_n_batches(2) & ~C.samples([1]))


TOKENS = ["(", ")", "[", "]", ",", "&", "|", "~", "<", "<=", "==", "!=", ">", ">=", "+", "-",
          "*", "%", "=", "in", "not", "and", "or", "true", "false", "x", "target", "0", "1.5",
          "-3", "1e400", "'s'", '"t\\n"', "`q`", "samples", "every_n_batches", "isclose",
          "__import__", "eval", "os", ".", "lambda", ":", " "]


def parse_refusing_code(text: str):
    """Parse with eval, exec and compile replaced by functions that record a call."""
    calls = []
    saved = {name: getattr(builtins, name) for name in ("eval", "exec", "compile")}
    for name in saved:
        setattr(builtins, name, lambda *args, name=name, **kwargs: calls.append(name))
    try:
        parse(text)
    except CriteriaSyntaxError:
        pass
    else:
        calls.append("accepted")
    finally:
        for name, function in saved.items():
            setattr(builtins, name, function)
    return calls


def check_parse(text: str) -> None:
    try:
        result = parse(text)
    except CriteriaSyntaxError as error:
        assert 0 <= error.position <= len(text)
        return
    assert isinstance(result, C.Criterion)
    assert parse(str(result)) == result


@settings(max_examples=1500, deadline=None)
@given(st.text(max_size=60))
def test_arbitrary_text_raises_only_the_parsers_error(text):
    check_parse(text)


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=25).map(" ".join))
def test_token_soup_raises_only_the_parsers_error(text):
    check_parse(text)


def test_parsing_never_runs_code(tmp_path):
    marker = tmp_path / "ran"
    for text in [f"__import__('os').system('touch {marker}')", "eval('1')",
                 "(lambda: 1)()", "every_n_batches(__import__('os'))"]:
        assert parse_refusing_code(text) == []
    assert not marker.exists()


def test_deep_nesting_is_a_syntax_error_not_a_crash():
    with pytest.raises(CriteriaSyntaxError, match="nested more than"):
        parse("(" * 5000 + "x" + ")" * 5000)
    with pytest.raises(CriteriaSyntaxError, match="nested more than"):
        parse("~" * 5000 + "x")
