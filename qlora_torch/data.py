"""A generated, seeded instruction suite for fine-tuning (string, list and arithmetic tasks).

Every task type has a generator of (input, output) pairs and several paraphrased instructions.
The suite is split so that an adapter is tested on what it cannot have memorised:

    train             training task types, training paraphrases, training inputs
    heldout_examples  training task types and paraphrases, inputs never seen in training
    heldout_phrasing  training task types, a paraphrase never seen in training
    heldout_task      a task type never seen in training (all its paraphrases)

The same seed gives the same suite on every machine (Python's `random.Random`, no hashing of
strings). Outputs are short and exact, so exact match is a fair metric.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

WORDS = ("apple garden river window silver candle forest rocket planet butter yellow monkey "
         "pencil orange bridge winter summer castle dragon marble jacket violin tiger lemon "
         "cloud stone paper market basket carpet mirror ladder button rabbit pocket kitten "
         "wallet anchor helmet island meadow").split()
COLORS = "red green blue black white pink brown gray gold purple".split()


def _made_up_word(rng):
    """Two or three consonant-vowel syllables ("bako", "tirune"): never memorised as a token."""
    return "".join(rng.choice("bdfgklmnprstvz") + rng.choice("aeiou")
                   for _ in range(rng.randint(2, 3)))


def _numbers(rng, lo=3, hi=5, top=9):
    return [rng.randint(0, top) for _ in range(rng.randint(lo, hi))]


def _join(xs):
    return " ".join(str(x) for x in xs)


def _word_list(rng, lo=3, hi=5):
    return rng.sample(WORDS, rng.randint(lo, hi))


# Each task: a generator rng -> (input, output), and paraphrases (the last one is held out).
TASKS = {
    "reverse_word": (
        lambda rng: (lambda w: (w, w[::-1]))(_made_up_word(rng)),
        ["Reverse the letters of the word.", "Write the word backwards.",
         "Spell this word in reverse order.", "Give the word with its letters reversed."]),
    "uppercase": (
        lambda rng: (lambda ws: (ws, ws.upper()))(" ".join(_word_list(rng, 2, 3))),
        ["Write the text in capital letters.", "Convert the text to uppercase.",
         "Rewrite this in all caps.", "Change every letter to upper case."]),
    "sort_numbers": (
        lambda rng: (lambda xs: (_join(xs), _join(sorted(xs))))(_numbers(rng)),
        ["Sort the numbers from smallest to largest.", "Put the numbers in ascending order.",
         "Arrange these numbers in increasing order.", "Order the numbers, lowest first."]),
    "sum_numbers": (
        lambda rng: (lambda xs: (_join(xs), str(sum(xs))))(_numbers(rng, 2, 4)),
        ["Add up the numbers.", "What is the sum of these numbers?",
         "Compute the total of the numbers.", "Give the sum of the list."]),
    "max_number": (
        lambda rng: (lambda xs: (_join(xs), str(max(xs))))(_numbers(rng, 3, 6, 99)),
        ["Which number is the largest?", "Give the biggest number in the list.",
         "Find the maximum of these numbers.", "Return the highest value."]),
    "count_items": (
        lambda rng: (lambda ws: (", ".join(ws), str(len(ws))))(_word_list(rng, 2, 7)),
        ["How many items are in the list?", "Count the items.",
         "Tell me the number of words in the list.", "How many things are listed?"]),
    "first_letters": (
        lambda rng: (lambda ws: (" ".join(ws), "".join(w[0] for w in ws)))(_word_list(rng)),
        ["Write the first letter of each word.", "Join the initial letters of the words.",
         "Make an acronym from the first letters.", "Take the first letter of every word."]),
    "add_one": (
        lambda rng: (lambda xs: (_join(xs), _join(x + 1 for x in xs)))(_numbers(rng, 3, 5, 20)),
        ["Add one to each number.", "Increase every number by 1.",
         "Increment each number in the list.", "Make every number one bigger."]),
    "last_color": (
        lambda rng: (lambda ws: (" ".join(ws), ws[-1]))(rng.sample(COLORS, rng.randint(3, 5))),
        ["What is the last word of the list?", "Give the final word.",
         "Which word comes last?", "Return the word at the end of the list."]),
    # Held out as a whole task type: composes skills of reverse_word and last_color.
    "reverse_list": (
        lambda rng: (lambda ws: (" ".join(ws), " ".join(ws[::-1])))(_word_list(rng, 3, 4)),
        ["Reverse the order of the words.", "Write the words from last to first.",
         "List the words backwards, keeping each word intact.",
         "Put the words in reverse order."]),
}
HELDOUT_TASK = "reverse_list"
SPLITS = ("train", "heldout_examples", "heldout_phrasing", "heldout_task")


@dataclass(frozen=True)
class Example:
    task: str
    instruction: str
    input: str
    output: str


def make_suite(n_train=1600, n_eval=48, seed=0):
    """The four splits (see the module docstring): a dict split -> list of `Example`."""
    rng = random.Random(seed)
    train_tasks = [t for t in TASKS if t != HELDOUT_TASK]
    seen = set()

    def draw(task, paraphrases, avoid_seen):
        gen = TASKS[task][0]
        for _ in range(1000):
            x, y = gen(rng)
            if not (avoid_seen and (task, x) in seen):
                return Example(task, rng.choice(paraphrases), x, y)
        raise RuntimeError(f"task {task}: could not draw an unseen input")

    train = []
    for i in range(n_train):
        task = train_tasks[i % len(train_tasks)]
        ex = draw(task, TASKS[task][1][:-1], avoid_seen=False)
        seen.add((task, ex.input))
        train.append(ex)
    rng.shuffle(train)
    suite = {"train": train, "heldout_examples": [], "heldout_phrasing": [], "heldout_task": []}
    for i in range(n_eval):
        task = train_tasks[i % len(train_tasks)]
        suite["heldout_examples"].append(draw(task, TASKS[task][1][:-1], avoid_seen=True))
        suite["heldout_phrasing"].append(draw(task, TASKS[task][1][-1:], avoid_seen=True))
        suite["heldout_task"].append(draw(HELDOUT_TASK, TASKS[HELDOUT_TASK][1],
                                          avoid_seen=False))
    return suite


def prompt_text(ex):
    """The chat-formatted prompt (no system prompt, to keep sequences short)."""
    return (f"<|im_start|>user\n{ex.instruction}\nInput: {ex.input}<|im_end|>\n"
            "<|im_start|>assistant\n")


def answer_text(ex, eos="<|im_end|>"):
    return ex.output + eos
