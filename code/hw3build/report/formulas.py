"""The formulas the theory answers print, read back from the ``.tex`` so the checks test what is printed.

An answer marks a formula it states with ``\\checkedformula{key}{LaTeX}`` (theory/preamble.tex: it prints
the LaTeX unchanged). :func:`printed_formulas` collects them; :func:`algebraic` turns a simple algebraic
one (``T^2(D+M+2)``, ``\\frac{2}{n}\\cdot\\frac{c}{L}``) into a sympy expression, and :func:`index_sum` /
:func:`matrix_sum` turn the two printed forms of the BPTT gradient into functions that evaluate them
term by term. Each reader accepts a small, fixed grammar and raises :class:`FormulaError` on anything
else, so a formula edited beyond it fails loudly rather than being checked wrongly. Written by hand: a
general LaTeX parser (sympy's needs ANTLR) would still not know what ``J_{t,\\tau}`` or ``D_\\tau`` mean.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import sympy
import torch
from sympy.parsing.sympy_parser import implicit_multiplication, parse_expr, standard_transformations

from hw3build.errors import BuildError

MACRO = r"\checkedformula"


class FormulaError(BuildError, ValueError):
    """A printed formula is missing, duplicated, or outside the grammar its reader accepts."""


def _braced(text: str, start: int) -> tuple[str, int]:
    """The contents of the brace group opening at ``text[start]`` and the index after it."""
    if start >= len(text) or text[start] != "{":
        raise FormulaError(f"expected '{{' at: {text[start : start + 40]!r}")
    depth = 0
    for index in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        if depth == 0:
            return text[start + 1 : index], index + 1
    raise FormulaError(f"unbalanced braces after: {text[start : start + 40]!r}")


def find_formulas(text: str) -> dict[str, str]:
    """``{key: LaTeX}`` of every ``\\checkedformula{key}{LaTeX}`` in ``text`` (comments skipped)."""
    text = re.sub(r"(?<!\\)%.*", "", text)
    found: dict[str, str] = {}
    for match in re.finditer(re.escape(MACRO) + r"(?![A-Za-z])", text):
        key, after = _braced(text, match.end())
        formula, _ = _braced(text, after)
        if key in found:
            raise FormulaError(f"formula {key!r} is marked twice")
        found[key] = formula
    return found


def printed_formulas(
    theory_dir: Path, names: Iterable[str] = ("q1.tex", "q2.tex", "q3.tex")
) -> dict[str, str]:
    """Every marked formula of the answers in ``theory_dir``."""
    found: dict[str, str] = {}
    for name in names:
        for key, formula in find_formulas((Path(theory_dir) / name).read_text(encoding="utf-8")).items():
            if key in found:
                raise FormulaError(f"formula {key!r} is marked twice")
            found[key] = formula
    return found


def require(formulas: Mapping[str, str], key: str) -> str:
    if key not in formulas:
        raise FormulaError(f"the answers print no formula marked {MACRO}{{{key}}}{{...}}")
    return formulas[key]


# --------------------------------------------------------------------------------------- algebraic

_SPACING = re.compile(r"\\(?:[,;!: ]|quad|qquad)|\\(?:big|Big|bigg|Bigg)[lr]?(?![A-Za-z])|\\left|\\right")


def _strip_spacing(tex: str) -> str:
    return _SPACING.sub("", tex).replace(" ", "")


def _expand_fracs(tex: str) -> str:
    while (start := tex.find(r"\frac")) >= 0:
        numerator, after = _braced(tex, start + len(r"\frac"))
        denominator, end = _braced(tex, after)
        tex = f"{tex[:start]}(({numerator})/({denominator})){tex[end:]}"
    return tex


def algebraic(tex: str, symbols: Mapping[str, sympy.Symbol]) -> sympy.Expr:
    """A printed algebraic expression as sympy, e.g. ``\\Bigl(1+\\frac{n\\sigma_l^2}{2}\\Bigr)v_l``.

    Grammar: numbers, one-letter names and Greek letters with an optional one-character subscript
    (``v_l``, ``\\sigma_l``: the keys of ``symbols``), ``+ - \\cdot``, juxtaposition, ``^``,
    ``\\frac``, parentheses. A name not in ``symbols`` is an error."""
    text = _expand_fracs(_strip_spacing(tex)).replace(r"\cdot", "*")
    text = text.replace("{", "(").replace("}", ")").replace("^", "**")
    tokens = re.findall(r"\\?[A-Za-z]+(?:_[A-Za-z0-9])?|\d+(?:\.\d+)?|\*\*|[-+*/()]|\S", text)
    names = []
    for token in tokens:
        if re.fullmatch(r"\d+(?:\.\d+)?|\*\*|[-+*/()]", token):
            names.append(token)
            continue
        # a command is one name (\sigma_l); plain letters are one name each (nL is n times L)
        parts = (
            [token[1:]]
            if token.startswith("\\")
            else re.findall(r"[A-Za-z](?:_[A-Za-z0-9])?$|[A-Za-z]", token)
        )
        for name in parts:
            if name not in symbols:
                raise FormulaError(f"unknown name {name!r} in the printed formula {tex!r}")
            names.append(name)
    try:
        return parse_expr(
            " ".join(names),
            local_dict=dict(symbols),
            global_dict={"Integer": sympy.Integer, "Float": sympy.Float, "Symbol": sympy.Symbol},
            transformations=(*standard_transformations, implicit_multiplication),
        )
    except Exception as exc:  # sympy raises several types on bad input
        raise FormulaError(f"cannot read the printed formula {tex!r}: {exc}") from None


def rhs(tex: str) -> str:
    """The right-hand side of a printed equation ``lhs = rhs`` (the whole text when there is no ``=``)."""
    return tex.rsplit("=", 1)[-1]


# --------------------------------------------------------------------------- the BPTT gradient forms

# What the symbols of the answer to Q3 denote, given the forward pass of one problem: a callable of the
# evaluated subscripts. ``D_s = diag(phi'(u_s))``, ``J_{t,s}`` the state Jacobian, vectors as columns.
Symbols = Mapping[str, Callable[..., torch.Tensor]]

_SUM = re.compile(r"\\sum_\{(?P<var>\\?[a-z]+)=1\}\^(?:\{(?P<upper>[a-z])\}|(?P<upper1>[a-z]))")
_ATOM = re.compile(
    r"(?P<dphi>\\phi'\((?P<arg>[a-z])_(?:\{(?P<asub>[^{}]+)\}|(?P<asub1>\\[a-z]+|[a-z]))(?P<aidx>\[[^\]]+\])\))"
    r"|(?P<name>[A-Za-z])(?:_(?:\{(?P<sub>[^{}]+)\}|(?P<sub1>\\[a-z]+|[a-z])))?"
    r"(?P<top>\^\\top)?(?P<idx>\[[^\]]+\])?"
)


def _subscript_values(sub: str | None, env: Mapping[str, int]) -> tuple[int, ...]:
    """``"t,\\tau"`` -> ``(t, tau)`` and ``"\\tau-1"`` -> ``(tau - 1,)`` under ``env``."""
    if sub is None:
        return ()
    values = []
    for part in sub.split(","):
        expr = part.replace("\\", "")
        if not re.fullmatch(r"[a-z]+(?:[-+]\d+)?|\d+", expr):
            raise FormulaError(f"cannot read the subscript {sub!r}")
        name, offset = re.fullmatch(r"([a-z]+|\d+)([-+]\d+)?", expr).groups()  # type: ignore[union-attr]
        base = int(name) if name.isdigit() else env.get(name)
        if base is None:
            raise FormulaError(f"the subscript {sub!r} uses {name!r}, which is not defined there")
        values.append(base + int(offset or 0))
    return tuple(values)


def _leading_sums(tex: str) -> tuple[list[tuple[str, str]], str]:
    sums = []
    while match := _SUM.match(tex):
        sums.append((match["var"].replace("\\", ""), match["upper"] or match["upper1"]))
        tex = tex[match.end() :]
    return sums, tex


def index_sum(tex: str, symbols: Symbols, sizes: Mapping[str, int], free: tuple[str, str]) -> torch.Tensor:
    """Evaluates a printed element form, a sum over indices of a product of indexed factors such as
    ``\\sum_{\\tau=1}^{t}\\phi'(u_\\tau[i])v_{\\tau-1}[j]\\sum_{k=1}^{d}g[k]...``, at every value of the
    two ``free`` indices; ``sizes`` gives each bound (``t``, ``d``, ``m``) and each free index's range."""
    text = _strip_spacing(tex)
    sums: list[tuple[str, str]] = []
    factors: list[tuple[str, str | None, list[str]]] = []
    position = 0
    while position < len(text):
        if match := _SUM.match(text, position):
            sums.append((match["var"].replace("\\", ""), match["upper"] or match["upper1"]))
            position = match.end()
            continue
        match = _ATOM.match(text, position)
        if not match or match.end() == position or not (match["idx"] or match["aidx"]):
            raise FormulaError(f"cannot read the element form at: {text[position : position + 40]!r}")
        if match["dphi"]:
            name, sub, idx = f"phi'({match['arg']})", match["asub"] or match["asub1"], match["aidx"]
        else:
            name, sub, idx = match["name"], match["sub"] or match["sub1"], match["idx"]
            if match["top"]:
                raise FormulaError("a transpose in the element form")
        indices = [i.replace("\\", "") for i in idx[1:-1].split(",")]
        declared = {var for var, _ in sums} | set(free)
        for used in [*indices, *re.findall(r"[a-z]+", (sub or "").replace("\\", ""))]:
            if used not in declared and used not in sizes:
                raise FormulaError(f"{used!r} is used in {match[0]!r} before its sum")
        factors.append((name, sub, indices))
        position = match.end()
    for name, _, _ in factors:
        if name not in symbols:
            raise FormulaError(f"unknown symbol {name!r} in the element form")
    ranges = [range(sizes[upper]) for _, upper in sums]
    shape = (sizes[free[0]], sizes[free[1]])
    out = torch.zeros(shape, dtype=torch.float64)
    memo: dict[tuple[str, tuple[int, ...]], torch.Tensor] = {}
    for fixed in itertools.product(range(shape[0]), range(shape[1])):
        total = 0.0
        for values in itertools.product(*ranges):
            # summation variables count from 1 as printed; array indices from 0
            env = dict(zip(free, fixed, strict=True))
            env.update({var: value for (var, _), value in zip(sums, values, strict=True)})
            subs_env = {**sizes, **{k: v + 1 for k, v in env.items()}}
            term = 1.0
            for name, sub, indices in factors:
                subs = _subscript_values(sub, subs_env)
                if (name, subs) not in memo:
                    memo[name, subs] = symbols[name](*subs)
                array = memo[name, subs]
                term *= float(array[tuple(env[i] for i in indices)])
            total += term
        out[fixed] = total
    return out


def matrix_sum(tex: str, symbols: Symbols, sizes: Mapping[str, int]) -> torch.Tensor:
    """Evaluates a printed matrix form, a sum over one index of a product of matrices and column
    vectors such as ``\\sum_{\\tau=1}^{t}D_\\tau(W^\\top D_{\\tau+1})\\cdots(W^\\top D_t)C^\\top g\\,
    v_{\\tau-1}^\\top``; ``(X_{a})\\cdots(X_{b})`` is the product of ``X_s`` for s = a..b (the identity
    when a > b)."""
    sums, body = _leading_sums(_strip_spacing(tex))
    if len(sums) != 1:
        raise FormulaError(f"the matrix form must be one sum, \\sum_{{var=1}}^{{upper}}...: {tex!r}")
    (var, upper), total = sums[0], None
    for value in range(1, sizes[upper] + 1):
        term = _product(body, symbols, {**sizes, var: value})
        total = term if total is None else total + term
    assert total is not None
    return total


def matrix_product(tex: str, symbols: Symbols, env: Mapping[str, int]) -> torch.Tensor:
    """Evaluates a printed product of matrices such as ``(D_tW)(D_{t-1}W)\\cdots(D_{\\tau+1}W)`` with
    the subscripts' variables set by ``env``."""
    return _product(_strip_spacing(tex), symbols, env)


def _atom_matrix(match: re.Match[str], symbols: Symbols, env: Mapping[str, int]) -> torch.Tensor:
    name, sub = match["name"], match["sub"] or match["sub1"]
    if name is None or match["idx"]:
        raise FormulaError(f"cannot read {match[0]!r} in the matrix form")
    if name not in symbols:
        raise FormulaError(f"unknown symbol {name!r} in the matrix form")
    value = symbols[name](*_subscript_values(sub, env))
    value = value.reshape(-1, 1) if value.dim() == 1 else value
    return value.T if match["top"] else value


def _groups(body: str) -> list[str]:
    """Top-level pieces: atoms, parenthesised groups and ``\\cdots``."""
    pieces, position = [], 0
    while position < len(body):
        if body[position] == "(":
            depth, end = 0, position
            for end in range(position, len(body)):
                depth += {"(": 1, ")": -1}.get(body[end], 0)
                if depth == 0:
                    break
            pieces.append(body[position : end + 1])
            position = end + 1
        elif body.startswith(r"\cdots", position):
            pieces.append(r"\cdots")
            position += len(r"\cdots")
        else:
            match = _ATOM.match(body, position)
            if not match or match.end() == position:
                raise FormulaError(f"cannot read the matrix form at: {body[position : position + 40]!r}")
            pieces.append(match[0])
            position = match.end()
    return pieces


def _product(body: str, symbols: Symbols, env: Mapping[str, int]) -> torch.Tensor:
    pieces, result, index = _groups(body), None, 0
    while index < len(pieces):
        piece = pieces[index]
        run = _sequence_run(pieces, index)
        if run:
            factor = _sequence_product(pieces[index : index + run], symbols, env)
            index += run
        elif piece.startswith("("):
            factor = _product(piece[1:-1], symbols, env)
            index += 1
        elif piece == r"\cdots":
            raise FormulaError(r"\cdots must stand between two parenthesised factors")
        else:
            match = _ATOM.fullmatch(piece)
            assert match is not None
            factor = _atom_matrix(match, symbols, env)
            index += 1
        result = factor if result is None else result @ factor
    if result is None:
        raise FormulaError("an empty product in the matrix form")
    return result


def _sequence_run(pieces: Sequence[str], index: int) -> int:
    """How many pieces from ``index`` form one product ``(X_a)(X_{a'})\\cdots(X_b)`` (0: none): every
    piece up to ``\\cdots`` parenthesised and the same factor as the one after it."""
    end = index
    while end < len(pieces) and pieces[end].startswith("("):
        end += 1
    if end >= len(pieces) or pieces[end] != r"\cdots":
        return 0
    if end == index or end + 1 == len(pieces) or not pieces[end + 1].startswith("("):
        raise FormulaError(r"\cdots must stand between two parenthesised factors")
    pattern, _ = _one_subscript(pieces[end + 1])
    for piece in pieces[index:end]:
        try:
            if _one_subscript(piece)[0] != pattern:
                return 0
        except FormulaError:
            return 0
    return end + 2 - index


def _one_subscript(group: str) -> tuple[str, str]:
    """``(W^\\top D_{\\tau+1})`` -> (``(W^\\top D_{@})``, ``\\tau+1``): the group with its one subscript
    replaced by a placeholder, and that subscript."""
    matches = [m for m in _ATOM.finditer(group[1:-1]) if m["sub"] or m["sub1"]]
    if len(matches) != 1:
        raise FormulaError(f"{group}: a factor beside \\cdots needs exactly one subscripted symbol")
    match = matches[0]
    inner = group[1:-1]
    prefix = inner[: match.start()] + match["name"] + "_{@}"
    rest = inner[match.end("sub") + 1 if match["sub"] else match.end("sub1") :]
    return "(" + prefix + rest + ")", match["sub"] or match["sub1"]


def _sequence_product(pieces: Sequence[str], symbols: Symbols, env: Mapping[str, int]) -> torch.Tensor:
    """``(X_{a})\\cdots(X_{b})``: the product of X_s for s = a, a+1, ..., b, in that order (the identity
    when a > b). Written out with a second term first, ``(X_{a})(X_{a-1})\\cdots(X_{b})``, the index
    runs down instead: s = a, a-1, ..., b (the identity when a < b); the terms written out must be the
    first terms of that sequence."""
    *explicit, dots, last = pieces
    if not (last.startswith("(") and dots == r"\cdots"):
        raise FormulaError(r"\cdots must stand between two parenthesised factors")
    read = [_one_subscript(piece) for piece in (*explicit, last)]
    pattern = read[0][0]
    if any(other != pattern for other, _ in read):
        raise FormulaError(f"{' '.join(pieces)}: not the same factor at several indices")
    values = [_subscript_values(sub, env)[0] for _, sub in read]
    step = values[1] - values[0] if len(explicit) > 1 else 1
    if step not in (1, -1) or values[: len(explicit)] != [values[0] + step * k for k in range(len(explicit))]:
        raise FormulaError(f"{' '.join(pieces)}: the indices written out must step by one")
    start, stop = values[0], values[-1]
    body = pattern.replace("@", "s")[1:-1]
    result = None
    for s in range(start, stop + step, step):
        factor = _product(body, symbols, {**env, "s": s})
        result = factor if result is None else result @ factor
    if result is None:  # the empty product: the identity, as large as the factor at the lower index
        size = _product(body, symbols, {**env, "s": min(start, stop)}).shape[0]
        result = torch.eye(size, dtype=torch.float64)
    return result


# ------------------------------------------------------------------------------ Eq. 3 of Question 1

_SUM_ANY = re.compile(r"\\sum_\{(?P<var>[a-z])=1\}\^(?:\{(?P<upper>[A-Za-z])\}|(?P<upper1>[A-Za-z]))")
_SIM_CALL = re.compile(r"\\simf\(Q_(?P<q>[a-z]),K_(?P<k>[a-z])\)")
_ROW = re.compile(r"(?P<name>[A-Z])_(?P<row>[a-z])(?![a-z{])")
_NUMBER = re.compile(r"\d+")

# What the symbols of Eq. 3 denote: ``sim(i, j)`` the similarity of row i of Q and row j of K, ``V(j)``
# row j of V (rows counted from 1).
AttentionSymbols = Mapping[str, Callable[..., torch.Tensor | float]]


def attention_sum(
    tex: str, symbols: AttentionSymbols, sizes: Mapping[str, int], env: Mapping[str, int]
) -> torch.Tensor | float:
    """Evaluates a printed expression of ``\\simf(Q_i,K_j)`` and rows ``V_j`` such as Eq. 3,
    ``\\frac{\\sum_{j=1}^{T}\\simf(Q_i,K_j)\\,V_j}{\\sum_{r=1}^{T}\\simf(Q_i,K_r)}``, at the free indices
    in ``env``. Grammar: products of ``\\frac{..}{..}``, ``\\sum_{x=1}^{N}`` (over the rest of its
    product), ``\\simf(Q_a,K_b)``, ``V_a`` and whole numbers; an index used outside its sum is an error."""
    return _attention_product(_strip_spacing(tex), symbols, sizes, env)


def _attention_index(name: str, env: Mapping[str, int], tex: str) -> int:
    if name not in env:
        raise FormulaError(f"the index {name!r} is used outside its sum in {tex!r}")
    return env[name]


def _attention_product(
    tex: str, symbols: AttentionSymbols, sizes: Mapping[str, int], env: Mapping[str, int]
) -> torch.Tensor | float:
    result: torch.Tensor | float = 1.0
    position = 0
    while position < len(tex):
        if tex.startswith(r"\frac", position):
            numerator, after = _braced(tex, position + len(r"\frac"))
            denominator, position = _braced(tex, after)
            result = result * (
                _attention_product(numerator, symbols, sizes, env)
                / _attention_product(denominator, symbols, sizes, env)
            )
        elif match := _SUM_ANY.match(tex, position):
            upper = match["upper"] or match["upper1"]
            if upper not in sizes:
                raise FormulaError(f"unknown bound {upper!r} in {tex!r}")
            rest = tex[match.end() :]
            terms = [
                _attention_product(rest, symbols, sizes, {**env, match["var"]: value})
                for value in range(1, sizes[upper] + 1)
            ]
            return result * sum(terms[1:], terms[0])
        elif match := _SIM_CALL.match(tex, position):
            i, j = (_attention_index(match[name], env, tex) for name in ("q", "k"))
            result = result * symbols["sim"](i, j)
            position = match.end()
        elif match := _NUMBER.match(tex, position):
            result = result * int(match[0])
            position = match.end()
        elif (match := _ROW.match(tex, position)) and match["name"] in symbols:
            result = result * symbols[match["name"]](_attention_index(match["row"], env, tex))
            position = match.end()
        else:
            raise FormulaError(f"cannot read the attention form at: {tex[position : position + 40]!r}")
    return result
