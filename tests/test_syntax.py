"""Parser tests: trees, positions, errors with carets, hostile input, round-trips."""

from __future__ import annotations

import os

import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

from matcalc import derive
from matcalc import parse as lower
from matcalc.errors import MatcalcError
from matcalc.forms.printing import to_text
from matcalc.language.syntax import (
    MAX_DEPTH,
    Assign,
    BinOp,
    Call,
    Decl,
    Expr,
    ExprStmt,
    Name,
    Number,
    Transpose,
    UnaryOp,
    parse_expression,
    parse_program,
    unparse,
)
from matcalc.proofs.reference import reference_function

DIMENSION = "dimension must be a name, a positive integer or a product of them (`h * k`), got "


def N(name: str) -> Name:  # noqa: N802
    return Name(name)


def num(text: str) -> Number:
    return Number(text, sympy.Rational(text))


def B(op: str, left: Expr, right: Expr) -> BinOp:  # noqa: N802
    return BinOp(op, left, right)


def fails(source: str, *, program: bool = True) -> MatcalcError:
    with pytest.raises(MatcalcError) as info:
        (parse_program if program else parse_expression)(source)
    return info.value


# ------------------------------------------------------------------------- precedence


@pytest.mark.parametrize(
    ("source", "tree"),
    [
        ("x @ A @ x", B("@", B("@", N("x"), N("A")), N("x"))),
        ("a - b - c", B("-", B("-", N("a"), N("b")), N("c"))),
        ("a - (b - c)", B("-", N("a"), B("-", N("b"), N("c")))),
        ("a + b * c", B("+", N("a"), B("*", N("b"), N("c")))),
        ("a * b + c", B("+", B("*", N("a"), N("b")), N("c"))),
        ("a * b @ c / d", B("/", B("@", B("*", N("a"), N("b")), N("c")), N("d"))),
        ("-x ** 2", UnaryOp("-", B("**", N("x"), num("2")))),
        ("x ** -1", B("**", N("x"), UnaryOp("-", num("1")))),
        ("2 ** 3 ** 2", B("**", num("2"), B("**", num("3"), num("2")))),
        ("-a * b", B("*", UnaryOp("-", N("a")), N("b"))),
        ("a * -b", B("*", N("a"), UnaryOp("-", N("b")))),
        ("--+x", UnaryOp("-", UnaryOp("-", UnaryOp("+", N("x"))))),
        ("x.T ** 2", B("**", Transpose(N("x")), num("2"))),
        ("-x.T", UnaryOp("-", Transpose(N("x")))),
        ("x ** y.T", B("**", N("x"), Transpose(N("y")))),
        ("x.T.T", Transpose(Transpose(N("x")))),
        ("(A @ B).T", Transpose(B("@", N("A"), N("B")))),
        ("f(x).T", Transpose(Call("f", (N("x"),)))),
        ("x . T", Transpose(N("x"))),
        ("((x))", N("x")),
    ],
)
def test_precedence_and_associativity(source: str, tree: Expr) -> None:
    assert parse_expression(source) == tree


def test_calls() -> None:
    e = parse_expression("sum(x * y, axis=-1, keepdims=0)")
    assert isinstance(e, Call)
    assert e.func == "sum"
    assert e.args == (B("*", N("x"), N("y")),)
    assert [(k, v, off) for k, v, off in e.kwargs] == [
        ("axis", UnaryOp("-", num("1")), 11),
        ("keepdims", num("0"), 20),
    ]
    assert parse_expression("f()") == Call("f", ())
    assert parse_expression("f(x,)") == Call("f", (N("x"),))
    assert parse_expression("f(\n  x,\n  y\n)") == Call("f", (N("x"), N("y")))


def test_numbers_are_exact() -> None:
    for text, value in [
        ("3", 3),
        ("0.5", sympy.Rational(1, 2)),
        (".5", sympy.Rational(1, 2)),
        ("0.1", sympy.Rational(1, 10)),
        ("1e-3", sympy.Rational(1, 1000)),
        ("2.5E+4", 25000),
        ("1.", 1),
        ("0.000", 0),
    ]:
        e = parse_expression(text)
        assert isinstance(e, Number)
        assert e.text == text
        assert e.value == value == sympy.Rational(text)
        assert isinstance(e.value, sympy.Rational)


def test_number_limits() -> None:
    for text in ["1e400", "9.9e400", "0.1e401", "1e-400", "1." + "0" * 1000, "0" * 1000 + "7"]:
        e = parse_expression(text)
        assert isinstance(e, Number) and e.value == sympy.Rational(text)
    for text in ["1e401", "10e400", "1e999999", "1e" + "9" * 10_000, "9" * 402]:
        assert fails(text).message.startswith("number too large")
    for text in ["1e-401", "0.5e-400", "1e-999999", "0." + "1" * 401]:
        assert fails(text).message.startswith("number too small")
    for text in ["1e", "1e+", "2.5E-"]:
        assert fails(text).message.startswith("malformed number")


def test_positions() -> None:
    e = parse_expression("  (a + b) * c.T")
    assert isinstance(e, BinOp)
    assert (e.pos, e.op_pos) == (2, 10)
    assert isinstance(e.left, BinOp)
    assert (e.left.pos, e.left.op_pos) == (3, 5)
    assert isinstance(e.right, Transpose)
    assert e.right.pos == 13
    assert e.right.operand.pos == 12
    u = parse_expression("x - -y")
    assert isinstance(u, BinOp) and isinstance(u.right, UnaryOp)
    assert u.right.pos == 4
    c = parse_expression("x + f(y)")
    assert isinstance(c, BinOp) and c.right.pos == 4


def test_equality_ignores_positions() -> None:
    assert parse_expression("f(x, axis=0)") == parse_expression("f( x ,   axis = 0 )")
    assert hash(parse_expression("a+b")) == hash(parse_expression("a  +  b"))
    assert parse_expression("f(x, axis=0)") != parse_expression("f(x, axis=1)")
    assert parse_expression("f(x, a=0)") != parse_expression("f(x, b=0)")


# ------------------------------------------------------------------------- statements


def test_declarations() -> None:
    prog = parse_program("Y0, Y1: [n, n]\nc: []\nA: [3, m]")
    y, c, a = prog.statements
    assert isinstance(y, Decl)
    assert y.names == (("Y0", 0), ("Y1", 4))
    assert y.dims == (("n", 9), ("n", 12))
    assert y.pos == 0
    assert isinstance(c, Decl) and c.names == (("c", 15),) and c.dims == ()
    assert isinstance(a, Decl) and a.dims == ((3, 25), ("m", 28))
    assert isinstance(a.dims[0][0], int)
    assert prog.source == "Y0, Y1: [n, n]\nc: []\nA: [3, m]"
    assert parse_program("x: [\n  n,\n  m\n]").statements == (
        Decl((("x", 0),), (("n", 0), ("m", 0))),
    )


def test_assignment_and_expression_statements() -> None:
    prog = parse_program("y = x @ A\ny.T @ y")
    assign, stmt = prog.statements
    assert assign == Assign("y", B("@", N("x"), N("A")))
    assert assign.pos == 0
    assert stmt == ExprStmt(B("@", Transpose(N("y")), N("y")))
    assert stmt.pos == 10
    # A statement starting with a name that is neither a declaration nor an assignment.
    assert parse_program("x @ A @ x").statements == (ExprStmt(parse_expression("x @ A @ x")),)
    assert parse_program("(a + b) * c").statements[0].pos == 0


def test_separators_comments_and_blank_lines() -> None:
    prog = parse_program("# header\n\nx: [n]; y = x  # trailing\n;;\n\r\n  z = y;\n# end")
    assert [type(s).__name__ for s in prog.statements] == ["Decl", "Assign", "Assign"]
    assert parse_program("").statements == ()
    assert parse_program("  # only a comment\n\n").statements == ()
    assert parse_program("a =\t1").statements == (Assign("a", num("1")),)


def test_parse_expression_allows_only_one_expression() -> None:
    assert parse_expression("\n  x  # comment\n\n") == N("x")
    for source, offset in [("x; y", 1), ("x\ny", 2), ("x = 1", 2)]:
        err = fails(source, program=False)
        assert err.message.startswith("expected a single expression"), source
        assert err.offset == offset
    err = fails("", program=False)
    assert err.message == "expected an expression, got the end of the input"


# ------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("source", "message", "offset"),
    [
        ("x + )", "expected an expression after `+`, got `)`", 4),
        (")", "unexpected `)`", 0),
        ("x)", "unexpected `)`", 1),
        ("x +", "expected an expression after `+`", 3),
        ("x +* y", "expected an expression after `+`", 3),
        ("x = ", "expected an expression after `=`", 4),
        ("(x + y", "unclosed `(`", 0),
        ("a + (x + y\nb = 2", "unclosed `(`", 4),
        ("f(x", "unclosed `(`", 1),
        ("g(", "unclosed `(`", 1),
        ("x: [n", "expected `]` to close the dimension list", 5),
        ("x: [n m]", "expected `]` to close the dimension list", 6),
        ("x: [n\ny: [m]", "expected `]` to close the dimension list", 3),
        ("x: [n, 0]", DIMENSION + "`0`", 7),
        ("x: [2.5]", DIMENSION + "`2.5`", 4),
        ("x: [-1]", DIMENSION + "`-1`", 4),
        ("x: [n,]", DIMENSION + "`]`", 6),
        ("x: n", "expected `[` after `:` in a declaration", 3),
        ("x: [n] = 3", "expected `;` or a new line after the declaration", 7),
        ("1e999999", "number too large", 0),
        ("y = 2 * 1e401", "number too large", 8),
        ("1" + "0" * 500, "number too large", 0),
        ("1e-999999", "number too small", 0),
        ("1e", "malformed number", 0),
        ("x.shape", "attribute access is not part of matcalc; only `.T` and `.mT` (transposes) "
                    "are allowed", 2),
        ("x.__class__", "attribute access is not part of matcalc", 2),
        ("(A @ B).T.real", "attribute access is not part of matcalc", 10),
        ("x.(", "expected `T` after `.`", 2),
        ("(x)(y)", "only a plain name can be called", 3),
        ("x.T(y)", "only a plain name can be called", 3),
        ("f(x)(y)", "only a plain name can be called", 4),
        ("x[0]", "subscripts like `x[0]` are not part of the matcalc language", 1),
        ("y = A.T[1]", "subscripts", 7),
        ("[1, 2]", "lists are not part of the matcalc language", 0),
        ("'a;b'", "strings in matcalc are only option words", 0),
        ('x + "a/b"', "strings in matcalc are only option words", 4),
        ("{}", "braces (`{`) are not part of the matcalc language", 0),
        ("x = {1: 2}", "braces", 4),
        ("x \\\n + y", "backslashes are not part of the matcalc language", 2),
        ("lambda x: x", "lambda expressions are not part of the matcalc language", 0),
        ("f = lambda: 0", "lambda expressions are not part of the matcalc language", 4),
        ("lambda: 0", "lambda expressions are not part of the matcalc language", 0),
        ("lambda", "`lambda` is a Python keyword, not a matcalc name", 0),
        ("y = (z := 3)", "the walrus operator `:=` is not part of the matcalc language", 7),
        ("x == y", "`==` is not part of the matcalc language", 2),
        ("x < y < z", "comparisons do not chain in matcalc", 6),
        ("x += 1", "augmented assignment `+=`", 2),
        ("x // 2", "floor division", 2),
        ("x, y", "tuples are not part of the matcalc language", 1),
        ("a, b = 1, 2", "tuples are not part of the matcalc language", 1),
        ("f((x, y))", "tuples are not part of the matcalc language", 4),
        ("import os", "`import` is a Python keyword, not a matcalc name", 0),
        ("y = def", "`def` is a Python keyword, not a matcalc name", 4),
        ("class: [n]", "`class` is a Python keyword, not a matcalc name", 0),
        ("x: [for]", "`for` is a Python keyword, not a matcalc name", 4),
        ("x if y else z", "`if` is a Python keyword, not a matcalc name", 2),
        ("f(x for x in y)", "`for` is a Python keyword, not a matcalc name", 4),
        ("f(while=1)", "`while` is a Python keyword, not a matcalc name", 2),
        ("pass", "`pass` is a Python keyword, not a matcalc name", 0),
        ("f(x) = 3", "cannot assign to an expression", 5),
        ("x = y = 3", "unexpected `=`", 6),
        ("x y", "unexpected `y`", 2),
        ("2x", "unexpected `x`", 1),
        ("(x y)", "unexpected `y`", 3),
        ("f(a=1, b)", "positional argument after a keyword argument", 7),
        ("f(a=1, a=2)", "keyword argument `a` given twice", 7),
        ("x ^ 2", "unexpected character `^`", 2),
        ("x % 2", "unexpected character `%`", 2),
        ("x $ y", "unexpected character `$`", 2),
        ("x\n  y = 1\n    z ! 2", "unexpected character `!`", 16),
        ("xᵀ", "unexpected character `ᵀ`", 1),
        ("y = x\x00", "unexpected character U+0000", 5),
    ],
)
def test_errors_have_message_and_caret(source: str, message: str, offset: int) -> None:
    err = fails(source)
    assert message in err.message
    assert err.offset == offset
    assert err.source == source
    # str() shows the offending line with the caret under the reported column.
    first, shown, caret = str(err).splitlines()[:3]
    assert first == f"error: {err.message}"
    prefix = shown[: shown.index("| ") + 2]
    assert caret.index("^") == len(prefix) + offset - (source.rfind("\n", 0, offset) + 1)


def test_error_messages_exact() -> None:
    assert fails("x +").message == "expected an expression after `+`, got the end of the input"
    assert fails("(x + y").message == "unclosed `(`"
    assert fails(")").message == "unexpected `)`"
    assert fails("'s;t'").message.startswith("strings in matcalc are only option words")
    assert fails("x.shape").message == (
        "attribute access is not part of matcalc; only `.T` and `.mT` (transposes) are allowed"
    )
    assert fails("x.shape").hint == (
        "Sizes are the declared dimensions, used by name: `n` for `X: [n, m]`.")
    assert fails("import x").message == "`import` is a Python keyword, not a matcalc name"
    assert fails("2x").hint == "Write `2 * x` to multiply."


def test_first_error_in_source_order_wins() -> None:
    err = fails("x = (1 +\n'a; b'")
    assert err.message.startswith("strings in matcalc are only option words")
    err = fails("y = x +\nz = 'abc'")
    assert err.message.startswith("expected an expression after `+`")


# ------------------------------------------------------------------------- depth


@pytest.mark.parametrize(
    "source",
    [
        "(" * 5000 + "x" + ")" * 5000,
        "(" * 5000,
        "-" * 5000 + "x",
        "-(" * 3000 + "x",
        "f(" * 5000 + "x" + ")" * 5000,
        "2" + " ** 2" * 5000,
        "x" + ".T" * 5000,
    ],
    ids=lambda s: f"{s[:6]!r}x{len(s)}",
)
def test_deep_nesting_is_an_error_not_recursion(source: str) -> None:
    for parse in (parse_expression, parse_program):
        with pytest.raises(MatcalcError) as info:
            parse(source)
        assert info.value.message == "expression nested too deeply (more than 100 levels)"


def test_depth_limit_boundary() -> None:
    assert parse_expression("(" * MAX_DEPTH + "x" + ")" * MAX_DEPTH) == N("x")
    assert isinstance(parse_expression("-" * MAX_DEPTH + "x"), UnaryOp)
    assert fails("-" * (MAX_DEPTH + 1) + "x").offset == MAX_DEPTH
    assert fails("(" * (MAX_DEPTH + 1) + "x" + ")" * (MAX_DEPTH + 1)).offset == MAX_DEPTH
    terms = " + ".join(["x"] * (MAX_DEPTH + 1))
    assert isinstance(parse_expression(terms), BinOp)


def test_long_chains_are_one_level_and_read_without_recursion() -> None:
    """A sum or product of thousands of terms is flat, not nested: it parses, lowers,
    unparses and evaluates without deep recursion."""
    terms = " + ".join(["x"] * 5000) + " - x * " + " * ".join(["x"] * 3000)
    tree = parse_expression(terms)
    assert unparse(tree) == terms
    program = lower("x: []; f = " + terms)
    assert reference_function(program)(x=1.0) == 5000 - 1
    (gradient,) = derive(program, ["x"]).gradients
    assert to_text(gradient.expr) == "5000 − 3001 x³⁰⁰⁰"


def test_large_program_parses() -> None:
    line = "y = (x.T @ A @ x + 2.5e-3 * f(x, axis=-1)) ** 2 / 3  # comment\n"
    source = "A: [n, n]; x: [n]\n" + line * (100_000 // len(line) + 1)
    assert len(source) > 100_000
    prog = parse_program(source)
    assert len(prog.statements) == 2 + 100_000 // len(line) + 1


def test_huge_hostile_inputs_are_errors() -> None:
    for source in ["(" * 100_000, "-" * 100_000, "1" * 100_000]:
        with pytest.raises(MatcalcError):
            parse_program(source)


# ------------------------------------------------------------------------- hostile input


@pytest.mark.parametrize(
    "source",
    [
        "__import__('os').system('touch {marker}')",
        '__import__("os").system("touch {marker}")',
        'exec(\'open("{marker}", "w")\')',
        "eval(compile('open(\"{marker}\", \"w\")', 'f', 'exec'))",
        "open('{marker}', 'w').write('x')",
        "x = __builtins__.open('{marker}', 'w')",
        "().__class__.__bases__[0].__subclasses__()",
        "(lambda: __import__('os').system('touch {marker}'))()",
        "import os; os.system('touch {marker}')",
        "x.__class__",
        "lambda x: x",
        "x[0]",
        "{{}}",
        "f'{{x}}'",
    ],
)
def test_hostile_inputs_raise_and_do_nothing(source: str, tmp_path: os.PathLike[str]) -> None:
    marker = os.path.join(os.fspath(tmp_path), "pwned")
    source = source.format(marker=marker)
    for parse in (parse_program, parse_expression):
        with pytest.raises(MatcalcError):
            parse(source)
    assert not os.path.exists(marker)
    assert not os.path.exists("/tmp/pwned")


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet=st.sampled_from(list("xAf_T0129.e+-*/@()[],:;=# \n'\"{}\\<^")), max_size=60)
)
def test_arbitrary_text_gives_tree_or_matcalc_error(source: str) -> None:
    try:
        prog = parse_program(source)
    except MatcalcError as err:
        assert err.offset is not None and 0 <= err.offset <= len(source)
        return
    for stmt in prog.statements:
        if not isinstance(stmt, Decl):
            assert parse_expression(unparse(stmt.expr)) == stmt.expr


# ------------------------------------------------------------------------- unparse


@pytest.mark.parametrize(
    ("source", "text"),
    [
        ("x@A@x", "x @ A @ x"),
        ("-(x**2)", "-x ** 2"),
        ("(-x)**2", "(-x) ** 2"),
        ("(x**2)**3", "(x ** 2) ** 3"),
        ("x**(-1)", "x ** -1"),
        ("a-(b-c)", "a - (b - c)"),
        ("(a-b)-c", "a - b - c"),
        ("a/(b*c)", "a / (b * c)"),
        ("-(a+b)", "-(a + b)"),
        ("((A@B)).T", "(A @ B).T"),
        ("(-x).T", "(-x).T"),
        ("(2).T", "(2).T"),
        ("(x).T.T", "x.T.T"),
        ("f( x , axis = -1 )", "f(x, axis=-1)"),
        ("--x", "--x"),
        ("(a<b)*(c>=d+1)", "(a < b) * (c >= d + 1)"),
        ("(a<b)<c", "(a < b) < c"),
        ("a<=(b>c)", "a <= (b > c)"),
        ("f(x > 0, -x)", "f(x > 0, -x)"),
    ],
)
def test_unparse_canonical(source: str, text: str) -> None:
    assert unparse(parse_expression(source)) == text
    assert parse_expression(text) == parse_expression(source)


NAMES = st.sampled_from(["x", "y", "A", "B", "T", "n", "_a1", "lam"])
NUMBERS = st.from_regex(
    r"\A(?:[0-9]{1,4}(?:\.[0-9]{0,3})?|\.[0-9]{1,3})(?:[eE][+-]?[0-9]{1,2})?\Z"
).map(lambda t: Number(t, sympy.Rational(t)))


def _extend(children: st.SearchStrategy[Expr]) -> st.SearchStrategy[Expr]:
    return st.one_of(
        st.builds(UnaryOp, st.sampled_from(["-", "+"]), children),
        st.builds(BinOp, st.sampled_from(["+", "-", "*", "/", "@", "**", "<", ">=", "<=", ">"]),
                  children, children),
        st.builds(Transpose, children),
        st.builds(
            Call,
            st.sampled_from(["f", "sum", "log"]),
            st.lists(children, max_size=3).map(tuple),
            st.dictionaries(st.sampled_from(["axis", "k"]), children, max_size=2).map(
                lambda d: tuple((k, v, 0) for k, v in d.items())
            ),
        ),
    )


EXPRS = st.recursive(st.one_of(NAMES.map(Name), NUMBERS), _extend, max_leaves=25)


@settings(max_examples=400, deadline=None)
@given(EXPRS)
def test_unparse_round_trips(expr: Expr) -> None:
    text = unparse(expr)
    assert parse_expression(text) == expr
    assert unparse(parse_expression(text)) == text
    assert parse_program(f"r = {text}").statements == (Assign("r", expr),)


@pytest.mark.parametrize(("source", "advice"), [
    ("A: [n, n]; x: [n]\nx @ A.inv() @ x", "Write the inverse as a function: `inv(A)`."),
    ("X: [n, m]; w: [m]\nsum(X.dot(w))", "Write products with `@`, as in `X @ w`."),
    ("X: [n, m]\nsum(X.exp())", "If `exp` is a function, call it by name, as in `exp(x)`."),
    ("X: [n, m]\nsum(sum(X, dim=0))", "sum has no argument `dim`. matcalc follows NumPy: write "
                                      "`axis=`."),
    ("x: [n]\nsum(x, keepdim=True)", "matcalc follows NumPy: write `keepdims=`."),
    ("A: [n, n]\ntrace(inverse(A))", "matcalc's matrix inverse is `inv(A)`"),
    ("Z: [n, c]; Y: [n, c] onehot\ncross_entropy(Z, Y)", "is `softmax_cross_entropy(Z, Y)`"),
    ("X: [n, d]\nsum(layer_norm(X))", "matcalc has no `layer_norm`; write it from `mean` and"),
    ("X: [n, m]; W: [m, k]; B: [k]\nsum(X @ W + b)", "`b` is not declared. Did you mean `B`?"),
])
def test_what_users_write_from_numpy_and_torch_gets_the_matcalc_spelling(
        source: str, advice: str) -> None:
    with pytest.raises(MatcalcError) as caught:
        lower(source)
    assert advice in str(caught.value)


def test_a_one_letter_name_is_not_suggested_another_letter() -> None:
    with pytest.raises(MatcalcError) as caught:
        lower("X: [n, m]; W: [m, k]\nsum(X @ W + b)")
    assert "Did you mean" not in str(caught.value)
