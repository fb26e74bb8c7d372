"""The bridge: one shared VAE over two frozen latent spaces (Tian & Engel 2019, section 3; DESIGN.md 1).

Encoder q(z' | z_d, d) and decoder p(z_d | z', d) are ONE network each, shared by both domains and told
the domain by a one-hot. Domains may have different latent sizes: z_d is zero-padded to
``max(dim_a, dim_b)`` on the way in and the decoder's output is sliced back to that domain's size, so a
single body serves both, as in the paper (the padded inputs carry no information, the sliced-off outputs
no loss). Output heads are gated affine (``GatedAffine``); a latent classifier reads z' directly.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ltrans.bridge.config import BridgeConfig

DOMAINS = ("a", "b")


def domain_index(domain: str) -> int:
    """0 for "a", 1 for "b"."""
    if domain not in DOMAINS:
        raise ValueError(f"domain must be 'a' or 'b', got {domain!r}")
    return DOMAINS.index(domain)


class GatedAffine(nn.Module):
    """out = (1 - g) * skip(x) + g * dz, [dz, g_logit] = proj(h), g = sigmoid(g_logit).

    ``x`` is the block's input (the affine skip path), ``h`` the body's last hidden layer: the body only
    has to learn a gated correction to a linear map, which the authors found trains more stably.
    """

    def __init__(self, in_dim: int, h_dim: int, out_dim: int) -> None:
        super().__init__()
        self.out_dim = out_dim
        self.skip = nn.Linear(in_dim, out_dim)
        self.proj = nn.Linear(h_dim, 2 * out_dim)

    def forward(self, x: Tensor, h: Tensor) -> Tensor:  # (n, in_dim), (n, h_dim) -> (n, out_dim)
        dz, g_logit = self.proj(h).split(self.out_dim, dim=1)
        g = torch.sigmoid(g_logit)
        return (1 - g) * self.skip(x) + g * dz


def mlp(in_dim: int, width: int, n_layers: int) -> nn.Sequential:
    """ReLU body: n_layers of Linear + ReLU."""
    layers: list[nn.Module] = []
    for i in range(n_layers):
        layers += [nn.Linear(in_dim if i == 0 else width, width), nn.ReLU()]
    return nn.Sequential(*layers)


class Bridge(nn.Module):
    """Domain-conditioned VAE between latent spaces of sizes dim_a and dim_b."""

    def __init__(self, latent_dim_a: int, latent_dim_b: int, cfg: BridgeConfig,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        # nn.Linear draws its default init from the global RNG; with a generator we re-draw every weight
        # from it, and fork_rng leaves the global state as it was (no hidden side effect).
        with torch.random.fork_rng(devices=[]) if generator is not None else nullcontext():
            self._build(latent_dim_a, latent_dim_b, cfg)
        if generator is not None:
            self.reset_parameters(generator)
        if cfg.freeze_classifier:
            self.classifier.requires_grad_(False)

    def _build(self, latent_dim_a: int, latent_dim_b: int, cfg: BridgeConfig) -> None:
        self.dims = (latent_dim_a, latent_dim_b)
        self.pad_dim = max(self.dims)
        self.shared_dim = cfg.shared_dim
        self.std_floor = cfg.std_floor
        enc_in, dec_in = self.pad_dim + 2, cfg.shared_dim + 2
        self.enc_body = mlp(enc_in, cfg.width, cfg.n_layers)
        self.enc_mu = GatedAffine(enc_in, cfg.width, cfg.shared_dim)
        self.enc_std = GatedAffine(enc_in, cfg.width, cfg.shared_dim)
        self.dec_body = mlp(dec_in, cfg.width, cfg.n_layers)
        self.dec_out = GatedAffine(dec_in, cfg.width, self.pad_dim)
        # No hidden layer: the classifier is a (gated) linear readout of z' itself.
        self.classifier = GatedAffine(cfg.shared_dim, cfg.shared_dim, cfg.n_classes)

    def reset_parameters(self, generator: torch.Generator) -> None:
        """Re-initialise every Linear from ``generator`` (torch's default scheme, explicit randomness)."""
        with torch.no_grad():
            for layer in self.modules():
                if isinstance(layer, nn.Linear):
                    bound = 1.0 / layer.in_features ** 0.5  # = kaiming_uniform(a=sqrt(5)), nn.Linear's default
                    layer.weight.copy_(_uniform(layer.weight.shape, bound, generator))
                    layer.bias.copy_(_uniform(layer.bias.shape, bound, generator))

    def _domain_onehot(self, domains: Tensor) -> Tensor:  # (n,) int -> (n, 2)
        return F.one_hot(domains, 2).to(self.enc_mu.skip.weight.dtype)

    def pad(self, z: Tensor) -> Tensor:  # (n, d) -> (n, pad_dim)
        return F.pad(z, (0, self.pad_dim - z.shape[1]))

    def encode_padded(self, z: Tensor, domains: Tensor) -> tuple[Tensor, Tensor]:
        """(n, pad_dim) padded latents, (n,) domain ids -> mu, std of z': (n, shared_dim) each."""
        x = torch.cat([z, self._domain_onehot(domains)], dim=1)  # (n, pad_dim + 2)
        h = self.enc_body(x)  # (n, width)
        return self.enc_mu(x, h), F.softplus(self.enc_std(x, h)) + self.std_floor

    def decode_padded(self, code: Tensor, domains: Tensor) -> Tensor:
        """(n, shared_dim), (n,) domain ids -> (n, pad_dim); slice per domain before use."""
        x = torch.cat([code, self._domain_onehot(domains)], dim=1)  # (n, shared_dim + 2)
        return self.dec_out(x, self.dec_body(x))

    def _ids(self, n: int, domain: str, like: Tensor) -> Tensor:
        return torch.full((n,), domain_index(domain), dtype=torch.long, device=like.device)

    def encode(self, z: Tensor, domain: str) -> tuple[Tensor, Tensor]:
        """z: (n, dim_domain) -> mu, std of the shared code: (n, shared_dim) each."""
        if z.ndim != 2 or z.shape[1] != self.dims[domain_index(domain)]:
            raise ValueError(f"domain {domain!r} latents must be (n, {self.dims[domain_index(domain)]}), "
                             f"got {tuple(z.shape)}")
        return self.encode_padded(self.pad(z), self._ids(len(z), domain, z))

    def decode(self, code: Tensor, domain: str) -> Tensor:
        """code: (n, shared_dim) -> (n, dim_domain) latents of ``domain``."""
        out = self.decode_padded(code, self._ids(len(code), domain, code))
        return out[:, : self.dims[domain_index(domain)]]

    def translate(self, z: Tensor, src: str, dst: str, sample: bool = False,
                  generator: torch.Generator | None = None) -> Tensor:
        """z_src: (n, dim_src) -> z_dst: (n, dim_dst), through the mean (or a sample) of z'."""
        mu, std = self.encode(z, src)
        code = mu
        if sample:
            eps = torch.randn(mu.shape, generator=generator, device=_gen_device(generator, mu))
            code = mu + std * eps.to(mu)
        return self.decode(code, dst)

    def classify(self, code: Tensor) -> Tensor:
        """code: (n, shared_dim) -> class logits (n, n_classes)."""
        return self.classifier(code, code)


def _uniform(shape: torch.Size, bound: float, generator: torch.Generator) -> Tensor:
    return (torch.rand(shape, generator=generator) * 2 - 1) * bound


def _gen_device(generator: torch.Generator | None, like: Tensor) -> torch.device:
    return generator.device if generator is not None else like.device
