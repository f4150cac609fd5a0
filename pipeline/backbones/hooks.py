"""Any ``nn.Module``'s named submodules as layers, taken with forward hooks: several in one forward pass, which stops
once the last asked layer is out. The generic path behind Hugging Face models and a user's own network
(``preimage.representation(module, layer=...)``)."""

from __future__ import annotations

import contextlib
import threading

import torch
from torch import nn

TOKENS_SUFFIX = "#prefix"  # the class and register tokens of a token layer


def output_tensor(name: str, output) -> torch.Tensor:
    """The tensor a hooked module gives (the first of a tuple or a model output), or a clear error."""
    if isinstance(output, torch.Tensor):
        return output
    values = list(output.values()) if isinstance(output, dict) else list(output) if isinstance(output, tuple) else []
    if values and isinstance(values[0], torch.Tensor):
        return values[0]
    raise ValueError(f"layer {name!r} gives a {type(output).__name__}, not a tensor; choose another layer")


class _Done(Exception):
    """Every asked layer is out: the rest of the forward pass is not needed."""


class HookedModel(nn.Module):
    """A model whose named modules are taken with forward hooks (``forward_layers``); with a ``patch_size``, token
    sequences come out as grids and their prefix tokens under ``LAYER#prefix``. ``keyword``: the argument the
    model takes its images by (``pixel_values`` for ``transformers``; None: the first positional one).
    ``channels_last``: its maps come channels last, and are turned channels first."""

    def __init__(
        self, model: nn.Module, patch_size: int | None = None, keyword: str | None = None, channels_last: bool = False
    ) -> None:
        super().__init__()
        self.model = model
        self.patch_size = patch_size
        self.keyword = keyword
        self.channels_last = channels_last  # its maps are (N, H, W, C) (timm's Swin): stored as (N, C, H, W)

    def run(self, x: torch.Tensor):
        """The model's own forward pass on images ``x``."""
        return self.model(**{self.keyword: x}) if self.keyword else self.model(x)

    def forward_layers(self, x: torch.Tensor, layers) -> dict[str, torch.Tensor]:
        wanted = list(dict.fromkeys(layer.removesuffix(TOKENS_SUFFIX) for layer in layers))
        modules = dict(self.model.named_modules())
        unknown = [name for name in wanted if name not in modules]
        if unknown:
            raise ValueError(f"the model has no module {unknown[0]!r}")
        raw: dict[str, torch.Tensor] = {}
        caller = threading.get_ident()  # threads of one dask worker share the model: each takes its own pass only

        def hook(name: str):
            def take(module, args, output) -> None:
                if threading.get_ident() != caller:
                    return
                raw[name] = output_tensor(name, output)
                if len(raw) == len(wanted):
                    raise _Done

            return take

        handles = [modules[name].register_forward_hook(hook(name)) for name in wanted]
        try:
            self.run(x)
        except _Done:
            pass
        finally:
            for handle in handles:
                handle.remove()
        out: dict[str, torch.Tensor] = {}
        for layer in layers:
            name = layer.removesuffix(TOKENS_SUFFIX)
            if name not in raw:
                raise ValueError(f"the forward pass never called {name!r}; choose a layer it uses")
            value = raw[name].permute(0, 3, 1, 2) if self.channels_last and raw[name].ndim == 4 else raw[name]
            grid, prefix = self.split_tokens(value, x.shape[-2:])
            out[layer] = prefix if layer.endswith(TOKENS_SUFFIX) else grid
        return out

    def split_tokens(self, value: torch.Tensor, size) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A token sequence (N, prefix + h * w, C) as its patch grid (N, C, h, w) and its prefix tokens
        (N, prefix * C); anything else as it is (and no prefix)."""
        if value.ndim != 3 or not self.patch_size:
            return value, None
        h, w = size[0] // self.patch_size, size[1] // self.patch_size
        prefix = value.shape[1] - h * w
        if h * w == 0 or prefix < 0:
            return value, None
        grid = value[:, prefix:].transpose(1, 2).reshape(len(value), value.shape[2], h, w)
        return grid, value[:, :prefix].flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return output_tensor("the model", self.run(x))


@contextlib.contextmanager
def _parameters_on_meta():
    """Parameters this thread creates live on the meta device (no memory, no initialisation); buffers stay real,
    since a model indexes with some (CLIP's ``position_ids``, a Swin's relative position index)."""
    register, caller = nn.Module.register_parameter, threading.get_ident()

    def on_meta(module: nn.Module, name: str, param) -> None:
        register(module, name, param)
        if param is not None and threading.get_ident() == caller:
            module._parameters[name] = nn.Parameter(param.to("meta"), param.requires_grad)

    nn.Module.register_parameter = on_meta
    try:
        yield
    finally:
        nn.Module.register_parameter = register


def build_for_shapes(build) -> nn.Module:
    """``build()`` for passes that only ask shapes and call order: its parameters zero and never initialised (built
    on the meta device), its buffers as the model made them."""
    with _parameters_on_meta():
        network = build()
    if any(buffer.is_meta for buffer in network.buffers()):  # a buffer made from a parameter (a Swin's mask)
        return build().eval()
    for module in network.modules():
        for name, param in module._parameters.items():
            if param is not None and param.is_meta:
                module._parameters[name] = nn.Parameter(torch.zeros_like(param, device="cpu"), False)
    return network.eval()


def call_order(build, size: int) -> tuple[str, ...]:
    """The model's modules in the order one forward pass calls them, with ``LAYER#prefix`` after each layer whose
    output is a token sequence with prefix tokens (weights zero: only the order and shapes matter)."""
    network = build_for_shapes(build)
    order: list[str] = []  # by first call: a block before its sublayers
    outputs: dict[str, torch.Tensor | None] = {}

    def called(name: str):
        def hook(module, args) -> None:
            if name not in outputs:
                order.append(name)
                outputs[name] = None

        return hook

    def returned(name: str):
        def hook(module, args, output) -> None:
            if outputs.get(name) is None:
                with contextlib.suppress(ValueError):
                    outputs[name] = output_tensor(name, output)

        return hook

    named = [(n, m) for n, m in network.model.named_modules() if n]
    handles = [m.register_forward_pre_hook(called(n)) for n, m in named]
    handles += [m.register_forward_hook(returned(n)) for n, m in named]
    try:
        with torch.inference_mode():
            network.run(torch.zeros(1, 3, size, size))
    except Exception as err:
        raise ValueError(f"the model cannot take {size}x{size} images: {type(err).__name__}: {err}") from None
    finally:
        for handle in handles:
            handle.remove()
    layers: list[str] = []
    for name in order:
        layers.append(name)
        prefix = network.split_tokens(outputs[name], (size, size))[1] if outputs[name] is not None else None
        if prefix is not None and prefix.shape[1]:
            layers.append(name + TOKENS_SUFFIX)
    return tuple(layers)
