"""`bigbigan bench`: every backend and precision side by side, in one process, on the same inputs.

    rows = bench(None, ch=64, batch_sizes=(1, 16, 256), out="out/bench").rows

One checkpoint (given, or random weights with measured batch-norm statistics) is exported once
and compiled for every target that is available here; then, per batch size, every row runs
the same seeded inputs: warm-up calls (at least one, excluded), then `repeats` timed calls
(harness/timing.py, the loop `infer` uses; the last call gives the accuracy figures). Each row
has images/s (batch / median latency), the median latency and its spread (p10, p90, IQR), the
mean/max absolute pixel difference against PyTorch fp32 on the same inputs, and the speed ratio
against the plain ONNX Runtime fp32 session (`bigbigan export`'s file, default options) measured
in the same run. Output: a table, `bench.json`, `bench.png`; per batch size, the row that
`compile --target auto` would keep on this machine is marked (bigbigan.autotune's rule applied
to the rows measured here). The rows come from the registry: each backend's runtime module
lists its rows as `open_runner` arguments (runtimes/registry.py `BenchRow`), and the artifacts
they need are built with `compile_model`.

On a GPU (`device="cuda"`) the rows are PyTorch eager and CUDA graphs in fp32/bf16/fp16,
AOTInductor packages for CUDA, and ONNX Runtime's CUDA provider where installed; every row also
reports the fraction of the GPU's dense bf16 peak that it reaches.

The rooms: `settings.py` (the flags a run takes and their checks), `model.py` (the model under
test: random weights, label accuracy), `run.py` (`bench` itself: rows opened, timed, compared),
`report.py` (the rows as a table, the JSON document, the chart, the automatic choice).
"""

from bigbigan.bench.model import generated_label_accuracy, random_checkpoint
from bigbigan.bench.report import (
    FORMAT,
    VERSION,
    BenchResult,
    Row,
    auto_choice,
    bench_title,
    format_table,
    save_chart,
    summarise,
)
from bigbigan.bench.run import bench, gpu_bf16_peak, row_latency
from bigbigan.bench.settings import (
    BATCH_SIZES,
    DEFAULT_MICRO_BATCH,
    DEFAULT_STREAMS,
    PRECISIONS,
    parse_batch_sizes,
    parse_names,
)

__all__ = [
    "BATCH_SIZES",
    "DEFAULT_MICRO_BATCH",
    "DEFAULT_STREAMS",
    "FORMAT",
    "PRECISIONS",
    "VERSION",
    "BenchResult",
    "Row",
    "auto_choice",
    "bench",
    "bench_title",
    "format_table",
    "generated_label_accuracy",
    "gpu_bf16_peak",
    "parse_batch_sizes",
    "parse_names",
    "random_checkpoint",
    "row_latency",
    "save_chart",
    "summarise",
]
