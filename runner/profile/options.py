"""Options: ``${name}`` references replaced by the values a profile names, and their arithmetic.

``frameSize: ${lowlevel.frameSize}`` keeps the option's type; text around references is
substituted as text, and arithmetic over numbers (``${frame} / 2``) is evaluated, bounded
(MAX_EXPRESSION_CHARS, MAX_ARITHMETIC_VALUE, MAX_EXPONENT, MAX_SUBSTITUTED_CHARS; see the
docs/profiles.md, "Limits") without running any code.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from pathlib import Path
from typing import Any

from runner.errors import ProfileError
from runner.profile.model import KeyPath, Profile, did_you_mean
from runner.profile.references import is_builtin

OPTION_REF = re.compile(r"^\$\{([A-Za-z0-9_.\-]+)\}$")
OPTION_REF_ANY = re.compile(r"\$\{([A-Za-z0-9_.\-]+)\}")
# Option arithmetic (`${frame} / 2`): its text, the size of any value it computes, and the
# exponents it may raise to; a substituted string may not grow past MAX_SUBSTITUTED_CHARS.
MAX_EXPRESSION_CHARS = 256
MAX_ARITHMETIC_VALUE = 2.0 ** 63
MAX_EXPONENT = 64
MAX_SUBSTITUTED_CHARS = 65_536


def substitute_options(profile: Profile) -> Profile:
    """``profile`` with every ``${option}`` replaced by the option's value (a new Profile: the
    one given keeps its references).

    Each substituted value remembers its options (``option_uses``), so that an error in it
    points at the option a person set.
    """
    resolved = profile.copy()
    substitution = _Substitution(resolved)
    for key in list(resolved.data):
        if key != "options":
            resolved.data[key] = substitution.resolve(resolved.data[key], (key,))
    return resolved


class _Substitution:
    """Replaces the references under one profile's keys, recording what each value used."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.options = profile.data.get("options") or {}

    def resolve(self, value: Any, path: KeyPath) -> Any:
        if isinstance(value, dict):
            return {k: self.resolve(v, path + (k,)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v, path + (str(i),)) for i, v in enumerate(value)]
        if isinstance(value, str):
            return self.text(value, path)
        return value

    def text(self, value: str, path: KeyPath) -> Any:
        """A string: one whole reference keeps the option's type; references inside text are
        arithmetic (if it is that) or substituted as text."""
        profile = self.profile
        whole = OPTION_REF.match(value)
        if whole:
            profile.option_uses[path] = [whole.group(1)]
            return self.lookup(whole.group(1), path)
        names = OPTION_REF_ANY.findall(value)
        if not names:
            return value
        profile.option_uses[path] = names
        values = {name: self.lookup(name, path) for name in names}
        text = OPTION_REF_ANY.sub(lambda m: repr(values[m.group(1)]), value)
        try:
            number = arithmetic(text)
        except ArithmeticError as exc:
            raise profile.error(path, f"{value!r}: {exc}", value=True) from None
        if number is not None:
            return number
        size = len(value) + sum(len(str(values[n])) for n in names)
        if size > MAX_SUBSTITUTED_CHARS:
            raise profile.error(path, f"the substituted text would be {size} characters "
                                f"(more than {MAX_SUBSTITUTED_CHARS})", value=True)
        return OPTION_REF_ANY.sub(lambda m: str(values[m.group(1)]), value)

    def lookup(self, name: str, path: KeyPath) -> Any:
        if name in self.options:
            return self.options[name]
        profile = self.profile
        gone = profile.deleted.get(("options", name))
        if gone is not None:
            source, line = profile.where(path)
            raise ProfileError(
                f"option '{name}' is removed here, but {'.'.join(path)} "
                f"({Path(source).name}:{line}) uses it", source=gone[0],
                line=gone[1] or None, path=f"options.{name}", hint="give it a value instead")
        hint = did_you_mean(name, self.options) or "declare it under 'options'"
        raise profile.error(path, f"unknown option '{name}'", hint)


def check_options_used(profile: Profile) -> None:
    """An option nothing uses is a typo or a leftover: an error, never a silent no-op.

    Only options a person set are checked (a built-in may declare options for nodes a
    profile removed); the hint names the closest option that is used.
    """
    options = profile.data.get("options")
    if not isinstance(options, dict):
        return
    used = set(_references({k: v for k, v in profile.data.items() if k != "options"}))
    if used - set(options):
        return  # a reference to an unknown option is the error (substitute_options says where)
    for name in options:
        if name in used:
            continue
        source, line = profile.origins.get(("options", name), profile.where(("options",)))
        if is_builtin(source):
            continue
        hint = did_you_mean(name, sorted(used)) or (
            "options are used as ${name} in the profile; this one is used nowhere")
        raise ProfileError(f"option '{name}' is not used by the profile", source=source,
                           line=line or None, path=f"options.{name}", hint=hint)


def _references(value: Any) -> list[str]:
    """Every ``${name}`` under ``value``."""
    if isinstance(value, dict):
        return [n for v in value.values() for n in _references(v)]
    if isinstance(value, list):
        return [n for v in value for n in _references(v)]
    if isinstance(value, str):
        return OPTION_REF_ANY.findall(value)
    return []


_OPERATORS = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.USub: operator.neg, ast.UAdd: operator.pos,
    ast.Pow: operator.pow,
}


def arithmetic(text: str) -> float | None:
    """Evaluate ``44100.0 * 0.5``-style arithmetic over numbers only; None if it is not that.

    Lets a profile write ``range: ${analysisSampleRate} * 0.5`` without running any code.
    Bounded: at most MAX_EXPRESSION_CHARS of text, every intermediate value within
    +-MAX_ARITHMETIC_VALUE and finite, exponents at most MAX_EXPONENT (so ``${frame} **
    99999999`` is refused at once instead of computing a number of 300 million digits).
    Raises ArithmeticError (ZeroDivisionError, OverflowError) with a sentence for a person.
    """
    if len(text) > MAX_EXPRESSION_CHARS:
        if _looks_arithmetic(text[:MAX_EXPRESSION_CHARS]):
            raise ArithmeticError(f"an expression longer than {MAX_EXPRESSION_CHARS} "
                                  "characters")
        return None
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None

    def evaluate(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return evaluate(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) \
                and not isinstance(node.value, bool):
            return bounded(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            left, right = evaluate(node.left), evaluate(node.right)
            if isinstance(node.op, ast.Div) and right == 0:
                raise ZeroDivisionError("division by zero")
            if isinstance(node.op, ast.Pow):
                if abs(right) > MAX_EXPONENT:
                    raise OverflowError(f"an exponent over {MAX_EXPONENT}")
                if left == 0 and right < 0:
                    raise ZeroDivisionError("zero to a negative power")
                if left < 0 and not float(right).is_integer():
                    raise ArithmeticError("a fractional power of a negative number")
            return bounded(_OPERATORS[type(node.op)](left, right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
            return bounded(_OPERATORS[type(node.op)](evaluate(node.operand)))
        raise ValueError("not arithmetic")

    def bounded(value: float) -> float:
        if isinstance(value, complex) or not math.isfinite(value) or \
                abs(value) > MAX_ARITHMETIC_VALUE:
            raise OverflowError(f"a value beyond +-{MAX_ARITHMETIC_VALUE:.3g}")
        return value

    try:
        return evaluate(tree)
    except ValueError:
        return None
    except OverflowError as exc:
        if str(exc).startswith(("a ", "an ")):
            raise
        raise OverflowError(f"a value beyond +-{MAX_ARITHMETIC_VALUE:.3g}") from None


def _looks_arithmetic(text: str) -> bool:
    return bool(re.fullmatch(r"[\s0-9.eE+\-*/()]*", text))

