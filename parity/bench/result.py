"""What `parity bench` measures: runtime names, row statuses and the result records."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

RUNTIMES = ("torch", "torch:channels_last", "torch:compile", "keras", "tf", "tf:xla",
            "onnx:torch", "onnx:keras", "onnx:tf")
FAMILIES = {
    "torch": ("torch", "torch:channels_last", "torch:compile"),
    "keras": ("keras",),
    "tf": ("tf", "tf:xla"),
    "onnx": ("onnx:torch", "onnx:keras", "onnx:tf"),
}
DTYPES = ("fp32", "fp16", "bf16")


def source_of(runtime: str) -> str:
    """The framework whose model a runtime runs: torch:compile's is torch, onnx:keras's keras."""
    kind, _, variant = runtime.partition(":")
    return variant if kind == "onnx" else kind
OPTIONAL_RUNTIMES = ("torch:compile",)  # a failure here is a note, not a failed bench

# status of a row: measured, or why not
OK, SKIPPED, UNSUPPORTED, UNAVAILABLE, FAILED = "ok", "skipped", "unsupported", "unavailable", "failed"


@dataclass
class RuntimeTiming:
    runtime: str
    status: str = OK  # ok | skipped (asked) | unsupported (dtype) | unavailable (device) | failed
    latency_ms: float | None = None  # median over the repeats
    throughput: float | None = None  # images per second at the median
    ratio: float | None = None  # throughput / baseline throughput (> 1: faster)
    min_ms: float | None = None
    max_ms: float | None = None
    times_ms: list = field(default_factory=list)  # every repeat, in timing order
    setup_s: float = 0.0  # build, transfer, export or compile, warm-up
    error_vs_torch: float | None = None  # normalized output error against torch eager, same dtype
    tf32: bool | None = None  # None: not applicable (CPU)
    note: str | None = None


@dataclass
class BenchResult:
    model: str
    input_shape: list
    device: str
    dtype: str
    batch: int
    repeats: int
    warmup: int
    baseline: str
    tf32: str  # "default" (each framework's own), "on" or "off" (strict)
    runtimes: list = field(default_factory=list)
    order: list = field(default_factory=list)  # runtime names in the order they were timed
    onnx_spread: float | None = None  # (max - min) / min of the ONNX exports' median latencies
    notes: list = field(default_factory=list)
    environment: dict = field(default_factory=dict)
    reference: str = "torch"  # whose eager output error_vs_torch is measured against (a model of one's own: its first)

    def timing(self, runtime: str) -> RuntimeTiming:
        return next(t for t in self.runtimes if t.runtime == runtime)

    @property
    def failed(self) -> list[RuntimeTiming]:
        """Rows that should have run and did not (the optional torch.compile excepted)."""
        return [t for t in self.runtimes if t.status in (FAILED, UNAVAILABLE) and t.runtime not in OPTIONAL_RUNTIMES]

    def to_json(self) -> dict:
        return asdict(self)


class RuntimeSkipped(Exception):
    """A runtime that does not run here, with the reason; `status` says which kind."""

    def __init__(self, status: str, reason: str):
        super().__init__(reason)
        self.status = status
