"""Shared answer grader for training rewards and evaluation.

``grade(response, reference)`` extracts the final answer from a model response, normalises it and the reference
(math-verify's own LaTeX clean-up, then units, degrees, percent, ``x =`` prefixes and separators), and decides
equivalence: first through cheap string / exact-number checks, then through math-verify (sympy).  It never raises on
odd inputs and never hangs.

Answer extraction (``answer_format``):

* ``"boxed"`` (default): the content of the LAST ``\\boxed{...}`` / ``\\fbox{...}`` (brace-matched, nested braces
  fine; ``\\boxed 5`` space form too).  An unbalanced last box means no answer.
* ``"answer_tag"``: the content of the last ``<answer>...</answer>``; if it contains a box, the box content.
* ``"any"``: lenient, meant for weak models that ignore the format: boxed, else the answer tag, else the last
  number in the text.

Think blocks: a response that opens ``<think>`` and never closes it has no answer (even if it boxed something while
thinking); otherwise only the text after the last ``</think>`` is searched.

Equivalence (``is_equivalent``): normalised strings equal; multiple-choice golds (a single letter A-E) compare
letters case-insensitively; plain numbers (integers, decimals, ``a/b``, ``\\frac{a}{b}``, thousands separators
removed) are compared EXACTLY with fractions (so ``0.5 == 1/2`` but ``0.333333 != 1/3``, unlike math-verify's
6-digit float rounding); everything else goes to math-verify's ``parse``/``verify`` with both sides wrapped in
``\\boxed{}``.  Before sympy sees anything, cheap guards reject (as not equal, not timed out) answers with absurd
numeric powers or factorials (``9^{9^{9^9}}``, ``10^{10^{10}}``, ``(10^7)!``: more than ``_MAX_DIGITS`` digits,
estimated with floats, never computed) and answers longer than ``_MAX_ANSWER_CHARS``: they are certainly not the
intended answer, and this saves a whole timeout (and protects the thread fallback, which cannot kill anything).

Why a helper subprocess (the timeout design):

* math-verify's own timeouts use ``signal.alarm``: they only work on the main thread of the main interpreter (it
  raises ValueError elsewhere), and a signal handler cannot interrupt one long C call (a huge big-int multiplication,
  a regex) that holds the GIL.  So we disable them (``parsing_timeout=None``, ``timeout_seconds=None``) and never
  install signal handlers in the client process either (training frameworks own ``SIGALRM``; signals would not
  cover threads).
* Instead all sympy work runs in one small long-lived helper process per client process, started lazily with
  ``subprocess.Popen([sys.executable, "-c", ...])`` that runs this very file (not the ``rewards`` package, so no
  heavy package imports), talking JSON lines over pipes.  The client waits with ``poll`` for ``timeout`` (+ a short
  grace) and on expiry SIGKILLs the helper and immediately starts a new one.  Inside the helper a
  ``signal.setitimer`` alarm aborts pure-Python slowness at ``timeout`` so the helper usually survives (no restart
  cost), and ``RLIMIT_CPU`` / ``RLIMIT_AS`` bound a runaway helper even if its client died mid-request.
* ``Popen`` is not ``multiprocessing``: it works off the main thread, in spawn/fork/forkserver children and in
  DAEMONIC workers (DataLoader workers, ``Pool`` workers), which ``multiprocessing`` refuses to let have children.
  A helper exits on EOF when its client dies; after ``os.fork`` the child starts its own helper.
* Only if the helper cannot be started (no usable ``sys.executable``, no ``poll``) do we fall back to running
  math-verify in a daemon thread with ``join(timeout)``.  Trade-off: a timed-out thread cannot be killed; it is
  abandoned and keeps burning CPU (and, inside a long C call, the GIL) until it finishes; the guards above remove
  the known monsters.
* Calls from several threads are serialised on one lock (each holder is bounded by its own timeout).  Starting the
  helper (~0.5-1 s, bounded by ``_STARTUP_TIMEOUT``) is not counted in a check's timeout.  Numeric answers (all of
  GSM8K) never reach it: 1,000 typical GSM8K gradings take ~45 ms.

A timeout (or a helper that died on the input) counts as wrong: ``Grade(correct=False, timed_out=True)``; with
several references each gets its own ``timeout``.  Results are LRU-cached on
``(response, reference, timeout, answer_format)`` (several reward functions grade the same completion), including
timed-out results, so a pathological completion costs its timeout once.
"""

from __future__ import annotations

import ast
import atexit
import functools
import json
import logging
import math
import os
import re
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

__all__ = [
    "Grade",
    "grade",
    "extract_answer",
    "last_boxed",
    "extract_after_think",
    "extract_tag",
    "reference_answer",
    "normalize_answer",
    "is_equivalent",
    "is_valid_math",
]

logger = logging.getLogger(__name__)

ANSWER_FORMATS = ("boxed", "answer_tag", "any")
_MAX_DIGITS = 100_000  # numeric powers with more digits than this are rejected unevaluated
_MAX_FACTORIAL = 5_000
_MAX_SYMBOLIC_EXPONENT = 10_000
_KILL_GRACE = 0.4  # seconds the client waits past the helper's own alarm before killing it
_STARTUP_TIMEOUT = 60.0  # the helper's start (import sympy) is bounded separately from per-check timeouts
_RETRY_HELPER_AFTER = 60.0  # after a failed helper start, use the thread fallback this long
_MIN_TIMEOUT = 0.05
_MAX_ANSWER_CHARS = 2_000  # longer answers are never sent to sympy (equal strings still match)


@dataclass(frozen=True)
class Grade:
    """Outcome of grading one response against its reference(s)."""

    correct: bool
    answer: str | None  # the extracted answer string from the response (None = no answer found)
    reference: str | None  # the normalised reference answer actually compared against
    timed_out: bool = False  # equivalence check hit the time limit (counts as not correct)


# ----------------------------------------------------------------------------------------------------------------
# Extraction
# ----------------------------------------------------------------------------------------------------------------

_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_NUMBER_RE = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?(?:/\d+)?")


def _match_group(text: str, start: int) -> int | None:
    """Index of the bracket closing the one at ``text[start]`` (``{`` or ``(``); escaped ``\\{`` are skipped."""
    opening = text[start]
    closing = "}" if opening == "{" else ")"
    depth = 0
    k, n = start, len(text)
    while k < n:
        c = text[k]
        if c == "\\":
            k += 2
            continue
        if c == opening:
            depth += 1
        elif c == closing:
            depth -= 1
            if depth == 0:
                return k
        k += 1
    return None


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` / ``\\fbox{...}`` (brace-matched); ``\\boxed 5`` too; else None."""
    if not isinstance(text, str):
        return None
    last = None
    for last in _BOX_RE.finditer(text):  # noqa: B007
        pass
    if last is None:
        return None
    i = j = last.end()
    while j < len(text) and text[j] in " \t\n":
        j += 1
    if j < len(text) and text[j] == "{":
        end = _match_group(text, j)
        return None if end is None else text[j + 1 : end]
    if j == len(text) or (j == i and text[j] in "^_$}\\"):
        return None
    content = re.split(r"[$\n]", text[j:], maxsplit=1)[0].strip()
    return content or None


def extract_after_think(text: str) -> str | None:
    """Text after the last ``</think>``; None if there is none."""
    if not isinstance(text, str):
        return None
    idx = text.rfind("</think>")
    return None if idx < 0 else text[idx + len("</think>") :]


def extract_tag(text: str, tag: str = "answer") -> str | None:
    """Content of the last ``<tag>...</tag>``; None if absent."""
    if not isinstance(text, str):
        return None
    close = text.rfind(f"</{tag}>")
    if close < 0:
        return None
    opening = text.rfind(f"<{tag}>", 0, close)
    if opening < 0:
        return None
    return text[opening + len(tag) + 2 : close]


def _answer_region(response: str) -> str | None:
    """The part of a response that may hold the answer (after thinking); None inside an unclosed think block."""
    after = extract_after_think(response)
    if after is None:
        if "<think>" in response:
            return None
        after = response
    reopened = after.find("<think>")  # a think block reopened after the last close is thinking too
    return after if reopened < 0 else after[:reopened]


def extract_answer(response: str, answer_format: str = "boxed") -> str | None:
    """Extract the answer string from a response (see the module docstring for the formats)."""
    if answer_format not in ANSWER_FORMATS:
        raise ValueError(f"answer_format must be one of {ANSWER_FORMATS}, got {answer_format!r}")
    if not isinstance(response, str):
        return None
    region = _answer_region(response)
    if region is None:
        return None
    answer: str | None = None
    if answer_format in ("boxed", "any"):
        answer = last_boxed(region)
    if answer is None and answer_format in ("answer_tag", "any"):
        answer = extract_tag(region)
        if answer is not None and _BOX_RE.search(answer):
            answer = last_boxed(answer)
    if answer is None and answer_format == "any":
        numbers = _NUMBER_RE.findall(region.replace("\u2212", "-"))
        answer = numbers[-1] if numbers else None
    if answer is None:
        return None
    return answer.strip() or None


# ----------------------------------------------------------------------------------------------------------------
# Normalisation
# ----------------------------------------------------------------------------------------------------------------

_UNICODE = {
    "\u2212": "-",
    "\u2013": "-",
    "\u00a0": " ",
    "\u2009": " ",
    "\u202f": " ",
    "\u03c0": "\\pi ",
    "\u00d7": "\\times ",
    "\u00b7": "\\cdot ",
    "\u221e": "\\infty ",
    "\u221a": "\\sqrt",
    "\u00b0": "",
    "\u00b2": "^2",
    "\u00b3": "^3",
}
# After math-verify's clean-up, which turns \mathrm, \mathit, \mathbf, \textbf, \textit, \textrm and \textnormal
# into \text.
_TEXT_CMD_RE = re.compile(r"\\(?:text|textup|textsf|texttt|mathsf|mbox)\s*\{")
# Letters that are maths, never units.
_MATH_WORDS = frozenset(
    "pi e i x y z n k sqrt infty inf infinity oo sin cos tan cot sec csc log ln exp mod gcd lcm max min".split()
)
# Units recognised even when glued to the number ("5cm").
_UNIT_VOCAB = frozenset(
    """cm mm km kg mg ml ft yd mi hr hrs min mins sec secs lb lbs oz in cm2 m2 km2 mph kph kmh units unit dollars
    dollar cents cent degrees degree percent meters metres meter metre inches inch feet foot yards miles hours hour
    minutes minute seconds second days day weeks week years year grams gram liters litres liter litre""".split()
)
_TRAILING_UNIT_RE = re.compile(r"(.*?[\d})])(\s*)([A-Za-z][A-Za-z .]*?)\s*(?:\^\{?[23]\}?)?\.?")
# A top-level `name = ` prefix: a letter or a command, an optional subscript (one character or a closed `{...}`
# group) and an optional `(x)`. The subscript must close before the `=`, so `\sum_{n=1}^{100} n` is no assignment.
_ASSIGN_RE = re.compile(
    r"(?:[A-Za-z]|\\[A-Za-z]+)(?:_(?:[A-Za-z0-9]|\{[A-Za-z0-9]+\}))?(?:\([A-Za-z]\))?\s*=\s*(.+)", re.S
)
# Commands that start an expression (a sum, a limit), never the name an answer is assigned to.
_OPERATOR_RE = re.compile(r"\\(?:sum|prod|int|oint|lim|max|min|bigcup|bigcap)(?![A-Za-z])")
_THOUSANDS_RE = re.compile(r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_PLAIN_NUMBER_RE = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?")


def _strip_text_commands(s: str) -> str:
    """Unwrap ``\\text{...}``-like groups; drop those that are units after a number (``5\\text{ cm}``)."""
    pos = 0
    for _ in range(100):
        m = _TEXT_CMD_RE.search(s, pos)
        if m is None:
            break
        brace = m.end() - 1
        end = _match_group(s, brace)
        if end is None:
            break
        content = s[brace + 1 : end]
        stripped = content.strip()
        before = s[: m.start()].rstrip()
        after = s[end + 1 :]
        unit_like = (
            re.fullmatch(r"[A-Za-z][A-Za-z\s.]*", stripped) is not None
            and stripped.lower() not in _MATH_WORDS
            and (len(stripped) >= 2 or content[:1].isspace())
        )
        after_unit = re.sub(r"^\s*\^\s*\{?\s*[23]\s*\}?", "", after)
        if not stripped:
            s = s[: m.start()] + after
        elif unit_like and before and (before[-1].isdigit() or before[-1] in "})") and not after_unit.strip(" ."):
            s = s[: m.start()] + after_unit
        else:
            s = s[: m.start()] + content + after
        pos = m.start()
    return s


def _strip_trailing_unit(s: str) -> str:
    if len(s) > 200:
        return s
    m = _TRAILING_UNIT_RE.fullmatch(s)
    if m is None or not re.search(r"\d", m.group(1)):
        return s
    unit = m.group(3).strip(" .")
    words = unit.split()
    if not words or any(w.lower() in _MATH_WORDS for w in words):
        return s
    spaced = bool(m.group(2))
    if unit.lower() in _UNIT_VOCAB or (spaced and all(len(w) >= 2 for w in words)):
        return m.group(1)
    return s


@functools.cache
def _mv_cleanup() -> Callable[[str], str]:
    """math-verify's own LaTeX clean-up (`normalize_latex`, which its parser runs on every LaTeX answer), limited to
    exact rewrites: `basic_latex` (``$``, ``\\!``, ``\\left(``, ``\\dfrac``, ``\\mathrm`` -> ``\\text``, ``{,}``, "a or b" ->
    ``a,b``...) and `malformed_operators` (``\\frac12``, ``\\sqrt2``, ``a/b``). Its `units` (single letters such as
    ``m``, ``t``) and `nits` (``0.5`` -> ``\\frac{1}{2}``) stay in its parser. Imported on first use: it imports sympy."""
    from latex2sympy2_extended.math_normalization import NormalizationConfig, normalize_latex

    config = NormalizationConfig(
        basic_latex=True, units=False, malformed_operators=True, nits=False, boxed="none", equations=False
    )
    return functools.partial(normalize_latex, config=config)


def normalize_answer(text: str) -> str:
    """MATH-style normalisation of an answer string: math-verify's LaTeX clean-up (`_mv_cleanup`), then what the
    exact checks need beyond it (units, degrees, percent, ``name =`` prefixes, thousands separators, spacing)."""
    if not isinstance(text, str):
        return ""
    s = text
    for k, v in _UNICODE.items():
        if k in s:
            s = s.replace(k, v)
    if _BOX_RE.search(s):
        boxed = last_boxed(s)
        if boxed is not None:
            s = boxed
    if not _PLAIN_NUMBER_RE.fullmatch(s):  # a plain number is left as it is; skip math-verify's ~20 regexes
        s = _mv_cleanup()(s)
    s = re.sub(r"\\[()\[\]]", " ", s)  # \( \) \[ \] delimiters, \left. \right. and thin spaces: not in math-verify's
    s = re.sub(r"\\(?:left|right)\.?(?![A-Za-z])", "", s)
    s = re.sub(r"\\[,;:]", "", s).replace("~", " ")
    s = re.sub(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ(?![A-Za-z])|\\circ(?![A-Za-z])|\\degree(?![A-Za-z])", "", s)
    s = s.replace("\\%", "").replace("%", "")
    s = _strip_text_commands(s).strip()
    m = _ASSIGN_RE.fullmatch(s)
    if m is not None and "=" not in m.group(1) and not _OPERATOR_RE.match(s):
        s = m.group(1).strip()
    s = _strip_trailing_unit(s)
    s = s.strip()
    s = re.sub(r"(?<!\.)\.$", "", s).strip()
    if _THOUSANDS_RE.fullmatch(s):
        s = s.replace(",", "")
    # Remove whitespace, except where it separates a command from a following letter (``\pi r``).
    s = re.sub(r"(\\[A-Za-z]+)\s+(?=[A-Za-z])", "\\1\x00", s)
    s = re.sub(r"\s+", "", s).replace("\x00", " ")
    return s


def reference_answer(reference: str) -> str:
    """Normalised gold answer: GSM8K ``... #### 1,234`` -> ``1234``; a boxed reference is unwrapped."""
    if not isinstance(reference, str):
        return ""
    ref = reference
    if "####" in ref:
        ref = ref.rsplit("####", 1)[1]
    boxed = last_boxed(ref)
    if boxed is not None:
        ref = boxed
    return normalize_answer(ref)


# ----------------------------------------------------------------------------------------------------------------
# Cheap checks
# ----------------------------------------------------------------------------------------------------------------

_DECIMAL_RE = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)")
_INT_FRAC_RE = re.compile(r"([-+]?\d+)/([-+]?\d+)")
_LATEX_FRAC_RE = re.compile(r"([-+]?)\\frac\{([-+]?\d+)\}\{([-+]?\d+)\}")
_MC_GOLD_RE = re.compile(r"\(?([A-E])\)?")
_MC_PRED_RE = re.compile(r"\(?([A-Ea-e])\)?|\(([A-Ea-e])\).*", re.S)
_NUMERIC_EXPR_RE = re.compile(r"[\d.+\-*/()]+")
_SIGNED_NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?")
_POWER_OP_RE = re.compile(r"\s*(?:\^|\*\*)")


def _to_fraction(s: str) -> Fraction | None:
    """Exact value of a plain number (``12``, ``-0.50``, ``3/4``, ``\\frac{3}{4}``); None otherwise."""
    if not s or len(s) > 60:
        return None
    try:
        if _DECIMAL_RE.fullmatch(s):
            return Fraction(s)
        m = _INT_FRAC_RE.fullmatch(s)
        if m:
            return Fraction(int(m.group(1)), int(m.group(2)))
        m = _LATEX_FRAC_RE.fullmatch(s)
        if m:
            value = Fraction(int(m.group(2)), int(m.group(3)))
            return -value if m.group(1) == "-" else value
    except (ValueError, ZeroDivisionError):
        return None
    return None


def _mc_letter(s: str, gold: bool) -> str | None:
    m = (_MC_GOLD_RE if gold else _MC_PRED_RE).fullmatch(s)
    if m is None:
        return None
    return next(g for g in m.groups() if g).upper()


def _float_eval(expr: str) -> float | None:
    """Float value of a purely numeric expression (``9^{9^9}`` -> inf), never computing big integers."""
    clean = expr.replace("{", "(").replace("}", ")").replace("\\cdot", "*").replace("\\times", "*")
    clean = re.sub(r"\s+", "", clean).replace("^", "**")
    if not clean or len(clean) > 500 or not _NUMERIC_EXPR_RE.fullmatch(clean):
        return None
    try:
        return _float_node(ast.parse(clean, mode="eval").body)
    except (SyntaxError, ValueError, TypeError, RecursionError, MemoryError, ZeroDivisionError):
        return None


def _float_node(node: ast.AST) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        try:
            return float(node.value)
        except OverflowError:
            return math.inf
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _float_node(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp):
        left, right = _float_node(node.left), _float_node(node.right)
        try:
            if isinstance(node.op, ast.Pow):
                return math.pow(left, right)
            if isinstance(node.op, ast.Add):
                return left + right
            if isinstance(node.op, ast.Sub):
                return left - right
            if isinstance(node.op, ast.Mult):
                return left * right
            if isinstance(node.op, ast.Div):
                return left / right
        except OverflowError:
            return math.inf
    raise ValueError("not a numeric expression")


def _operand_after(s: str, i: int) -> tuple[str | None, int]:
    while i < len(s) and s[i] == " ":
        i += 1
    if i < len(s) and s[i] in "{(":
        end = _match_group(s, i)
        return (None, i) if end is None else (s[i + 1 : end], end + 1)
    m = _SIGNED_NUMBER_RE.match(s, i)
    return (m.group(), m.end()) if m else (None, i)


def _operand_before(s: str, i: int) -> str | None:
    j = i - 1
    while j >= 0 and s[j] == " ":
        j -= 1
    if j < 0:
        return None
    if s[j] in "})":
        opening = "{" if s[j] == "}" else "("
        depth = 0
        for k in range(j, -1, -1):
            if s[k] == s[j]:
                depth += 1
            elif s[k] == opening:
                depth -= 1
                if depth == 0:
                    return s[k + 1 : j]
        return None
    k = j
    while k >= 0 and (s[k].isdigit() or s[k] == "."):
        k -= 1
    return s[k + 1 : j + 1] or None


def _is_explosive(s: str) -> bool:
    """Whether ``s`` holds a numeric power/factorial too big to evaluate (e.g. ``9^{9^{9^9}}``, ``(10^7)!``)."""
    for m in re.finditer(r"\^|\*\*", s):
        exponent, end = _operand_after(s, m.end())
        if exponent is None:
            continue
        # Right-associative chains such as 9^9^9 or 9**9**9.
        while True:
            nxt = _POWER_OP_RE.match(s, end)
            if nxt is None:
                break
            more, end2 = _operand_after(s, nxt.end())
            if more is None:
                break
            exponent, end = f"({exponent})^({more})", end2
        exp_value = _float_eval(exponent)
        if exp_value is None:
            continue
        if math.isinf(exp_value) or math.isnan(exp_value):
            return True
        base = _operand_before(s, m.start())
        base_value = _float_eval(base) if base else None
        if base_value is None:
            if abs(exp_value) > _MAX_SYMBOLIC_EXPONENT:
                return True
            continue
        if math.isinf(base_value):
            return True
        if abs(base_value) > 1 and abs(exp_value) * math.log10(abs(base_value)) > _MAX_DIGITS:
            return True
    for m in re.finditer(r"!", s):
        operand = _operand_before(s, m.start())
        value = _float_eval(operand) if operand else None
        if value is not None and (math.isinf(value) or value > _MAX_FACTORIAL):
            return True
    return False


# ----------------------------------------------------------------------------------------------------------------
# math-verify, run in the helper process (or, as a fallback, in a thread)
# ----------------------------------------------------------------------------------------------------------------


def _mv_run(op: str, gold: str, pred: str) -> bool:
    """The sympy-heavy work itself; math-verify's signal timeouts are disabled (we bound time ourselves)."""
    import math_verify.grader
    import math_verify.parser
    from math_verify import parse, verify

    # We disable its timeouts on purpose; silence its one-off warning about it.
    math_verify.grader.TIMEOUT_WARNING_SHOWN = True
    math_verify.parser.TIMEOUT_WARNING_SHOWN = True
    if op == "parse":
        parsed = parse("\\boxed{" + gold + "}", parsing_timeout=None)
        return any(not isinstance(x, str) for x in parsed)
    gold_parsed = parse("\\boxed{" + gold + "}", parsing_timeout=None)
    pred_parsed = parse("\\boxed{" + pred + "}", parsing_timeout=None)
    if not gold_parsed or not pred_parsed:
        return False
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=None))


class _Alarm(BaseException):
    """Raised by the helper's own SIGALRM; a BaseException so math-verify's ``except Exception`` cannot eat it."""


def _helper_main() -> None:
    """Helper process loop: one JSON request per line on stdin, one JSON reply per line on stdout."""
    import resource
    import signal

    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # stray prints from libraries must not corrupt the protocol
    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def _on_alarm(signum: int, frame: Any) -> None:
        raise _Alarm()

    signal.signal(signal.SIGALRM, _on_alarm)
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, resource.getrlimit(resource.RLIMIT_AS)[1]))
    except (ValueError, OSError):
        pass
    import math_verify  # noqa: F401  (no math-verify here: exit, and the client falls back to threads)

    try:
        _mv_run("eq", "\\frac{1}{2}", "0.5")  # warm up before saying ready
    except Exception:
        pass
    out.write('{"ready": true}\n')
    out.flush()
    for line in sys.stdin.buffer:
        reply: dict[str, Any] = {"ok": False, "timeout": False}
        try:
            req = json.loads(line)
            limit = max(float(req["timeout"]), _MIN_TIMEOUT)
            try:  # a kernel-level backstop in case our client is gone and we are stuck in C
                used = time.process_time()
                hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
                soft = int(used + limit + 5)
                resource.setrlimit(
                    resource.RLIMIT_CPU, (soft if hard == resource.RLIM_INFINITY else min(soft, hard), hard)
                )
            except (ValueError, OSError):
                pass
            try:
                signal.setitimer(signal.ITIMER_REAL, limit)
                reply["ok"] = _mv_run(req["op"], req["gold"], req.get("pred", ""))
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except _Alarm:
            reply = {"ok": False, "timeout": True}
        except Exception:
            reply = {"ok": False, "timeout": False}
        out.write(json.dumps(reply) + "\n")
        out.flush()


_BOOT = "import runpy, sys; runpy.run_path(sys.argv[1], run_name='__brevity_grading_helper__')"


class _Helper:
    """Client side of one helper process."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _BOOT, os.path.abspath(__file__)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            close_fds=True,
            start_new_session=True,
        )
        self.fd = self.proc.stdout.fileno()  # type: ignore[union-attr]
        self.poller = select.poll()
        self.poller.register(self.fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        self.buf = b""
        self.ready = False

    def _read_line(self, deadline: float) -> bytes | None:
        while b"\n" not in self.buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self.poller.poll(max(1, int(remaining * 1000))):
                return None
            chunk = os.read(self.fd, 65536)
            if not chunk:
                raise EOFError("grading helper exited")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line

    def wait_ready(self) -> bool:
        if not self.ready:
            self.ready = self._read_line(time.monotonic() + _STARTUP_TIMEOUT) is not None
        return self.ready

    def request(self, payload: dict[str, Any], timeout: float) -> dict[str, Any] | None:
        """Send one request; None if no reply came within ``timeout + _KILL_GRACE``."""
        self.proc.stdin.write((json.dumps(payload) + "\n").encode())  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        line = self._read_line(time.monotonic() + timeout + _KILL_GRACE)
        return None if line is None else json.loads(line)

    def kill(self) -> None:
        try:
            self.proc.kill()
            self.proc.wait(timeout=5)
        except Exception:
            pass
        self.close_fds()

    def close_fds(self) -> None:
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                if f is not None:
                    f.close()
            except Exception:
                pass

    def shutdown(self) -> None:
        self.close_fds()  # EOF on stdin: the helper exits by itself
        try:
            self.proc.wait(timeout=1)
        except Exception:
            self.kill()


class _State:
    lock = threading.Lock()
    helper: _Helper | None = None
    helper_failed_at: float | None = None
    disabled = False  # force the thread fallback (tests, or platforms without poll)


def _reset_after_fork() -> None:
    """In a forked child: forget the parent's helper (its pipes are shared) and start our own when needed."""
    _State.lock = threading.Lock()
    if _State.helper is not None:
        _State.helper.close_fds()
    _State.helper = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


@atexit.register
def _shutdown_helper() -> None:
    helper, _State.helper = _State.helper, None
    if helper is not None:
        helper.shutdown()


def _get_helper() -> _Helper | None:
    """The ready helper (started if needed, called under the lock), or None to use the thread fallback."""
    if _State.disabled or not sys.executable or not hasattr(select, "poll"):
        return None
    failed = _State.helper_failed_at
    if failed is not None and time.monotonic() - failed < _RETRY_HELPER_AFTER:
        return None
    helper = _State.helper
    if helper is not None and helper.proc.poll() is not None:
        helper.kill()
        helper = None
    try:
        if helper is None:
            helper = _State.helper = _Helper()
        if helper.wait_ready():
            _State.helper_failed_at = None
            return helper
    except Exception:
        logger.debug("grading helper failed to start", exc_info=True)
    logger.warning("brevity grading helper did not start; falling back to in-process threads")
    if helper is not None:
        helper.kill()
    _State.helper = None
    _State.helper_failed_at = time.monotonic()
    return None


def _run_in_thread(op: str, gold: str, pred: str, timeout: float) -> tuple[bool, bool]:
    result: dict[str, bool] = {}

    def target() -> None:
        try:
            result["ok"] = _mv_run(op, gold, pred)
        except BaseException:
            result["ok"] = False

    worker = threading.Thread(target=target, name="brevity-grading", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():  # abandoned: it cannot be killed (see the module docstring)
        return False, True
    return result.get("ok", False), False


def _run_sympy(op: str, gold: str, pred: str, timeout: float) -> tuple[bool, bool]:
    """Run a math-verify operation with a wall-clock limit; returns ``(result, timed_out)``."""
    timeout = max(float(timeout), _MIN_TIMEOUT)
    with _State.lock:
        helper = _get_helper()
        if helper is not None:
            try:
                reply = helper.request({"op": op, "gold": gold, "pred": pred, "timeout": timeout}, timeout)
            except Exception:
                logger.debug("grading helper failed", exc_info=True)
                reply = None
            if reply is not None:
                return bool(reply.get("ok")), bool(reply.get("timeout"))
            # No reply in time (or the helper died): kill it and start the next one right away.
            helper.kill()
            try:
                _State.helper = _Helper()
            except Exception:
                _State.helper = None
            return False, True
    return _run_in_thread(op, gold, pred, timeout)


# ----------------------------------------------------------------------------------------------------------------
# Public checks
# ----------------------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=16384)
def _equivalent(pred: str, gold: str, timeout: float) -> tuple[bool, bool]:
    """``(equal, timed_out)`` for two already-normalised answers."""
    if not pred or not gold:
        return False, False
    if pred == gold:
        return True, False
    if len(pred) > _MAX_ANSWER_CHARS or len(gold) > _MAX_ANSWER_CHARS:
        return False, False
    letter = _mc_letter(gold, gold=True)
    if letter is not None:
        return _mc_letter(pred, gold=False) == letter, False
    fp, fg = _to_fraction(pred), _to_fraction(gold)
    if fp is not None and fg is not None:
        return fp == fg, False
    if _is_explosive(pred) or _is_explosive(gold):
        return False, False
    return _run_sympy("eq", gold, pred, timeout)


def is_equivalent(pred: str, gold: str, *, timeout: float = 5.0) -> bool:
    """Whether answer ``pred`` equals gold answer ``gold``; never raises, False on timeout."""
    try:
        return _equivalent(normalize_answer(pred), normalize_answer(gold), float(timeout))[0]
    except Exception:
        logger.debug("is_equivalent failed", exc_info=True)
        return False


_ENGLISH_SHORT = frozenset("is it the and or of to no yes not are was an be so if as at by on we".split())


def _looks_like_words(s: str) -> bool:
    """Prose rather than maths (math-verify happily parses ``hello world`` as a product of symbols)."""
    bare = re.sub(r"\\[A-Za-z]+", " ", s)
    for word in re.findall(r"[A-Za-z]+", bare):
        w = word.lower()
        if w in _ENGLISH_SHORT or (len(w) >= 4 and w not in _MATH_WORDS and w not in _UNIT_VOCAB):
            return True
    return False


@functools.lru_cache(maxsize=8192)
def _valid_math(expr: str, timeout: float) -> bool:
    norm = normalize_answer(expr)
    if not norm or len(norm) > _MAX_ANSWER_CHARS or _looks_like_words(expr):
        return False
    if _to_fraction(norm) is not None or _mc_letter(norm, gold=True) is not None:
        return True
    if _is_explosive(norm):
        return True  # it is maths, just too big to evaluate
    return _run_sympy("parse", norm, "", timeout)[0]


def is_valid_math(expr: str, *, timeout: float = 2.0) -> bool:
    """Whether ``expr`` (an extracted answer) parses as maths; prose, empty strings and garbage do not."""
    if not isinstance(expr, str):
        return False
    try:
        return _valid_math(expr, float(timeout))
    except Exception:
        logger.debug("is_valid_math failed", exc_info=True)
        return False


@functools.lru_cache(maxsize=1024)
def _grade(response: str, references: tuple[str, ...], timeout: float, answer_format: str) -> Grade:
    answer = extract_answer(response, answer_format)
    golds = [reference_answer(r) for r in references]
    if answer is None or not golds:
        return Grade(correct=False, answer=answer, reference=golds[0] if golds else None)
    pred = normalize_answer(answer)
    timed_out = False
    for gold in golds:
        ok, late = _equivalent(pred, gold, timeout)
        if ok:
            return Grade(correct=True, answer=answer, reference=gold)
        timed_out = timed_out or late
    return Grade(correct=False, answer=answer, reference=golds[0], timed_out=timed_out)


def grade(
    response: str, reference: str | Sequence[str], *, timeout: float = 5.0, answer_format: str = "boxed"
) -> Grade:
    """Grade one response against a reference (or a list of acceptable references: correct if any matches).

    ``timeout`` bounds each sympy equivalence check (per reference); a timeout gives ``timed_out=True``.
    """
    if answer_format not in ANSWER_FORMATS:
        raise ValueError(f"answer_format must be one of {ANSWER_FORMATS}, got {answer_format!r}")
    if not isinstance(response, str):
        response = ""
    refs = (reference,) if isinstance(reference, str) else tuple(r for r in reference if isinstance(r, str))
    try:
        return _grade(response, refs, float(timeout), answer_format)
    except Exception:
        logger.debug("grade failed", exc_info=True)
        return Grade(correct=False, answer=None, reference=None)


if __name__ == "__brevity_grading_helper__":
    _helper_main()
