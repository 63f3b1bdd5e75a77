"""Speed options of the training loop: mixed precision, channels-last memory format, ``torch.compile``, the step as
one CUDA graph.

All are off by default, and off they change nothing: no autocast context, no scaler, no copies.
``benchmarks/speed_options.py`` measures what each buys on a given machine.
"""

from __future__ import annotations

import contextlib
import functools
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ReffAKDError
from ..settings import opt

if TYPE_CHECKING:  # torch is imported where it is used: the command line reads these options without it
    import torch
    import torch.nn as nn

AMP_MODES = ("none", "bf16", "fp16")
# torch.compile's modes: reduce-overhead replays each step's kernels as a CUDA graph, which is what small models on
# a GPU need (they wait on kernel launches, docs/GPU.md); on a CPU it compiles as default does.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass(frozen=True)
class SpeedOptions:
    """``amp``: autocast dtype (fp16 adds a gradient scaler and needs CUDA); ``channels_last``: NHWC model
    and batches (faster convolutions on tensor cores and oneDNN); ``compile``: ``torch.compile`` the
    student's forward (the first epoch then includes the compile time), in ``compile_mode``; ``cuda_graph``: record
    the whole training step (and the in-memory loader's batches) as CUDA graphs and replay them
    (``engine.cudagraph``). Each field is also a flag and a config key (``settings.opt``)."""

    amp: str = opt("none", "mixed precision autocast (fp16 on CUDA only)", choices=AMP_MODES)
    channels_last: bool = opt(False, "channels_last memory format for the student and its inputs")
    compile: bool = opt(False, "torch.compile the student (the first epoch includes compile time)")
    compile_mode: str = opt(
        "default", "torch.compile mode with compile: reduce-overhead replays each step as a CUDA graph (small "
        "models on a GPU)", choices=COMPILE_MODES,
    )  # fmt: skip
    cuda_graph: bool = opt(
        False, "record the whole training step (and in-memory batches) as CUDA graphs and replay them (small models "
        "on a GPU; methods whose step is device work alone)",
    )  # fmt: skip

    def validate(self, device: torch.device) -> None:
        """``check`` and what ``device`` (and this installation) can honour."""
        import torch

        from .cudagraph import check_device

        self.check()
        if self.amp == "fp16" and device.type != "cuda":
            raise ReffAKDError(f"amp fp16 needs a CUDA device, not {device}; use amp bf16 on CPU", params=("amp",))
        if self.amp == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ReffAKDError(
                f"amp bf16 is not supported by {torch.cuda.get_device_name(device)}; use amp fp16", params=("amp",)
            )
        if self.cuda_graph:
            check_device(device)
        if self.compile:
            check_compile(device)

    def check(self) -> None:
        """The values and their combinations, whatever the device (a comparison's spec is checked so)."""
        if self.amp not in AMP_MODES:
            raise ReffAKDError(f"amp {self.amp!r} is unknown; allowed: {', '.join(AMP_MODES)}", params=("amp",))
        if self.compile_mode not in COMPILE_MODES:
            raise ReffAKDError(
                f"compile_mode {self.compile_mode!r} is unknown; allowed: {', '.join(COMPILE_MODES)}",
                params=("compile_mode",),
            )
        if self.compile_mode != "default" and not self.compile:
            raise ReffAKDError(
                f"compile_mode {self.compile_mode} applies only with compile; add compile or drop compile_mode",
                params=("compile_mode", "compile"),  # this order: the CLI rewrites compile_mode first
            )
        if self.cuda_graph:
            if self.amp == "fp16":
                raise ReffAKDError(
                    "cuda_graph cannot record amp fp16: its gradient scaler reads the device every step; "
                    "use amp bf16 or none", params=("cuda_graph", "amp"),
                )  # fmt: skip
            if self.compile:
                raise ReffAKDError(
                    "cuda_graph and compile are two ways to replay the step; choose one "
                    "(compile_mode reduce-overhead graphs only the model)", params=("cuda_graph", "compile"),
                )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """The options as a run records them; the default compile mode and cuda_graph off are left out, so that runs
        made before they existed keep their identity (a resume compares it)."""
        d = asdict(self)
        if self.compile_mode == "default":
            del d["compile_mode"]
        if not self.cuda_graph:
            del d["cuda_graph"]
        return d

    def switched_on(self) -> dict[str, Any]:
        """The options not at their default, as a spec's ``speed`` section keeps them (``spec.json``)."""
        off = SpeedOptions()
        return {k: v for k, v in asdict(self).items() if v != getattr(off, k)}

    def autocast(self, device: torch.device) -> AbstractContextManager[Any]:
        if self.amp == "none":
            return contextlib.nullcontext()
        import torch

        # A recorded graph keeps no autocast cache of cast weights across replays (torch.cuda.graphs' advice).
        return torch.autocast(
            device_type=device.type,
            dtype=torch.bfloat16 if self.amp == "bf16" else torch.float16,
            cache_enabled=not self.cuda_graph,
        )

    def grad_scaler(self, device: torch.device) -> Any:
        """A gradient scaler for fp16 (its small range underflows gradients); None otherwise."""
        if self.amp != "fp16":
            return None
        import torch

        return torch.amp.GradScaler(device.type)

    def prepare_model(self, model: nn.Module) -> None:
        """In place: channels-last weights, then a compiled forward (the module and its state_dict keys stay)."""
        import torch

        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        if self.compile:
            model.compile(mode=None if self.compile_mode == "default" else self.compile_mode)

    def prepare_input(self, images: torch.Tensor) -> torch.Tensor:
        if self.channels_last and images.dim() == 4:
            import torch

            return images.contiguous(memory_format=torch.channels_last)
        return images


SPEED_KEYS = tuple(SpeedOptions.__dataclass_fields__)  # a spec's ``speed`` section, the flags


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


@functools.cache
def _compile_probe(device_type: str) -> str | None:
    import torch

    try:
        fn = torch.compile(lambda x: torch.relu(x) * 2.0 + 1.0)
        fn(torch.randn(4, 4, device=device_type))
    except Exception as exc:  # any backend failure: no C compiler, unsupported Python, ...
        return _first_line(exc)
    return None


def check_compile(device: torch.device) -> None:
    """Compile a tiny function once per process, so a machine where ``torch.compile`` cannot work fails
    with one clear line before training rather than with a long traceback in the first step."""
    problem = _compile_probe(device.type)
    if problem is not None:
        # "the torch compiler", not the function's name: the CLI writes the parameter named here as its flag.
        raise ReffAKDError(
            f"compile: the torch compiler does not work here ({problem}); run without compile", params=("compile",)
        )
