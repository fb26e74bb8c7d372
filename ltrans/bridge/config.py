"""BridgeConfig: the bridge VAE's architecture, loss weights and training budget.

Defaults are the paper's MNIST <-> MNIST setting (Tian & Engel, arXiv 1902.08261, authors' run notes;
DESIGN.md section 1 table): 8-d shared code, 4x512 MLP, beta_kl 0.005, beta_swd 1.0, beta_cls 0.05,
Adam 1e-3, batch 512 per domain, 20k steps.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BridgeConfig:
    shared_dim: int = 8  # size of the shared code z' (16 for image <-> audio in the paper)
    n_layers: int = 4  # hidden ReLU layers in each of the encoder and decoder bodies
    width: int = 512  # units per hidden layer
    beta_kl: float = 0.005  # KL(q(z'|z, d) || N(0, I)); 0 removes the term
    beta_swd: float = 1.0  # sliced W1 between the A and B codes; 0 removes the term
    beta_cls: float = 0.05  # latent classifier cross-entropy on labelled rows; 0 removes the term
    lr: float = 1e-3  # Adam
    batch_size: int = 512  # rows per domain per step
    steps: int = 20_000
    n_projections: int = 128  # random d x d projection matrices per SWD call (128 * d directions)
    n_sup: int = -1  # labelled examples per domain: -1 all, 0 none, k > 0 a class-balanced subset
    balanced_batches: bool = True  # batches cycle through the classes (an implicit use of labels)
    freeze_classifier: bool = False  # True keeps the classifier at its random init, as the authors did
    sample_posterior: bool = True  # fresh z ~ N(mu, std) per batch; False feeds the posterior mean
    sample_code: bool = True  # z' = mu + std * eps in training; False: z' = mu (a plain autoencoder)
    eval_every: int = 500  # steps between curve points / on_eval calls
    std_floor: float = 1e-4  # added to softplus in the std head, so log(std) stays finite
    n_classes: int = 10

    def __post_init__(self) -> None:
        positive = {
            "shared_dim": self.shared_dim, "n_layers": self.n_layers, "width": self.width,
            "batch_size": self.batch_size, "n_projections": self.n_projections,
            "eval_every": self.eval_every, "n_classes": self.n_classes,
        }
        for name, value in positive.items():
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("beta_kl", "beta_swd", "beta_cls"):
            value = getattr(self, name)
            if not value >= 0 or value == float("inf"):  # `not >=` also rejects nan
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if not self.lr > 0 or self.lr == float("inf"):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")
        if self.n_sup < -1:
            raise ValueError(f"n_sup must be -1 (all labelled), 0 (none) or a count > 0, got {self.n_sup}")
        if not self.std_floor >= 0:
            raise ValueError(f"std_floor must be >= 0, got {self.std_floor!r}")
