"""Instruction prior: frozen instruction embeddings, trained prior over atoms (SPEC §3.6, §4).

Mirror of `qlora_np/prior.py`. The built-in hashed n-gram embedder is the NumPy side's
(`embed_instructions`, re-exported here), so the same text gives the same vector in both.
For an LLM, `mean_pooled_embeddings` gives the default embedding of SPEC §4: the base model's
frozen input embeddings, mean-pooled over the instruction's tokens.

state_dict names of `InstructionPrior`: `weight` (N, d_e), `bias` (N,); registered as `prior`
in a model, giving the canonical `prior.weight`, `prior.bias`.
"""

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
