"""The ``serve`` command: the playground page on a local port."""

from __future__ import annotations

import click

from matcalc.cli.common import reports_user_errors
from matcalc.errors import MatcalcError


@click.command("serve")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (127.0.0.1: this machine only).")
@click.option("--time-limit", type=click.FloatRange(min=0.1), default=10.0, show_default=True,
              help="Seconds a derivation may take before its worker is stopped.")
@reports_user_errors
def serve(port: int, host: str, time_limit: float) -> None:
    """A local playground page: type a program, tick variables, read the derivative typeset,
    the steps, Hessians, code, the check verdict and init."""
    from matcalc.applications.playground import make_server
    try:
        server, worker = make_server(host, port, time_limit)
    except OSError as err:
        raise MatcalcError(f"cannot listen on {host}:{port} ({err.strerror or err})",
                           hint="Choose another port with --port.") from None
    click.echo(f"matcalc playground at http://{host}:{server.server_address[1]}/ "
               "(Ctrl-C stops it)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        worker.close()
