"""The regression settings: seeded task generators (issue "CPU regression experiments").

Every task is a function of an explicit integer seed returning a dict of NumPy arrays:

    x_pretrain (n_p, d), y_pretrain (n_p, 1)   samples of the SOURCE function (base pretraining)
    x_train    (n, d),   y_train    (n, 1)     noisy samples of the TARGET function (fine-tuning)
    x_test     (m, d),   y_test     (m, 1)     clean (noise-free) target values on held-out inputs

Source and target differ in an input-dependent way: the change (frequency, phase, slope, offset)
is switched on by a smooth region indicator `r(u) = sigmoid(8 (u - c))`, so it differs between
regions. The region boundaries `c` are deliberately *not* at the origin: Queryable LoRA's first
block routes on the RMS-normalised state `z / rms(z)` with `z = A x`, which depends only on the
direction of `x` (for 1-D inputs: only on the sign of x). Regions that are cones through the origin
would hand it the answer for free.
The functions themselves are fixed constants; the seed draws the inputs, the noise and (through the
runner) the initialisations, so seeds are repeated experiments on the same problem. All randomness
comes from `np.random.default_rng(seed)`.

Settings:
  wave1d      1-D, homoscedastic noise sigma = 0.15 (the pilot's setting; used for fitted-curve plots)
  surface2d   2-D, heteroscedastic noise sigma(x) from 0.02 to 0.32 across the input square
  ridge5d     5-D, high homoscedastic noise sigma = 0.3
  instruct    multi-task: 12 targets from a parametric family, each with a natural-language
              instruction (6 paraphrases); 9 training tasks, 3 held-out tasks; extra splits for
              held-out paraphrases and held-out tasks
  continual   1-D target shown region by region (left, middle, right): domain-incremental
              learning, measuring forgetting of earlier regions and how atom usage shifts
"""

from __future__ import annotations

import functools

import numpy as np

REQUIRED_KEYS = ("x_pretrain", "y_pretrain", "x_train", "y_train", "x_test", "y_test")


def _sigmoid(u):
    return 1.0 / (1.0 + np.exp(-u))


def _region(u, c=0.0):
    """Smooth indicator of `u > c` (0 on the left, 1 on the right)."""
    return _sigmoid(8.0 * (u - c))


def _uniform(rng, n, d):
    return rng.uniform(-1.0, 1.0, size=(n, d))


def _check_sizes(**sizes):
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"task parameter '{name}': expected a positive integer, got {value!r}")


def _check_noise(noise):
    if not (isinstance(noise, (int, float)) and np.isfinite(noise) and noise >= 0):
        raise ValueError(f"task parameter 'noise': expected a finite number >= 0, got {noise!r}")


# --------------------------------------------------------------------------------------------
# wave1d: 1-D, homoscedastic noise
# --------------------------------------------------------------------------------------------
def wave1d_source(x):
    return np.sin(4.0 * x[:, :1])


def wave1d_target(x):
    """Left of 0.25: phase shift by 0.6. Right of 0.25: frequency 4 -> 6 and a slope 0.3 x."""
    u = x[:, :1]
    r = _region(u, 0.25)
    return (1 - r) * np.sin(4.0 * u + 0.6) + r * (np.sin(6.0 * u) + 0.3 * u)


def wave1d(seed, n_train=1000, noise=0.15, n_pretrain=2000, n_test=400):
    """1-D task; `x_test` is an even grid on [-1, 1] so fitted curves can be drawn."""
    _check_sizes(n_train=n_train, n_pretrain=n_pretrain, n_test=n_test)
    _check_noise(noise)
    rng = np.random.default_rng(seed)
    x_p = _uniform(rng, n_pretrain, 1)
    x_tr = _uniform(rng, n_train, 1)
    x_te = np.linspace(-1.0, 1.0, n_test)[:, None]
    return {
        "x_pretrain": x_p, "y_pretrain": wave1d_source(x_p),
        "x_train": x_tr, "y_train": wave1d_target(x_tr) + noise * rng.standard_normal((n_train, 1)),
        "x_test": x_te, "y_test": wave1d_target(x_te),
    }


# --------------------------------------------------------------------------------------------
# surface2d: 2-D, heteroscedastic noise
# --------------------------------------------------------------------------------------------
def surface2d_source(x):
    return np.sin(3.0 * x[:, :1]) * np.cos(2.0 * x[:, 1:2])


def surface2d_target(x):
    """Phase of the x1 wave shifts where x2 > -0.3; frequency of the x2 wave rises where
    x1 > 0.2; a tilt appears where both hold."""
    x1, x2 = x[:, :1], x[:, 1:2]
    r1, r2 = _region(x1, 0.2), _region(x2, -0.3)
    return (np.sin(3.0 * x1 + 0.8 * r2) * np.cos((2.0 + 1.5 * r1) * x2)
            + 0.4 * r1 * r2 * (x1 - x2))


def surface2d_noise_std(x):
    """Heteroscedastic noise: sigma grows from 0.02 (x1 = -1) to 0.32 (x1 = 1)."""
    return 0.02 + 0.3 * ((x[:, :1] + 1.0) / 2.0) ** 2


def surface2d(seed, n_train=1000, noise_scale=1.0, n_pretrain=2000, n_test=1000):
    _check_sizes(n_train=n_train, n_pretrain=n_pretrain, n_test=n_test)
    _check_noise(noise_scale)
    rng = np.random.default_rng(seed)
    x_p, x_tr, x_te = (_uniform(rng, n, 2) for n in (n_pretrain, n_train, n_test))
    eps = rng.standard_normal((n_train, 1))
    return {
        "x_pretrain": x_p, "y_pretrain": surface2d_source(x_p),
        "x_train": x_tr,
        "y_train": surface2d_target(x_tr) + noise_scale * surface2d_noise_std(x_tr) * eps,
        "x_test": x_te, "y_test": surface2d_target(x_te),
    }


# --------------------------------------------------------------------------------------------
# ridge5d: 5-D, high homoscedastic noise
# --------------------------------------------------------------------------------------------
_W5 = np.array([1.2, -0.8, 0.5, 0.9, -0.4])   # fixed ridge directions (not seed-dependent)
_V5 = np.array([-0.3, 0.7, 1.0, -0.6, 0.8])


def ridge5d_source(x):
    return np.sin(1.5 * x @ _W5)[:, None] + 0.5 * np.tanh(2.0 * x @ _V5)[:, None]


def ridge5d_target(x):
    """Where x0 > 0.25 the first ridge speeds up (1.5 -> 2.5) and the second one flips its
    slope; where x2 > -0.2 the first ridge's phase shifts by 0.7."""
    r0, r2 = _region(x[:, 0], 0.25), _region(x[:, 2], -0.2)
    a = np.sin((1.5 + r0) * (x @ _W5) + 0.7 * r2)
    b = 0.5 * (1.0 - 2.0 * r0) * np.tanh(2.0 * x @ _V5)
    return (a + b)[:, None]


def ridge5d(seed, n_train=2000, noise=0.3, n_pretrain=3000, n_test=1000):
    _check_sizes(n_train=n_train, n_pretrain=n_pretrain, n_test=n_test)
    _check_noise(noise)
    rng = np.random.default_rng(seed)
    x_p, x_tr, x_te = (_uniform(rng, n, 5) for n in (n_pretrain, n_train, n_test))
    return {
        "x_pretrain": x_p, "y_pretrain": ridge5d_source(x_p),
        "x_train": x_tr, "y_train": ridge5d_target(x_tr) + noise * rng.standard_normal((n_train, 1)),
        "x_test": x_te, "y_test": ridge5d_target(x_te),
    }


# --------------------------------------------------------------------------------------------
# instruct: multi-task instruction setting
# --------------------------------------------------------------------------------------------
# A task is (side, kind, sign): on one side of x = 0.3 the source wave sin(4x) is changed by
#   kind "frequency": sin((4 +- 2) x)   kind "phase": sin(4x +- 0.8)   kind "offset": sin(4x) +- 0.4
# 2 sides x 3 kinds x 2 signs = 12 tasks. Held-out tasks are fixed so that every parameter value
# still appears in training (a compositional split); they are never used for tuning.
SIDES = ("left", "right")
KINDS = ("frequency", "phase", "offset")
SIGNS = (+1, -1)
INSTRUCT_TASKS = tuple((s, k, g) for s in SIDES for k in KINDS for g in SIGNS)
HELD_OUT_TASKS = (("right", "frequency", +1), ("left", "offset", -1), ("right", "phase", -1))
TRAIN_TASKS = tuple(t for t in INSTRUCT_TASKS if t not in HELD_OUT_TASKS)

_OPS = {  # (kind, sign) -> several phrasings of the operation, used in turn by the templates
    ("frequency", +1): ("increase the frequency by 2", "make the wave oscillate faster",
                        "raise the frequency from 4 to 6"),
    ("frequency", -1): ("decrease the frequency by 2", "make the wave oscillate slower",
                        "lower the frequency from 4 to 2"),
    ("phase", +1): ("shift the phase forward by 0.8", "advance the phase by 0.8",
                    "add 0.8 to the phase"),
    ("phase", -1): ("shift the phase backward by 0.8", "delay the phase by 0.8",
                    "subtract 0.8 from the phase"),
    ("offset", +1): ("raise the curve by 0.4", "move the curve up by 0.4", "add 0.4 to the output"),
    ("offset", -1): ("lower the curve by 0.4", "move the curve down by 0.4",
                     "subtract 0.4 from the output"),
}
INSTRUCT_CUT = 0.3   # the boundary between the "left" and "right" sides
_SIDE_WORDS = {"left": ("below", "smaller than", "<", "above"),
               "right": ("above", "larger than", ">", "below")}
# Paraphrase templates: 0-3 are used in training, 4-5 only in the held-out-paraphrase split.
_TEMPLATES = (
    "{Op} for x {side} 0.3.",
    "For inputs {sign} 0.3, {op}.",
    "Only where x is {sign} 0.3, {op}.",
    "{Op} where x is {side} 0.3 and leave the rest unchanged.",
    "Apply this change where x {cmp} 0.3: {op}.",
    "Leave everything {other} 0.3 alone and {op} {side} it.",
)
TRAIN_TEMPLATES = (0, 1, 2, 3)
HELD_OUT_TEMPLATES = (4, 5)


def instruction_text(task, template):
    """The natural-language instruction of `task = (side, kind, sign)` in paraphrase `template`."""
    side, kind, sign = task
    op = _OPS[(kind, sign)][template % 3]
    word, sign_word, cmp, other = _SIDE_WORDS[side]
    return _TEMPLATES[template].format(Op=op[0].upper() + op[1:], op=op, side=word,
                                       sign=sign_word, cmp=cmp, other=other)


def instruct_target(x, task):
    side, kind, sign = task
    u = x[:, :1]
    r = _region(u, INSTRUCT_CUT) if side == "right" else 1.0 - _region(u, INSTRUCT_CUT)
    if kind == "frequency":
        changed = np.sin((4.0 + 2.0 * sign) * u)
    elif kind == "phase":
        changed = np.sin(4.0 * u + 0.8 * sign)
    else:
        changed = np.sin(4.0 * u) + 0.4 * sign
    return (1 - r) * np.sin(4.0 * u) + r * changed


def _instruct_split(rng, tasks, templates, n_per_task, noise):
    xs, ys, texts, ids = [], [], [], []
    for task in tasks:
        x = _uniform(rng, n_per_task, 1)
        y = instruct_target(x, task)
        if noise:
            y = y + noise * rng.standard_normal(y.shape)
        xs.append(x)
        ys.append(y)
        tpl = rng.choice(np.asarray(templates), size=n_per_task)
        texts.extend(instruction_text(task, int(t)) for t in tpl)
        ids.append(np.full(n_per_task, INSTRUCT_TASKS.index(task)))
    return np.concatenate(xs), np.concatenate(ys), texts, np.concatenate(ids)


def instruct(seed, n_per_task=200, noise=0.1, n_pretrain=2000, n_test_per_task=200):
    """Multi-task instruction setting. Besides the required keys it returns
    `instructions_train/test` (one string per row), `task_ids_train/test` (index into
    INSTRUCT_TASKS, for the one-LoRA-per-task oracle), and two extra clean test splits,
    `*_test_paraphrase` (training tasks, unseen paraphrases) and `*_test_heldout` (unseen tasks).
    `x_test` holds held-out inputs of the training tasks with training paraphrases."""
    _check_sizes(n_per_task=n_per_task, n_pretrain=n_pretrain, n_test_per_task=n_test_per_task)
    _check_noise(noise)
    rng = np.random.default_rng(seed)
    x_p = _uniform(rng, n_pretrain, 1)
    out = {"x_pretrain": x_p, "y_pretrain": wave1d_source(x_p)}
    splits = (("train", TRAIN_TASKS, TRAIN_TEMPLATES, n_per_task, noise),
              ("test", TRAIN_TASKS, TRAIN_TEMPLATES, n_test_per_task, 0.0),
              ("test_paraphrase", TRAIN_TASKS, HELD_OUT_TEMPLATES, n_test_per_task, 0.0),
              ("test_heldout", HELD_OUT_TASKS, TRAIN_TEMPLATES + HELD_OUT_TEMPLATES,
               n_test_per_task, 0.0))
    for name, tasks, templates, n, sd in splits:
        x, y, texts, ids = _instruct_split(rng, tasks, templates, n, sd)
        out[f"x_{name}"], out[f"y_{name}"] = x, y
        out[f"instructions_{name}"], out[f"task_ids_{name}"] = texts, ids
    return out


# --------------------------------------------------------------------------------------------
# continual: the target arrives region by region
# --------------------------------------------------------------------------------------------
CONTINUAL_REGIONS = ((-1.0, -1.0 / 3.0), (-1.0 / 3.0, 1.0 / 3.0), (1.0 / 3.0, 1.0))


def continual_target(x):
    """Three different changes in three regions: phase shift (left), frequency (middle),
    offset and slope (right)."""
    u = x[:, :1]
    left, right = 1.0 - _region(u, -1 / 3), _region(u, 1 / 3)
    mid = 1.0 - left - right
    return (left * np.sin(4.0 * u + 0.9) + mid * np.sin(7.0 * u)
            + right * (np.sin(4.0 * u) + 0.5 - 0.5 * u))


def continual(seed, n_train_per_stage=400, noise=0.1, n_pretrain=2000, n_test_per_stage=200):
    """Domain-incremental setting: stage s shows only inputs from CONTINUAL_REGIONS[s].
    Returns the required keys (training data = all stages, test = all regions) and `stages`,
    a list of dicts with `x_train, y_train, x_test, y_test` per stage, trained in order."""
    _check_sizes(n_train_per_stage=n_train_per_stage, n_pretrain=n_pretrain,
                 n_test_per_stage=n_test_per_stage)
    _check_noise(noise)
    rng = np.random.default_rng(seed)
    x_p = _uniform(rng, n_pretrain, 1)
    stages = []
    for lo, hi in CONTINUAL_REGIONS:
        x_tr = rng.uniform(lo, hi, size=(n_train_per_stage, 1))
        x_te = rng.uniform(lo, hi, size=(n_test_per_stage, 1))
        stages.append({
            "x_train": x_tr,
            "y_train": continual_target(x_tr) + noise * rng.standard_normal((n_train_per_stage, 1)),
            "x_test": x_te, "y_test": continual_target(x_te),
        })
    cat = lambda key: np.concatenate([s[key] for s in stages])
    return {"x_pretrain": x_p, "y_pretrain": wave1d_source(x_p),
            "x_train": cat("x_train"), "y_train": cat("y_train"),
            "x_test": cat("x_test"), "y_test": cat("y_test"), "stages": stages}


# --------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------
BUILTIN = {"wave1d": wave1d, "surface2d": surface2d, "ridge5d": ridge5d,
           "instruct": instruct, "continual": continual}
KIND = {"wave1d": "single", "surface2d": "single", "ridge5d": "single",
        "instruct": "instruction", "continual": "continual"}


def make_task(name, **params):
    """A task function `seed -> dict` for built-in `name` with its size/noise `params` fixed."""
    if name not in BUILTIN:
        raise ValueError(f"task: expected one of {sorted(BUILTIN)}, got {name!r}")
    return functools.partial(BUILTIN[name], **params)
