"""Train examples/mlp.mc on the UCI handwritten digits with matcalc.training.train.

Every step calls only code matcalc generated from the program: `value_and_grad` for the
minibatch gradients, `value` for the test loss, and the logits Z2 for test accuracy. The
weights start from the init matcalc derives for each layer's input (`matcalc init relu`:
Var(W2) = 2/n after a ReLU, 1/n for the standardised pixels).
Same as: matcalc train examples/mlp.mc --wrt W1 --wrt b1 --wrt W2 --wrt b2 --data digits
Run: python examples/train_digits.py   (needs scikit-learn: pip install 'matcalc[train]')
"""

import importlib.util
from pathlib import Path

from matcalc.training import History, train

if importlib.util.find_spec("sklearn") is None:
    print("skipped: this example needs scikit-learn (pip install 'matcalc[train]')")
    raise SystemExit(0)


def show(history: History) -> None:
    """Print the set-up before epoch 0, then one line per epoch."""
    if len(history.epochs) == 1:
        print(history.header())
    print(history.final.row())


history = train(Path(__file__).with_name("mlp.mc"), ["W1", "b1", "W2", "b2"], "digits",
                epochs=10, on_epoch=show)
print(history.summary())
assert history.final.accuracy > 0.95
