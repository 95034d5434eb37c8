"""A sweep's own options, declared once (params.param) for the CLI, the studio and the checks. No torch, no Optuna."""

from __future__ import annotations

from dataclasses import dataclass

from ..params import check, param

PRUNERS = ("median", "hyperband", "none")
DEFAULT_STUDY = "imgtrain-sweep"
#: the file in a sweep's folder that says what it was started with (docs/formats.md, Sweep folder)
SWEEP_FILE = "imgtrain-sweep.json"


def _is_storage_url(value: object) -> bool:
    return isinstance(value, str) and value.split("://", 1)[0].split("+", 1)[0] in ("sqlite", "postgresql")


@dataclass(frozen=True)
class SweepConfig:
    """How many trials, in how long, pruned how, run where. The training parameters a trial does not sweep come
    from the TrainConfig given beside it."""

    trials: int = param(8, "trials to finish (completed, pruned or failed), counted over every worker", low=1)
    budget_minutes: float | None = param(
        None,
        "wall-clock budget of this run of the sweep: a trial starts only with room for twice the quickest epoch so "
        "far (its start and one epoch), and a running trial stops after the last epoch that fits, its best epoch "
        "kept; 10 s are kept for the report; default: no limit",
        low=0,
        above=True,
        metavar="M",
    )
    pruner: str = param(
        "median",
        "stop trials whose validation loss trails: median (the median of earlier trials at the same epoch, after "
        "two trials), hyperband (successive halving over epochs) or none; measured in "
        "docs/performance.md, Sweeps",
        choices=PRUNERS,
    )
    parallel: int = param(
        1,
        "trials at once on this machine, each in its own process with its share of the CPU threads",
        low=1,
        high=64,
        metavar="K",
    )
    sweep_seed: int = param(
        1, "seed of the sampler (TPE); a sweep with one worker draws the same trials each time", low=0, metavar="N"
    )
    storage: str | None = param(
        None,
        "where the study lives: default sqlite in --out (one machine); postgresql://USER:PASSWORD@HOST/DB for one "
        "study shared by workers on several machines (each runs the same command with its own --out)",
        accepts=_is_storage_url,
        expected="a sqlite:/// or postgresql:// URL",
        metavar="URL",
        studio=False,
    )
    study_name: str = param(DEFAULT_STUDY, "the study's name in the storage; workers with the same name join it")
    resume: bool = param(False, "continue the sweep in --out: finished trials are kept, interrupted ones resumed")
    overwrite: bool = param(False, "replace the sweep in --out (only a folder imgtrain sweep wrote)", studio=False)

    def __post_init__(self) -> None:
        check(self)
