"""The playground behind ``matcalc serve``: one local page that derives as you type.

The server is the standard library's ``ThreadingHTTPServer``. Each request (a program, the
variables ticked, a view) is answered by one worker process, which is killed and restarted past
a time limit, so that a hostile program can neither hang nor exhaust the server. Programs are
parsed, never evaluated; the page reads no files; bodies over ``MAX_BODY`` bytes are refused.
LaTeX becomes MathML on the server (``latex2mathml``, the ``web`` extra), so the browser renders
it natively and the page needs no external asset.
"""

from __future__ import annotations

import json
import multiprocessing
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from matcalc.errors import MatcalcError
from matcalc.forms.rendering import mathml

MAX_BODY = 100_000
"""Request bodies larger than this (bytes) are refused (413)."""
TIME_LIMIT = 10.0
"""Seconds a request may take before its worker is killed."""
READ_TIMEOUT = 10.0
"""Seconds a client may take to send its request before the connection is closed."""
VIEWS = ("variables", "derivative", "steps", "differential", "hessian", "hvp", "numpy",
         "torch", "check", "init")
ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid", "gelu", "silu", "selu", "softplus")
BUILT_IN = {
    "mlp": "X: [N, D]; Y: [N, C] onehot   # a batch of inputs and one-hot targets\n"
           "W1: [D, H]; b1: [H]\nW2: [H, C]; b2: [C]\nZ1 = X @ W1 + b1\nH1 = relu(Z1)\n"
           "Z2 = H1 @ W2 + b2\nL = softmax_cross_entropy(Z2, Y)\n",
    "quadratic form": "x: [n]; A: [n, n]\nf = x @ A @ x\n",
    "logistic regression": "X: [N, D]; y: [N]; w: [D]; lam: []\np = sigmoid(X @ w)\n"
                           "L = -mean(y * log(p) + (1 - y) * log(1 - p)) + lam / 2 * sum(w ** 2)\n",
}
"""Programs the menu offers when the examples/ directory is not beside the package."""


def examples() -> dict[str, str]:
    """The programs of the examples/ directory (a source checkout), else the built-in ones."""
    folder = Path(__file__).resolve().parents[2] / "examples"
    found = {p.stem: p.read_text() for p in sorted(folder.glob("*.mc"))} if folder.is_dir() else {}
    return found or dict(BUILT_IN)


# ----------------------------------------------------------------------------------------------
# Answers (in the worker process)


def answer(request: dict[str, Any]) -> dict[str, Any]:
    """One request, ``{"source", "wrt", "view", "target", "activation"}``, answered as
    ``{"ok": True, "text", "math", "code", "variables"}`` (what the view has) or ``{"ok": False,
    "error"}`` with the one-paragraph message the command line prints."""
    try:
        view = request.get("view", "derivative")
        if view not in VIEWS:
            raise MatcalcError(f"unknown view {view!r}")
        return {"ok": True, **VIEW_ANSWERS[view](request)}
    except MatcalcError as err:
        return {"ok": False, "error": str(err)}
    except RecursionError:
        return {"ok": False, "error": "error: the program is nested too deeply to differentiate"}
    except Exception as bug:                   # the page shows it; the server goes on
        return {"ok": False, "error": f"internal error in matcalc ({type(bug).__name__}: "
                                      f"{bug}). This is a bug, not your input."}


def program_of(request: dict[str, Any]):
    from matcalc.language.lowering import parse
    source = request.get("source", "")
    if not isinstance(source, str):
        raise MatcalcError("the program must be text")
    return parse(source)


def wrt_of(request: dict[str, Any]) -> list[str]:
    """The ticked variables: a list of names, each once."""
    wrt = request.get("wrt") or []
    if not isinstance(wrt, list) or not all(isinstance(w, str) for w in wrt):
        raise MatcalcError("`wrt` must be a list of variable names")
    if not wrt:
        raise MatcalcError("tick at least one variable to differentiate with respect to")
    return list(dict.fromkeys(wrt))


def variables_view(request: dict[str, Any]) -> dict[str, Any]:
    program = program_of(request)
    return {"variables": list(program.variables), "intermediates": list(program.intermediates)}


def derivation_view(steps: bool = False, differential: bool = False
                    ) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def view(request: dict[str, Any]) -> dict[str, Any]:
        from matcalc.forms.derivation import derivative
        result = derivative(program_of(request), wrt_of(request), steps, differential)
        return {"text": result.text(), "math": mathml(result.latex())}
    return view


def hessian_view(direction: bool) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def view(request: dict[str, Any]) -> dict[str, Any]:
        from matcalc.forms.derivation import hessian
        program, wrt = program_of(request), wrt_of(request)
        if len(wrt) != 1:
            raise MatcalcError(f"a Hessian is with respect to one variable; {', '.join(wrt)} "
                               "are ticked (tick one)")
        names = {*program.variables, *program.intermediates, *map(str, program.dims)}
        v = next(f"v{k}" if k else "v" for k in range(len(names) + 1)
                 if (f"v{k}" if k else "v") not in names)
        result = hessian(program, wrt[0], direction=v if direction else None)
        return {"text": result.text(), "math": mathml(result.latex())}
    return view


def code_view(target: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def view(request: dict[str, Any]) -> dict[str, Any]:
        from matcalc.forms.generated import generate
        return {"code": generate(program_of(request), wrt_of(request), target)}
    return view


def check_view(request: dict[str, Any]) -> dict[str, Any]:
    from matcalc.proofs.testing import check_gradient
    report = check_gradient(program_of(request), wrt_of(request))
    return {"text": report.text(), "passed": report.passed}


def init_view(request: dict[str, Any]) -> dict[str, Any]:
    from matcalc.applications.variance_report import RENDERERS, build_report
    activation = request.get("activation", "relu")
    if activation not in ACTIVATIONS:
        raise MatcalcError(f"choose an activation among {', '.join(ACTIVATIONS)}")
    options = {"sigma": 1.0, "fixed_point": False, "simulate": False, "layers": 21,
               "width": 50, "fan_in": 784, "init": "derived", "batch": 1000, "seed": 0,
               "plot": None}
    return {"text": RENDERERS["text"](build_report(activation, {}, options))}


VIEW_ANSWERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "variables": variables_view, "derivative": derivation_view(),
    "steps": derivation_view(steps=True), "differential": derivation_view(differential=True),
    "hessian": hessian_view(False), "hvp": hessian_view(True), "numpy": code_view("numpy"),
    "torch": code_view("torch"), "check": check_view, "init": init_view,
}


def serve_requests(connection) -> None:
    """The worker: answer each request that arrives on ``connection`` until it closes."""
    try:
        while True:
            connection.send(answer(connection.recv()))
    except (EOFError, KeyboardInterrupt, BrokenPipeError):
        return


SUPERSEDED = {"ok": False, "superseded": True,
              "error": "error: a newer request replaced this one before it was answered"}


class Worker:
    """One process answering requests in turn, killed and replaced past ``seconds``. The
    newest request wins: one arriving while another is worked on stops that work (the page has
    moved on), so that a slow program never holds up the next."""

    def __init__(self, seconds: float = TIME_LIMIT) -> None:
        self.seconds = seconds
        self.lock = threading.Lock()
        self.guard = threading.Lock()
        self.latest = 0
        self.busy = False
        self.context = multiprocessing.get_context("spawn")
        self.start()

    def start(self) -> None:
        """A fresh process (under ``guard``, so that no newer request kills it half-made)."""
        with self.guard:
            self.connection, child = self.context.Pipe()
            self.process = self.context.Process(target=serve_requests, args=(child,),
                                                daemon=True)
            self.process.start()
            self.killed = False

    def restart(self) -> None:
        """Kill the process, wait until it is gone, and start a fresh one."""
        self.process.kill()
        self.process.join()
        self.start()

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        with self.guard:
            self.latest += 1
            ticket = self.latest
            if self.busy:
                self.process.kill()            # the older request's answer is not wanted
                self.killed = True
        with self.lock:
            if ticket != self.latest:
                return SUPERSEDED
            if self.killed or not self.process.is_alive():
                self.restart()                 # a killed process may still look alive
            self.busy = True
            try:
                return self.answer_within(request)
            finally:
                self.busy = False

    def answer_within(self, request: dict[str, Any]) -> dict[str, Any]:
        """Send ``request``; its answer, or an error past the time limit (the worker killed)."""
        try:
            self.connection.send(request)
            if self.connection.poll(self.seconds):
                return self.connection.recv()
        except (EOFError, OSError):            # killed for a newer request, before or after
            return SUPERSEDED
        self.restart()
        return {"ok": False, "error": f"error: no answer within {self.seconds:g} s; matcalc "
                                      "stopped working on this program (try smaller steps, "
                                      "or the command line without a time limit)"}

    def close(self) -> None:
        self.process.kill()


# ----------------------------------------------------------------------------------------------
# The server (in the main process)


def handler(worker: Worker) -> type[BaseHTTPRequestHandler]:
    """A request handler bound to ``worker``: GET / is the page, GET /examples the menu,
    POST /api an answer."""
    from matcalc.applications.playground_page import PAGE

    class Handler(BaseHTTPRequestHandler):
        timeout = READ_TIMEOUT       # a client that sends less than its Content-Length is dropped

        def log_message(self, *args: Any) -> None:      # quiet: the terminal shows the URL
            pass

        def send(self, status: int, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Security-Policy", "default-src 'self'; "
                             "script-src 'unsafe-inline'; style-src 'unsafe-inline'")
            self.end_headers()
            self.wfile.write(body)

        def send_json(self, status: int, data: dict[str, Any]) -> None:
            self.send(status, json.dumps(data).encode(), "application/json")

        def do_GET(self) -> None:
            if self.path == "/":
                self.send(200, PAGE.encode(), "text/html; charset=utf-8")
            elif self.path == "/examples":
                self.send_json(200, examples())
            else:
                self.send_json(404, {"ok": False, "error": "not found"})

        def do_POST(self) -> None:
            if self.path != "/api":
                self.send_json(404, {"ok": False, "error": "not found"})
                return
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                length = -1
            if length < 0:
                self.send_json(411, {"ok": False, "error": "error: a request needs a "
                                                           "Content-Length"})
                return
            if length > MAX_BODY:
                self.send_json(413, {"ok": False, "error": f"error: requests are limited to "
                                                           f"{MAX_BODY // 1000} kB"})
                return
            try:
                request = json.loads(self.rfile.read(length) or b"{}")
            except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):   # [[[…]]]
                request = None
            if not isinstance(request, dict):
                self.send_json(400, {"ok": False, "error": "error: the request is not JSON"})
                return
            self.send_json(200, worker.ask(request))

    return Handler


def make_server(host: str = "127.0.0.1", port: int = 8000, seconds: float = TIME_LIMIT
                ) -> tuple[ThreadingHTTPServer, Worker]:
    """The server and its worker, not yet serving (``server.serve_forever()``)."""
    worker = Worker(seconds)
    server = ThreadingHTTPServer((host, port), handler(worker))
    server.daemon_threads = True
    return server, worker
