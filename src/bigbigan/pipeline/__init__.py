"""`bigbigan pipeline`: make-inputs -> generate -> export -> compile -> infer -> compare, in one
command, ending in `report.json`, `report.md` and the side-by-side grid.

Every stage is the same function its own subcommand calls; the reference is PyTorch eager on
the checkpoint (or, for a model the user brings, their own reference file), and every other
stage is compared with it on the same input files. The target `auto` compiles as
`compile --target auto` does (bigbigan.autotune: the fastest candidate here within
`--tolerance`), and the report says in one line which artefact won and why.

The rooms: `stages.py` (the targets, the stage runner and its progress lines), `run.py` (the two
chains: `pipeline` from a checkpoint, `pipeline_model` from a model the user brings),
`report.py` (the JSON document and its markdown).
"""

from bigbigan.pipeline.report import REPORT_FORMAT
from bigbigan.pipeline.run import PB_REFERENCE, pipeline, pipeline_model
from bigbigan.pipeline.stages import (
    AUTO,
    DEFAULT_TARGETS,
    GRID_FILE,
    PLAIN,
    Progress,
    Stage,
    check_targets,
    compile_and_run,
    known_targets,
    noted_targets,
)

__all__ = [
    "AUTO",
    "DEFAULT_TARGETS",
    "GRID_FILE",
    "PB_REFERENCE",
    "PLAIN",
    "REPORT_FORMAT",
    "Progress",
    "Stage",
    "check_targets",
    "compile_and_run",
    "known_targets",
    "noted_targets",
    "pipeline",
    "pipeline_model",
]
