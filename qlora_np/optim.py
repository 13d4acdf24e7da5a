"""Adam (Kingma & Ba, 2015) over a flat parameter dict, with optional decoupled weight decay.

autograd's own `autograd.misc.optimizers.adam` drives a whole loop through a callback; the
experiments need to interleave evaluation, checkpoints and early stopping, so this is the same
update as a small object that advances one step at a time. Pure in its inputs: `step` returns a new
dict and never writes into the arrays it was given.
"""

import numpy as np


class Adam:
    """Adam with bias correction; `weight_decay > 0` gives AdamW's decoupled decay.

    `decay_keys`: the parameter names that decay (default: all).
    """

    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
                 decay_keys=None):
        for name, value, lo, hi in (("lr", lr, 0, None), ("beta1", beta1, 0, 1),
                                    ("beta2", beta2, 0, 1), ("eps", eps, 0, None),
                                    ("weight_decay", weight_decay, 0, None)):
            if not np.isfinite(value) or value < lo or (hi is not None and value >= hi):
                raise ValueError(f"{name}: expected a finite number in [{lo}, {hi or 'inf'}), "
                                 f"got {value!r}")
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.weight_decay = weight_decay
        self.decay_keys = None if decay_keys is None else set(decay_keys)
        self.t = 0
        self.m = {}
        self.v = {}

    def step(self, params, grads):
        """One update: returns the new parameter dict."""
        self.t += 1
        c1 = 1.0 - self.beta1 ** self.t
        c2 = 1.0 - self.beta2 ** self.t
        new = {}
        for k, p in params.items():
            g = grads[k]
            m = self.beta1 * self.m.get(k, 0.0) + (1.0 - self.beta1) * g
            v = self.beta2 * self.v.get(k, 0.0) + (1.0 - self.beta2) * g * g
            self.m[k], self.v[k] = m, v
            update = self.lr * (m / c1) / (np.sqrt(v / c2) + self.eps)
            if self.weight_decay and (self.decay_keys is None or k in self.decay_keys):
                update = update + self.lr * self.weight_decay * p
            new[k] = p - update
        return new

    def state_dict(self):
        """Everything needed to resume: step count and moments."""
        return {"t": self.t, "m": dict(self.m), "v": dict(self.v)}
