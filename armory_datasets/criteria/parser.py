"""Parse the criteria text syntax; ``parse(str(c)) == c`` for every nameable criterion.

Written by hand (about 200 lines): the language binds comparisons tighter than
``&``/``|`` (``target in [6, 23] & confidence < 0.5``), unlike Python, so ``ast`` does
not fit, and a parser library would be a dependency for a grammar this small. The
parser never evaluates code: it builds nodes from tokens, and every error is a
``CriteriaSyntaxError`` that points at its position.

Grammar (lowest precedence first)::

    criterion  := or
    or         := and (("|" | "or") and)*
    and        := not (("&" | "and") not)*
    not        := ("~" | "not") not | test
    test       := sum [("<" | "<=" | "==" | "!=" | ">" | ">=") sum
                       | ["not"] "in" list]
    sum        := product (("+" | "-") product)*
    product    := unary (("*" | "%") unary)*
    unary      := "-" unary | atom
    atom       := NUMBER | STRING | "true" | "false" | NAME | `quoted name`
                | NAME "(" arguments ")" | "(" criterion ")"
    list       := "[" [literal ("," literal)*] "]"

A bare field used as a criterion means ``field == true``. ``any(column, criterion)``,
``all(column, criterion)`` and ``count(column[, criterion])`` (a number) test the boxes
of a list column; inside them names are the box's fields.

Example:
    >>> str(parse("every_n_batches(5) | (target in [6, 23] & confidence < 0.5)"))
    'every_n_batches(5) | target in [6, 23] & confidence < 0.5'
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from armory_datasets.criteria.nodes import (
    COMPARE_OPS,
    Always,
    Arith,
    Chains,
    Compare,
    Const,
    CountCriterion,
    CountObjects,
    Criterion,
    Field,
    IsClose,
    IsIn,
    Literal,
    Not,
    ObjectsTest,
    Samples,
    Value,
    all_of,
    any_of,
    format_name,
    sequence_of,
    to_scalar,
)

MAX_DEPTH = 40  # brackets, ~ and - nested deeper than this are refused
FUNCTIONS = (
    "always", "every_n_batches", "first_n_batches", "every_n_samples", "first_n_samples",
    "every_n_samples_of_batch", "first_n_samples_of_batch", "samples", "chains",
    "isclose", "all_satisfied", "any_satisfied", "not_satisfied", "any", "all", "count",
)


class CriteriaSyntaxError(ValueError):
    """Bad criteria text; ``position`` is the offset of the error in ``text``."""

    def __init__(self, message: str, text: str, position: int) -> None:
        self.message, self.text, self.position = message, text, position
        line = text.replace("\n", " ")
        super().__init__(f"{message} at position {position}\n  {line}\n  {' ' * position}^")


_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<quoted>`(?:[^`]|``)*`)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op><=|>=|==|!=|[<>&|~()\[\],=+\-*%])
    """,
    re.VERBOSE,
)


_WORD = re.compile(r"\w+")


def _quoting_hint(text: str, position: int) -> str:
    """For a letter outside A-Z and a-z inside a name: how to write that name.

    Example:
        >>> _quoting_hint("größe == 'a'", 2)
        '; write a name with characters other than A-Z, a-z, 0-9 and _ in backticks: `größe`'
    """
    if not _WORD.match(text, position):
        return ""
    start = position
    while start and _WORD.match(text[start - 1]):
        start -= 1
    name = _WORD.match(text, start).group()
    return "; write a name with characters other than A-Z, a-z, 0-9 and _ in backticks: " + format_name(name)


@dataclass(frozen=True)
class Token:
    kind: str  # number, string, quoted, name, op, end
    text: str
    position: int


def tokenize(text: str) -> list[Token]:
    tokens, position = [], 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            hint = _quoting_hint(text, position)
            raise CriteriaSyntaxError(f"unexpected character {text[position]!r}{hint}", text, position)
        kind = match.lastgroup or ""
        if kind != "space":
            tokens.append(Token(kind, match.group(), position))
        position = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


def _string_value(token: Token, text: str) -> str:
    body = token.text[1:-1]
    if token.text[0] == "'":
        body = body.replace("\\'", "'").replace('"', '\\"')
    try:
        return json.loads('"' + body + '"')
    except ValueError:
        raise CriteriaSyntaxError("bad escape in string", text, token.position) from None


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.index = 0
        self.depth = 0

    # -- helpers
    @property
    def token(self) -> Token:
        return self.tokens[self.index]

    def error(self, message: str, token: Token | None = None) -> CriteriaSyntaxError:
        return CriteriaSyntaxError(message, self.text, (token or self.token).position)

    def peek(self, *texts: str) -> bool:
        return self.token.kind in ("op", "name") and self.token.text in texts

    def accept(self, *texts: str) -> Token | None:
        token = self.token
        if self.peek(*texts):
            self.index += 1
            return token
        return None

    def expect(self, text: str) -> Token:
        token = self.accept(text)
        if token is None:
            found = self.token.text or "end of text"
            raise self.error(f"expected {text!r}, found {found!r}")
        return token

    def nested(self, parse: Callable[[], Any]) -> Any:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"nested more than {MAX_DEPTH} levels deep")
        try:
            return parse()
        finally:
            self.depth -= 1

    def as_criterion(self, node: Criterion | Value, token: Token) -> Criterion:
        if isinstance(node, Criterion):
            return node
        if isinstance(node, Field):
            return Compare("==", node, Literal(True))
        if isinstance(node, Literal) and isinstance(node.value, bool):
            return Const(node.value)
        raise self.error("expected a criterion (a comparison, a call or a field)", token)

    def as_value(self, node: Criterion | Value, token: Token) -> Value:
        if isinstance(node, Value):
            return node
        raise self.error("expected a value, found a criterion", token)

    # -- grammar
    def parse(self) -> Criterion:
        start = self.token
        criterion = self.as_criterion(self.parse_or(), start)
        if self.token.kind != "end":
            raise self.error(f"unexpected {self.token.text!r}")
        return criterion

    def parse_or(self) -> Criterion | Value:
        start = self.token
        node = self.parse_and()
        if not self.peek("|", "or"):
            return node
        items = [self.as_criterion(node, start)]
        while self.accept("|", "or"):
            start = self.token
            items.append(self.as_criterion(self.parse_and(), start))
        return any_of(*items)

    def parse_and(self) -> Criterion | Value:
        start = self.token
        node = self.parse_not()
        if not self.peek("&", "and"):
            return node
        items = [self.as_criterion(node, start)]
        while self.accept("&", "and"):
            start = self.token
            items.append(self.as_criterion(self.parse_not(), start))
        return all_of(*items)

    def parse_not(self) -> Criterion | Value:
        if self.accept("~", "not"):
            start = self.token
            return Not(self.as_criterion(self.nested(self.parse_not), start))
        return self.parse_test()

    def parse_test(self) -> Criterion | Value:
        start = self.token
        left = self.parse_sum()
        op = self.token
        if op.kind == "op" and op.text in COMPARE_OPS:
            self.index += 1
            right_start = self.token
            right = self.as_value(self.parse_sum(), right_start)
            return Compare(op.text, self.as_value(left, start), right)
        negate = self.accept("not") is not None
        if negate or self.peek("in"):
            self.expect("in")
            test = IsIn(self.as_value(left, start), self.parse_list())
            return Not(test) if negate else test
        return left

    def parse_sum(self) -> Criterion | Value:
        return self.parse_arith(("+", "-"), self.parse_product)

    def parse_product(self) -> Criterion | Value:
        return self.parse_arith(("*", "%"), self.parse_unary)

    def parse_arith(self, ops: tuple[str, ...], operand: Callable[[], Any]) -> Any:
        start = self.token
        node = operand()
        while self.peek(*ops):
            op = self.token
            self.index += 1
            right_start = self.token
            right = self.as_value(operand(), right_start)
            try:
                node = Arith(op.text, self.as_value(node, start), right)
            except ValueError as error:
                raise self.error(str(error), op) from None
        return node

    def parse_unary(self) -> Criterion | Value:
        minus = self.accept("-")
        if minus is None:
            return self.parse_atom()
        start = self.token
        operand = self.as_value(self.nested(self.parse_unary), start)
        if isinstance(operand, Literal) and not isinstance(operand.value, (bool, str)):
            return self.literal(-operand.value, minus)
        return Arith("*", operand, Literal(-1))

    def literal(self, value: Any, token: Token) -> Literal:
        try:
            return Literal(to_scalar(value, "literal"))
        except (TypeError, ValueError) as error:
            raise self.error(str(error), token) from None

    def parse_atom(self) -> Criterion | Value:
        token = self.token
        if token.kind == "number":
            self.index += 1
            is_float = any(c in token.text for c in ".eE")
            try:
                number = float(token.text) if is_float else int(token.text)
            except ValueError as error:  # e.g. more digits than int() takes
                raise self.error(str(error), token) from None
            return self.literal(number, token)
        if token.kind == "string":
            self.index += 1
            return Literal(_string_value(token, self.text))
        if token.kind == "quoted":
            self.index += 1
            return Field(token.text[1:-1].replace("``", "`"))
        if self.accept("("):
            node = self.nested(self.parse_or)
            self.expect(")")
            return node
        if token.kind == "name" and token.text in ("true", "false"):
            self.index += 1
            return Literal(token.text == "true")
        if token.kind == "name" and token.text not in ("in", "not", "and", "or"):
            self.index += 1
            if self.accept("("):
                return self.nested(lambda: self.parse_call(token))
            return Field(token.text)
        found = token.text or "end of text"
        raise self.error(f"expected a value, a call or '(', found {found!r}")

    # -- calls
    def parse_call(self, name: Token) -> Criterion:
        args: list[tuple[Token, Any]] = []
        kwargs: dict[str, tuple[Token, Any]] = {}
        while not self.accept(")"):
            if args or kwargs:
                self.expect(",")
            start = self.token
            if start.kind == "name" and self.tokens[self.index + 1].text == "=":
                self.index += 2
                kwargs[start.text] = (self.token, self.parse_argument())
            elif kwargs:
                raise self.error("positional argument after a keyword argument")
            else:
                args.append((start, self.parse_argument()))
        try:
            return self.build_call(name, args, kwargs)
        except (TypeError, ValueError) as error:
            if isinstance(error, CriteriaSyntaxError):
                raise
            prefix = f"{name.text}(): "
            message = str(error) if str(error).startswith(prefix) else prefix + str(error)
            raise self.error(message, name) from None

    def parse_argument(self) -> Any:
        if self.peek("["):
            return self.parse_list()
        return self.parse_or()

    def parse_list(self) -> tuple:
        self.expect("[")
        items = []
        while not self.accept("]"):
            if items:
                self.expect(",")
            token = self.token
            node = self.parse_unary()
            if not isinstance(node, Literal):
                raise self.error("expected a literal in a list", token)
            items.append(node.value)
        return tuple(items)

    def build_call(self, name: Token, args: list, kwargs: dict) -> Criterion:
        fn = name.text
        if fn not in FUNCTIONS:
            raise TypeError(f"unknown function; expected one of {', '.join(FUNCTIONS)}")
        values = [value for _, value in args]
        if fn in ("all_satisfied", "any_satisfied", "not_satisfied"):
            if kwargs:
                raise TypeError("takes no keyword arguments")
            items = [self.as_criterion(value, token) for token, value in args]
            if fn == "not_satisfied":
                if len(items) != 1:
                    raise TypeError(f"takes 1 criterion, got {len(items)}")
                return Not(items[0])
            return (all_of if fn == "all_satisfied" else any_of)(*items)
        if fn in ("any", "all", "count"):
            if kwargs:
                raise TypeError("takes no keyword arguments")
            if not (1 if fn == "count" else 2) <= len(args) <= 2:
                raise TypeError(f"expected {fn}(column, criterion)" if fn != "count"
                                else "expected count(column) or count(column, criterion)")
            column = values[0]
            if not isinstance(column, Field) or column.name is None:
                raise TypeError(f"{column}: expected the name of a list column")
            if fn == "count":
                predicate = self.as_criterion(values[1], args[1][0]) if len(args) == 2 else Const(True)
                return CountObjects(column.name, predicate)  # type: ignore[return-value]
            return ObjectsTest(fn, column.name, self.as_criterion(values[1], args[1][0]))
        if fn == "isclose":
            if not 2 <= len(args) <= 4 or set(kwargs) - {"rtol", "atol"}:
                raise TypeError("expected isclose(field, value, rtol=..., atol=...)")
            value = self.as_value(values[0], args[0][0])
            options = dict(zip(("rtol", "atol"), values[2:]))
            options.update({k: v for k, (_, v) in kwargs.items()})
            numbers = {k: self.number(v) for k, v in options.items()}
            return IsClose(value, self.number(values[1]), **numbers)
        if kwargs:
            raise TypeError("takes no keyword arguments")
        if fn == "always" and not values:
            return Always()
        if len(values) != 1:
            raise TypeError(f"takes 1 argument, got {len(values)}")
        if fn == "samples":
            return Samples(sequence_of(int, values[0], "indices"))
        if fn == "chains":
            return Chains(sequence_of(str, values[0], "names"))
        count = values[0].value if isinstance(values[0], Literal) else values[0]
        return CountCriterion(fn, count)

    def number(self, node: Any) -> float:
        if isinstance(node, Literal) and not isinstance(node.value, (bool, str)):
            return float(node.value)
        raise TypeError(f"{node}: expected a number")


def parse(text: str) -> Criterion:
    """Parse criteria text into a criterion (see the module docstring for the grammar).

    Example:
        >>> from armory_datasets.criteria import col
        >>> parse("confidence < 0.5") == (col("confidence") < 0.5)
        True
    """
    if not isinstance(text, str):
        raise TypeError(f"text: {text!r}; expected a string")
    parser = _Parser(text)
    try:
        return parser.parse()
    except RecursionError:  # a caller deep in its own stack: still the parser's error
        raise parser.error("nested too deeply for the remaining stack") from None
