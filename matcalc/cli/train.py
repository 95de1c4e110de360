"""`matcalc train SOURCE --wrt NAME ...`: minibatch SGD with the generated code, on real data."""

from __future__ import annotations

import click

from matcalc.applications import figures, training
from matcalc.applications.optimizers import OPTIMIZERS
from matcalc.applications.variance import INITS
from matcalc.cli.common import (
    PositiveNumber,
    Progress,
    declarations_option,
    finite_number,
    pairs,
    reports_user_errors,
    size,
    wrt_option,
)
from matcalc.language.syntax import identifier


def show_epoch(history: training.History) -> None:
    """The header before the first row, then one row per epoch."""
    if len(history.epochs) == 1:
        click.echo(history.header())
    click.echo(history.final.row())


@click.command("train")
@click.argument("source")
@wrt_option("Parameter to train (repeatable) [default: every declared variable that is not "
            "data].", required=False)
@declarations_option
@click.option("--data", default="digits", show_default=True,
              metavar="digits|blobs|sort|FILE.npz",
              help="digits: UCI handwritten digits (scikit-learn); blobs: the seeds' line-fit "
                   "points; sort: sequences of 6 digits and their sorted copy, next-token "
                   "labels (minGPT's demo); FILE.npz: arrays named after the data variables.")
@click.option("--x", "x", default=None, metavar="NAME",
              help="The input variable, one row per example [default: X, or the indices of "
                   "an embedding lookup take(E, tokens, axis=0)].")
@click.option("--y", "y", default=None, metavar="NAME",
              help="The target variable, one row per example [default: Y, or the targets of "
                   "softmax_cross_entropy].")
@click.option("--epochs", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--lr", type=PositiveNumber(), default=0.1,
              show_default=True, help="Learning rate.")
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default="sgd",
              show_default=True, help="sgd; momentum (0.9); adam (AdamW: β = 0.9, 0.999, with "
                                      "decoupled weight decay), each as PyTorch's; newton (one "
                                      "damped Newton step per epoch on all training rows, with "
                                      "the generated Hessian or Hessian-vector products).")
@click.option("--weight-decay", type=PositiveNumber(zero=True), default=None, metavar="LAMBDA",
              help="Decoupled weight decay of the matrix-product weights [default: 0.01 for "
                   "adam, as AdamW; 0 otherwise].")
@click.option("--batch", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the split, the initialisation and the shuffling.")
@click.option("--init", type=click.Choice(INITS), default="derived", show_default=True,
              help="Weight init; derived uses `matcalc init` for the input's activation.")
@click.option("--hidden", multiple=True, metavar="NAME=SIZE",
              help=f"A size the data do not set, e.g. --hidden H=128 [default: "
                   f"{training.DEFAULT_SIZE}].")
@click.option("--set", "constants", multiple=True, metavar="NAME=VALUE",
              help="A value for a scalar data variable, e.g. --set lam=0.001.")
@click.option("--plot", metavar="FILE.png", default=None,
              help="Save loss and accuracy per epoch to this PNG (needs matplotlib).")
@reports_user_errors
def train(source: str, wrt: tuple[str, ...], declarations: tuple[str, ...], data: str,
          x: str | None, y: str | None, epochs: int, lr: float, optimizer: str,
          weight_decay: float | None, batch: int, seed: int, init: str,
          hidden: tuple[str, ...], constants: tuple[str, ...], plot: str | None) -> None:
    """Train the --wrt parameters of SOURCE by minibatch SGD with matcalc's generated code.

    Declared variables not trained are data: the input --x and target --y (batch first, e.g.
    X: [N, D]; Y: [N, C]) and --set constants. Prints loss and, for
    softmax_cross_entropy(logits, Y), test accuracy per epoch.
    """
    sizes = pairs("--hidden", hidden, size, "NAME=SIZE", "SIZE must be a positive integer")
    values = pairs("--set", constants, finite_number)
    for flag, name in (("--x", x), ("--y", y)):
        if name is not None:
            identifier(name, flag)
    if plot is not None:
        figures.plot_target(plot)   # a bad --plot fails before the training
    bar = Progress("training")

    def show_batch(epoch: int, done: int, total: int, loss: float) -> None:
        bar.label = f"epoch {epoch}"
        bar.update(done, total, f"loss {loss:.4f}")

    def show_row(history: training.History) -> None:
        bar.close()
        show_epoch(history)

    try:
        history = training.train(
            source, wrt, data, x=x, y=y, epochs=epochs, lr=lr, batch=batch, seed=seed,
            init=init, hidden=sizes, constants=values, declarations=declarations,
            optimizer=optimizer, weight_decay=weight_decay, on_epoch=show_row,
            on_batch=show_batch)
    finally:
        bar.close()
    click.echo(f"final: {history.summary()}")
    if plot is not None:
        training.plot_history(history, plot)
        click.echo(f"wrote {plot}", err=True)
