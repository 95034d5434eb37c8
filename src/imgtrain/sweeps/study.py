"""The Optuna study of a sweep: its storage (sqlite in the sweep folder, or a shared PostgreSQL), sampler and
pruner, the trials that count towards --trials, and the trials a killed worker of this folder left behind."""

from __future__ import annotations

import logging
import os
import random
import socket
import time
import warnings
import zlib
from pathlib import Path
from typing import Any

from ..errors import MissingDependencyError, ParameterError
from .settings import SweepConfig
from .space import SearchSpace

log = logging.getLogger(__name__)

DATABASE = "sweep.db"
#: seconds between a running trial's heartbeats, and after which a silent one counts as dead (another host's)
HEARTBEAT_SECONDS, GRACE_SECONDS = 10, 60
OPEN_ATTEMPTS = 3


def optuna_module() -> Any:
    """Optuna, or MissingDependencyError saying which extra to install."""
    try:
        import optuna
    except ImportError:
        raise MissingDependencyError(
            "Sweeps need Optuna.", hint="pip install 'imgtrain[sweep]' (Optuna, and psycopg for PostgreSQL)."
        ) from None
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a failed trial's traceback: trial.py logs it in a line
    return optuna


def storage_url(config: SweepConfig, out: Path) -> str:
    return config.storage or f"sqlite:///{out.resolve() / DATABASE}"


def shown_url(url: str) -> str:
    """The storage URL without its password, for logs and files."""
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user, has_password, _ = credentials.partition(":")
    return f"{scheme}{sep}{user}{':***' if has_password else ''}@{host}"


def open_storage(config: SweepConfig, out: Path) -> Any:
    """The study's RDB storage, with heartbeats so a dead worker's trial is failed by the others."""
    optuna = optuna_module()
    url = storage_url(config, out)
    local = url.startswith("sqlite")
    engine = {"connect_args": {"timeout": 60}} if local else {"pool_pre_ping": True}
    # One machine's sweep finds its dead workers' trials by their process ids (take_back_orphans); heartbeats are
    # for workers on other hosts. (Measured: with heartbeats on SQLite, a resumed parallel sweep saw one of its
    # running trials failed under it.)
    heartbeat = {} if local else {"heartbeat_interval": HEARTBEAT_SECONDS, "grace_period": GRACE_SECONDS}
    for attempt in range(OPEN_ATTEMPTS):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine, **heartbeat)
        except ImportError as exc:
            raise MissingDependencyError(
                f"The storage {shown_url(url)} needs a driver: {exc}.", hint="pip install 'imgtrain[sweep]'."
            ) from None
        except Exception as exc:  # sqlalchemy's OperationalError and kin: no server, wrong password, no database
            if attempt + 1 < OPEN_ATTEMPTS:  # two workers creating an empty database's tables at once: one fails
                log.debug("opening %s failed (%s); trying again", shown_url(url), exc)
                time.sleep(1 + attempt + random.random())
                continue
            raise ParameterError(
                f"Cannot open the sweep storage {shown_url(url)}: {str(exc).splitlines()[0][:300]}.",
                hint="check that the database server runs and the URL's user, password and database are right.",
            ) from None
    raise AssertionError("unreachable")


def worker_seed(seed: int, worker: str) -> int:
    """The sampler's seed for one worker: the sweep's own for the first, distinct for the others (the same seed in
    two workers would draw the same first trials)."""
    return seed if worker.endswith(":0") else (seed * 1_000_003 + zlib.crc32(worker.encode())) % 2**31


def open_study(config: SweepConfig, out: Path, space: SearchSpace, worker: str) -> Any:
    """Create the study, or join it; a study made with another search space is refused."""
    optuna = optuna_module()
    storage = open_storage(config, out)
    startup = max(2, min(10, config.trials // 4))
    sampler = optuna.samplers.TPESampler(
        seed=worker_seed(config.sweep_seed, worker), n_startup_trials=startup, constant_liar=True
    )
    study = optuna.create_study(
        storage=storage,
        study_name=config.study_name,
        direction="minimize",
        sampler=sampler,
        pruner=make_pruner(config.pruner, space),
        load_if_exists=True,
    )
    recorded = study.user_attrs.get("space")
    if recorded is None:
        study.set_user_attr("space", space.to_json())
    elif recorded != space.to_json():
        raise ParameterError(
            f"The study {config.study_name!r} in {shown_url(storage_url(config, out))} searches another space.",
            hint="join it with the same --space and --model, or name another --study-name.",
        )
    return study


def make_pruner(name: str, space: SearchSpace) -> Any:
    """median: stop a trial worse than the median of earlier ones at the same epoch (after 2 trials);
    hyperband: successive halving over epochs; none."""
    optuna = optuna_module()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=space.max_epochs or 5, reduction_factor=3)
    return optuna.pruners.NopPruner()


def worker_name(out: Path, index: int) -> str:
    """Who runs a trial: this host, this sweep folder and the worker's index (a trial's folder lives there)."""
    return f"{socket.gethostname()}:{out.resolve()}:{index}"


def counts(trial: Any) -> bool:
    """Whether a trial counts towards --trials: finished (complete, pruned, failed by its parameters), running or
    queued. A trial whose worker died or was stopped does not (its retry does), nor one started past --trials."""
    states = optuna_module().trial.TrialState
    if trial.state in (states.COMPLETE, states.PRUNED, states.RUNNING, states.WAITING):
        return True
    return trial.state == states.FAIL and "failure" in trial.user_attrs


def counted(study: Any) -> int:
    """How many of the study's trials count towards --trials (see `counts`)."""
    return sum(counts(trial) for trial in study.get_trials(deepcopy=False))


def queued(study: Any) -> bool:
    """Whether a trial waits to be run: an interrupted one's retry, which the sweep owes before it ends."""
    return bool(study.get_trials(deepcopy=False, states=(optuna_module().trial.TrialState.WAITING,)))


def take_back_orphans(study: Any, out: Path) -> int:
    """Fail the trials this sweep folder's dead workers left running, and queue each one's retry (it resumes from
    the trial's checkpoint); return how many were queued. Only trials run from `out` on this host are touched."""
    optuna = optuna_module()
    states = optuna.trial.TrialState
    folder, host = str(out.resolve()), socket.gethostname()
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    queued = 0
    for trial in trials:
        attrs = trial.user_attrs
        if attrs.get("host") != host or attrs.get("sweep") != folder or trial.number in retried:
            continue
        if trial.state == states.RUNNING and not _alive(attrs.get("pid")):  # Optuna has no public call for this
            study._storage.set_trial_user_attr(trial._trial_id, "orphaned", "its worker died")
            study._storage.set_trial_state_values(trial._trial_id, states.FAIL)
        elif not (trial.state == states.FAIL and "orphaned" in attrs):
            continue
        study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number, "folder": attrs.get("folder")})
        queued += 1
        log.info("trial %d was interrupted; it is queued to resume from its checkpoint", trial.number)
    return queued


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
