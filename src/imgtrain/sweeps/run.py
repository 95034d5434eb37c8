"""Run a sweep: check everything once, then trials until --trials are counted or the budget ends, in this process
or in --parallel worker processes, all sharing one study; the report after every trial.

    sweep(): check -> folder (new, or resumed) -> orphans queued -> workers: [trial, report]* -> report
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import TrainConfig, TransformSpec
from ..data.transform_file import transform_spec
from ..errors import OutputExistsError, ParameterError, TrainingInterrupted
from ..files import atomic_write_json, check_output, exclusive
from ..interrupts import Terminated, stop_on_signals
from ..jsonfiles import read_versioned_json
from .report import BEST, REPORT_FILES, TABLE_JSON, write_report
from .settings import SWEEP_FILE, SweepConfig
from .space import DEFAULT_SPACE, parse_space, read_space
from .study import (
    DATABASE,
    counted,
    open_study,
    optuna_module,
    queued,
    shown_url,
    storage_url,
    take_back_orphans,
    worker_name,
)
from .trial import TRIALS, TrialFailed, TrialPlan, TrialSurplus, objective

log = logging.getLogger(__name__)

#: the time kept at the end of a budget for the last report
REPORT_SECONDS = 10.0


@dataclass(frozen=True)
class SweepResult:
    """What a sweep made: its folder, every trial's row, and the best (None when no trial completed)."""

    out: Path
    trials: list[dict[str, Any]]
    best: dict[str, Any] | None


def sweep(
    models: str | Path | list[str | Path],
    train: str | Path,
    valid: str | Path,
    out: str | Path,
    config: SweepConfig | None = None,
    base: TrainConfig | None = None,
    space: dict[str, Any] | str | Path | None = None,
    transform: TransformSpec | str | Path | None = None,
) -> SweepResult:
    """Search the space (default DEFAULT_SPACE; a dict or a YAML/JSON file) for the training parameters with the
    lowest validation loss: each trial trains `out/trials/N`, the best is copied to `out/best`."""
    config, base = config or SweepConfig(), base or TrainConfig()
    started = time.time()
    deadline = started + 60 * config.budget_minutes if config.budget_minutes else None
    out = Path(out)
    listed = [str(m) for m in (models if isinstance(models, list) else [models])]
    raw = read_space(space) if isinstance(space, str | Path) else (space or DEFAULT_SPACE)
    searched = parse_space(raw, listed, source=str(space) if isinstance(space, str | Path) else "the search space")
    spec = transform_spec(transform)
    optuna_module()  # a missing Optuna is said before the folder is made
    settings = {
        "format": "imgtrain.sweep",
        "format_version": 1,
        "train": str(train),
        "valid": str(valid),
        "space": searched.to_json(),
        "base": base.hyperparameters(),
        "transform": spec.values(),
        "storage": shown_url(storage_url(config, out)),
        "study_name": config.study_name,
    }
    with exclusive(out):
        _prepare(out, config, settings, [Path(m) for m in listed] + [Path(train), Path(valid)])
        trial_base = _trial_base(base, config)
        plan = TrialPlan(out, str(train), str(valid), spec, trial_base, searched, deadline, config.trials)
        study = open_study(config, out, searched, worker_name(out, 0))
        take_back_orphans(study, out)
        log.info(
            "sweep %s: %d trials%s, %s pruner, %d at once; study %r in %s",
            out,
            config.trials,
            f" within {config.budget_minutes:g} minutes" if deadline else "",
            config.pruner,
            config.parallel,
            config.study_name,
            shown_url(storage_url(config, out)),
        )
        if config.parallel == 1:
            work(plan, config, 0)
        else:
            _run_parallel(plan, config)
        best = write_report(study, out)
    rows = read_versioned_json(out / TABLE_JSON, "imgtrain.sweep_trials", 1, ParameterError)["trials"]
    return SweepResult(out, rows, best)


def _trial_base(base: TrainConfig, config: SweepConfig) -> TrainConfig:
    """The training options of every trial: no progress bars when trials run side by side, one loader in-process."""
    if config.parallel == 1:
        return base
    return dataclasses.replace(base, progress=False, workers=base.workers if base.workers is not None else 0)


def _prepare(out: Path, config: SweepConfig, settings: dict[str, Any], inputs: list[Path]) -> None:
    """A new sweep folder (an old sweep's replaced with --overwrite), or the one to resume, with the same settings."""
    record = out / SWEEP_FILE
    if config.resume:
        if not record.is_file():
            raise ParameterError(f"There is no sweep in {out} to resume.", hint="start it without --resume.")
        before = read_versioned_json(record, "imgtrain.sweep", 1, ParameterError, hint="start another --out.")
        changed = sorted(k for k in settings if before.get(k) != settings[k])
        if changed:
            raise ParameterError(
                f"The sweep in {out} was started with other {', '.join(changed)}; a sweep resumes as it started.",
                hint="resume with the first command's options (--trials and --budget-minutes may change), or start "
                "a new sweep in another --out.",
            )
        return
    check_output(out, config.overwrite, inputs)
    if config.overwrite and out.is_dir() and any(out.iterdir()):
        if not record.is_file():
            raise OutputExistsError(
                f"{out} holds files imgtrain sweep did not write; --overwrite replaces only a sweep.",
                hint="choose another --out.",
            )
        _remove_sweep(out, config)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(record, settings)


def _remove_sweep(out: Path, config: SweepConfig) -> None:
    """Delete what an earlier sweep wrote in `out` (its trials, report and own sqlite study), nothing else."""
    for folder in (TRIALS, BEST):
        shutil.rmtree(out / folder, ignore_errors=True)
    own_study = [] if config.storage else [DATABASE]
    for name in (SWEEP_FILE, *REPORT_FILES, *own_study):
        (out / name).unlink(missing_ok=True)
    if config.storage:  # a shared study is others' too: it stays, and this sweep's name must be new
        log.warning("--overwrite keeps the study %r in %s; its trials still count", config.study_name, config.storage)


def work(plan: TrialPlan, config: SweepConfig, index: int) -> None:
    """One worker: trials one after another until the study counts --trials or the budget would be missed."""
    study = open_study(config, plan.out, plan.space, worker_name(plan.out, index))
    epoch_seconds: list[float] = []  # every epoch's wall time in this worker, its trial's start included
    run = objective(plan, epoch_seconds)
    with stop_on_signals("stopping after this trial's current batch") as signalled:
        while counted(study) < config.trials or queued(study):
            if signalled.signum is not None:  # it came as a trial ended, or between trials
                raise _stopped(plan.out, signal.Signals(signalled.signum))
            if plan.deadline is not None and not _fits(plan.deadline, epoch_seconds):
                log.info("worker %d: the budget has no room for another trial", index)
                break
            try:
                study.optimize(run, n_trials=1, catch=(TrialFailed, TrialSurplus))
            finally:  # an interrupted trial is listed too
                write_report(study, plan.out)


def _fits(deadline: float, epoch_seconds: list[float]) -> bool:
    """Whether a trial may start: there is room for the report and for twice the quickest epoch so far (a trial's
    start, one epoch and its model written)."""
    left = deadline - time.time() - REPORT_SECONDS
    return left > 0 and (not epoch_seconds or left > 2 * min(epoch_seconds))


def _run_parallel(plan: TrialPlan, config: SweepConfig) -> None:
    """--parallel K: K worker processes share the study and the CPU threads. The workers have a process group of
    their own, so Ctrl-C (or SIGTERM) reaches this process, which passes one SIGINT to each: each writes its
    trial's checkpoint (--resume continues it)."""
    context = multiprocessing.get_context("spawn")
    threads = max(1, (os.cpu_count() or 1) // config.parallel)
    processes = [
        context.Process(target=_worker_main, args=(plan, config, index, threads), daemon=False)
        for index in range(config.parallel)
    ]
    for process in processes:
        process.start()
    try:
        for process in processes:
            process.join()
    except (KeyboardInterrupt, Terminated) as exc:  # the workers stop after their batch, then this does
        for process in processes:
            if process.pid is not None and process.exitcode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGINT)
        for process in processes:
            process.join()
        signum = signal.SIGINT if isinstance(exc, KeyboardInterrupt) else signal.SIGTERM
        raise _stopped(plan.out, signum) from None
    failed = [p.exitcode for p in processes if p.exitcode]
    if failed:
        if all(code in (128 + signal.SIGINT, 128 + signal.SIGTERM) for code in failed):
            raise _stopped(plan.out, signal.Signals(failed[0] - 128))
        raise ParameterError(
            f"{len(failed)} of {config.parallel} sweep workers ended with an error (exit {failed[0]}).",
            hint="see the errors above; rerun with --resume to continue.",
        )


def _stopped(out: Path, signum: signal.Signals) -> TrainingInterrupted:
    return TrainingInterrupted(
        f"The sweep in {out} was stopped by {signum.name}; finished trials are kept, and each interrupted one has "
        "a checkpoint.",
        hint="rerun the same command with --resume to continue.",
        signum=signum,
    )


def _worker_main(plan: TrialPlan, config: SweepConfig, index: int, threads: int) -> None:
    """A worker process: dies with the sweep (kill -9 of the sweep leaves no trial running), then `work`."""
    import ctypes

    from ..errors import ImgtrainError

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    os.setpgrp()  # the terminal's Ctrl-C goes to the sweep, which passes it on once
    logging.basicConfig(level=logging.INFO, format=f"%(levelname)s: [worker {index}] %(message)s", force=True)
    import torch

    torch.set_num_threads(threads)
    try:
        work(plan, config, index)
    except TrainingInterrupted as exc:
        raise SystemExit(128 + exc.signum) from None
    except KeyboardInterrupt:
        raise SystemExit(128 + signal.SIGINT) from None
    except ImgtrainError as exc:
        logging.getLogger(__name__).error("%s: %s", type(exc).__name__, exc)
        raise SystemExit(1) from None
