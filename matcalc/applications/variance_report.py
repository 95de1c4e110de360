"""The report of ``matcalc init``: everything derived about an activation (Gaussian moments,
the initialisation they imply, centring, gains, fixed points, simulations), built from options
and rendered as text, LaTeX or JSON. The command itself is :mod:`matcalc.cli.init`."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import sympy

from matcalc.applications import variance as v
from matcalc.errors import MatcalcError
from matcalc.forms.printing import text_scalar
from matcalc.language.sizes import MEMORY_BUDGET, gigabytes


@dataclass
class Report:
    """Everything ``matcalc init`` derived, ready to print in any format."""

    text: str
    act: v.Activation
    moments: v.Moments
    init: v.Init
    centring: v.Centring
    gains: list[v.GainRow]
    fixed: v.FixedPoint | None = None
    simulations: list[v.Simulation] = field(default_factory=list)
    shown_init: str = "derived"


def build_report(text: str, params: dict[str, float], options: dict[str, Any]) -> Report:
    """Run every derivation the options ask for, for the activation ``text`` with its free
    parameters' values ``params``."""
    act = v.activation(text, params)
    fixed = None
    if options["fixed_point"]:
        fixed = v.fixed_point(act, options["sigma"])
        act = act.with_values({p: q.expr for p, q in fixed.solution.items()})
    m = v.moments(act, options["sigma"])
    report = Report(
        text, act, m, v.initialisation(act, m, options["fan_in"], options["width"]),
        v.centring(m), v.gain_table(options["sigma"]), fixed, shown_init=options["init"],
    )
    if options["simulate"] or options["plot"]:
        report.simulations = _simulations(act, options)
    if options["plot"]:
        values = "".join(f", {p} = {float(x.evalf(15)):.4g}" for p, x in act.values.items())
        title = f"f(z) = {act.display}{values}: std per layer, width {options['width']}"
        v.plot_simulations(report.simulations, options["plot"], title)
    return report


def check_simulation_size(options: dict[str, Any]) -> None:
    """MatcalcError when the simulation's arrays (input, weights, pre-activations and
    activations, per-layer statistics) would need more than the memory budget."""
    batch, fan_in, width = options["batch"], options["fan_in"], options["width"]
    entries = batch * fan_in + max(fan_in, width) * width + 3 * batch * width
    needed = 8 * (entries + 6 * options["layers"])
    if needed > MEMORY_BUDGET:
        raise MatcalcError(
            f"the simulation's arrays would need {gigabytes(needed)} GB (--batch {batch}, "
            f"--fan-in {fan_in}, --width {width}, --layers {options['layers']}), more than the "
            f"{gigabytes(MEMORY_BUDGET)} GB matcalc allows",
            hint="Use a smaller --batch, --fan-in, --width or --layers.")


def _simulations(act: v.Activation, options: dict[str, Any]) -> list[v.Simulation]:
    """A simulation per init; ``options["progress"]`` (if any) hears of each as it starts."""
    keys = ("layers", "width", "fan_in", "batch", "seed", "sigma")
    settings = {key: options[key] for key in keys}
    progress = options.get("progress")
    simulations = []
    for done, init in enumerate(v.INITS):
        if progress is not None:
            progress(done, len(v.INITS), init)
        simulations.append(v.simulate(act, init, **settings))
    return simulations


# ----------------------------------------------------------------------------------------------
# Text


def _expr(expr: sympy.Expr) -> str:
    """A formula as SymPy reads it back (JSON)."""
    return sympy.sstr(expr)


def _math(expr: sympy.Expr) -> str:
    """A formula as the learner's page writes it: `√2/(2 √π)`, `σ²/2`, Euler's number `e` (the
    page's E[·] is an expectation)."""
    return text_scalar(expr.subs(sympy.E, sympy.Symbol("e")))


def _num(x: float) -> str:
    if math.isnan(x):
        return "—"
    return "0" if abs(x) < 1e-14 else f"{x:.10g}"


def _kind(q: v.Quantity) -> str:
    return "exact  " if q.exact else "numeric"


def _quantity_line(label: str, q: v.Quantity, where: str = "") -> str:
    formula = _math(q.expr) if q.exact else _num(q.value)
    return f"  {label:<30} = {formula:<40} {_kind(q)}  {_num(q.value)}{where}"


def render_text(report: Report) -> str:
    """The learner's page."""
    sections = [
        _header_text(report),
        _fixed_text(report),
        _moments_text(report),
        _init_text(report),
        _centring_text(report),
        _gains_text(report),
        _simulation_text(report),
    ]
    return "\n\n".join(s for s in sections if s) + "\n"


def _header_text(report: Report) -> str:
    act, sigma = report.act, report.moments.sigma
    lines = [f"Activation  f(z) = {act.display}"]
    if act.values:
        values = ", ".join(f"{p} = {_num(float(x.evalf(15)))}" for p, x in act.values.items())
        lines.append(f"Parameters  {values}")
    lines.append(f"Pre-activation  z ~ N(0, σ²), values at σ = {_num(sigma)}")
    return "\n".join(lines)


def _fixed_text(report: Report) -> str:
    if report.fixed is None:
        return ""
    lines = ["Fixed point: " + ", ".join(report.fixed.conditions)]
    for q in report.fixed.solution.values():
        lines.append(_quantity_line(q.name, q))
    return "\n".join(lines)


def _moments_text(report: Report) -> str:
    lines = ["Moments of f(z)"]
    lines += [_quantity_line(q.name, q) for q in report.moments.all()]
    general = [q for q in report.moments.all() if q.general is not None and q.general.has(v.SIGMA)]
    if general:
        lines.append("  for any σ:")
        lines += [f"    {q.name} = {_math(q.general)}" for q in general]
    return "\n".join(lines)


def _init_text(report: Report) -> str:
    init = report.init
    n_in, n_out = f" at n = {init.n_in}", f" at n = {init.n_out}"
    return "\n".join([
        "Initialisation: Var(y') = n Var(W) E[f(z)²], so Var(W) = σ²/(n E[f(z)²]) keeps Var(y)"
        " = σ²",
        _quantity_line("forward (fan_in) Var(W)", init.fan_in, n_in),
        _quantity_line("backward (fan_out) Var(W)", init.fan_out, n_out),
        _quantity_line("Glorot (harmonic mean) Var(W)", init.glorot,
                       f" at n_in = {init.n_in}, n_out = {init.n_out}"),
        _quantity_line("gain σ/√E[f²]", init.gain),
        _quantity_line("normal std", init.normal_std, n_in),
        _quantity_line("uniform bound √3·std", init.uniform_bound, n_in),
    ])


def _centring_text(report: Report) -> str:
    c = report.centring
    if math.isnan(c.mean.value):
        return (f"Centring\n  E[f(z)] = {_math(c.mean.expr)} depends on parameters without "
                "values;\n  --fixed-point solves for mean 0.")
    if c.centred:
        return "Centring\n  E[f(z)] = 0: the next layer's input is centred."
    mean = _math(c.mean.expr) if c.mean.exact else _num(c.mean.value)
    shift = _math(c.shift.expr) if c.shift.exact else _num(c.shift.value)
    rms = math.sqrt(report.moments.second.value)
    return "\n".join([
        "Centring",
        f"  E[f(z)] = {mean} = {_num(c.mean.value)} ≠ 0: the next layer's input is not centred.",
        f"  Its mean is {_num(c.mean.value)} against an RMS of {_num(rms)}; with W fixed, unit j",
        "  of the next layer gets a constant offset μ·Σᵢ Wᵢⱼ, which is "
        f"{100 * c.offset_fraction:.3g}% of Var(y) (μ²/E[f²]).",
        "  Var(W) above already accounts for it (it uses E[f²], not Var f).",
        f"  Adding {shift} = {_num(c.shift.value)} to f centres it "
        "(or add a parameter c and use --fixed-point).",
    ])


def _gain_cell(q: v.Quantity) -> str:
    text = _math(q.expr)
    value = _num(q.value)
    return value if not q.exact or len(text) > 14 or text == value else f"{text} = {value}"


def _gains_text(report: Report) -> str:
    sigma = _num(report.moments.sigma)
    lines = [
        f"torch.nn.init.calculate_gain against the derivation (σ = {sigma}, leaky slope 0.01)",
        f"  {'nonlinearity':<12} {'torch':<22} {'derived σ/√E[f²]':<26} derived 1/√E[f′²]",
    ]
    for row in report.gains:
        lines.append(f"  {row.name:<12} {_gain_cell(row.torch):<22} {_gain_cell(row.forward):<26} "
                     f"{_gain_cell(row.backward)}")
    lines += [f"  {row.name}: {row.note}." for row in report.gains if row.note]
    return "\n".join(lines)


def _simulation_text(report: Report) -> str:
    if not report.simulations:
        return ""
    shown = next(s for s in report.simulations if s.init == report.shown_init)
    lines = [
        f"Simulation: {len(shown.std)} layers y = x W, x = f(y), standard normal input, "
        f"init {shown.init}",
        f"  {'layer':>5} {'Var(W)':>12} {'mean(y)':>12} {'std(y)':>12} {'mean f(y)':>12} "
        f"{'std f(y)':>12}",
    ]
    for i in range(len(shown.std)):
        row = (shown.weight_var[i], shown.mean[i], shown.std[i], shown.act_mean[i],
               shown.act_std[i])
        lines.append(f"  {i + 1:>5} " + " ".join(f"{x:>12.4g}" for x in row))
    last = ", ".join(f"{s.init} {s.std[-1]:.4g}" for s in report.simulations)
    lines.append(f"  last layer std(y) by init: {last}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# LaTeX and JSON


_LATEX_NAMES = {
    "E[f(z)]": r"\mathbb{E}[f(z)]",
    "E[f(z)²]": r"\mathbb{E}[f(z)^2]",
    "Var f(z)": r"\operatorname{Var} f(z)",
    "E[f′(z)²]": r"\mathbb{E}[f'(z)^2]",
    "Var(W) fan_in": r"\operatorname{Var}(W)_{\text{fan\_in}}",
    "Var(W) fan_out": r"\operatorname{Var}(W)_{\text{fan\_out}}",
    "Var(W) glorot": r"\operatorname{Var}(W)_{\text{Glorot}}",
    "gain": r"\text{gain}",
    "normal std": r"\text{std}",
    "uniform bound": r"\text{bound}",
}


def _latex_line(q: v.Quantity) -> str:
    name = _LATEX_NAMES.get(q.name, sympy.latex(sympy.Symbol(q.name)))
    formula = sympy.latex(q.expr) if q.exact else _num(q.value)
    return rf"{name} &= {formula} \approx {_num(q.value)} && \text{{{_kind(q).strip()}}}"


def render_latex(report: Report) -> str:
    """An align* block: parameters, moments and init."""
    quantities = [*(report.fixed.solution.values() if report.fixed else ()),
                  *report.moments.all(), *report.init.all()]
    body = " \\\\\n".join(_latex_line(q) for q in quantities)
    header = f"% f(z) = {report.act.display}, z ~ N(0, sigma^2), sigma = {report.moments.sigma}"
    return f"{header}\n\\begin{{align*}}\nf(z) &= {sympy.latex(report.act.expr)} \\\\\n{body}\n" \
           "\\end{align*}\n"


def _json_quantity(q: v.Quantity) -> dict[str, Any]:
    value = None if math.isnan(q.value) else q.value
    return {"expr": _expr(q.expr), "value": value, "exact": q.exact}


_MOMENT_KEYS = ("mean", "second_moment", "variance", "grad_second_moment")
_INIT_KEYS = ("fan_in", "fan_out", "glorot", "gain", "normal_std", "uniform_bound")


def render_json(report: Report) -> str:
    """Each quantity as {expr, value, exact}."""
    act, c = report.act, report.centring
    document = {
        "activation": {
            "input": report.text,
            "display": act.display,
            "expr": _expr(act.expr),
            "parameters": {str(p): float(x.evalf(17)) for p, x in act.values.items()},
        },
        "sigma": report.moments.sigma,
        "moments": dict(zip(_MOMENT_KEYS, map(_json_quantity, report.moments.all()),
                            strict=True)),
        "init": {"n_in": report.init.n_in, "n_out": report.init.n_out,
                 **dict(zip(_INIT_KEYS, map(_json_quantity, report.init.all()), strict=True))},
        "centring": {"centred": c.centred, "mean": _json_quantity(c.mean),
                     "shift": _json_quantity(c.shift), "offset_fraction": c.offset_fraction},
        "torch_gains": [_json_gain(row) for row in report.gains],
        "fixed_point": _json_fixed(report.fixed),
        "simulation": [_json_simulation(s) for s in report.simulations] or None,
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _json_gain(row: v.GainRow) -> dict[str, Any]:
    return {"nonlinearity": row.name, "torch": _json_quantity(row.torch),
            "forward": _json_quantity(row.forward), "backward": _json_quantity(row.backward),
            "note": row.note}


def _json_fixed(fixed: v.FixedPoint | None) -> dict[str, Any] | None:
    if fixed is None:
        return None
    return {"conditions": list(fixed.conditions),
            "solution": {name: _json_quantity(q) for name, q in
                         ((str(p), q) for p, q in fixed.solution.items())}}


def _json_simulation(sim: v.Simulation) -> dict[str, Any]:
    def floats(a: Any) -> list[float | None]:
        return [float(x) if math.isfinite(x) else None for x in a]

    return {"init": sim.init, "weight_var": floats(sim.weight_var), "mean": floats(sim.mean),
            "std": floats(sim.std), "act_mean": floats(sim.act_mean),
            "act_std": floats(sim.act_std)}


RENDERERS = {"text": render_text, "latex": render_latex, "json": render_json}
