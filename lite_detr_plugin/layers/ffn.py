"""Feed-forward blocks of the encoder layers."""
import torch
from torch import nn


class FFN(nn.Module):
    """``x + dropout(fc2(dropout(relu(fc1(x)))))``, as detrex's two-layer ``FFN``.

    Args:
        embed_dim: C, input and output channels.
        hidden_dim: the hidden width (``feedforward_dim``, or ``feedforward_dim / λ``
            for Lite's light FFN of the low-level tokens).
        dropout: applied after the activation and after ``fc2``.

    Shapes: ``[..., C] -> [..., C]``.
    """

    def __init__(self, embed_dim: int, hidden_dim: int, dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(embed_dim, hidden_dim)
        self.activation = nn.ReLU(inplace=True)
        self.dropout1 = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden_dim, embed_dim)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.dropout2(self.fc2(self.dropout1(self.activation(self.fc1(x)))))
