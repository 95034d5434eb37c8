"""Running a parsed command: logging set-up, errors as a message and an exit status, distributed workers."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import traceback

from ..errors import ImgtrainError, TrainingInterrupted
from ..interrupts import Terminated, terminate_cleanly


class _ProgressAwareHandler(logging.Handler):
    """Log lines printed above a running progress bar instead of through it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:
            self.handleError(record)


NOISY_LOGGERS = ("azure", "botocore", "aiobotocore", "s3fs", "adlfs", "gcsfs", "urllib3", "fsspec")


def execute(args: argparse.Namespace) -> int:
    """Run a parsed command with logging set up; errors become a message and an exit status."""
    handler = _ProgressAwareHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    worker = os.environ.get("RANK", "0") != "0"  # distributed workers other than rank 0 only warn
    logging.basicConfig(level=logging.WARNING if args.quiet or worker else logging.INFO, handlers=[handler], force=True)
    for chatty in NOISY_LOGGERS:  # storage SDKs log every request at INFO, headers included
        logging.getLogger(chatty).setLevel(logging.WARNING)
    # set by the commands whose library code imports torch: the first line, before seconds of importing
    if getattr(args, "loads_torch", False) and "torch" not in sys.modules:
        logging.getLogger(__name__).info("%s: loading torch", args.command)
    try:
        with terminate_cleanly():
            return args.func(args)
    except ImgtrainError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: {type(exc).__name__}: {exc.cli_text()}", file=sys.stderr)
        return 128 + exc.signum if isinstance(exc, TrainingInterrupted) else 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `imgtrain models | head`: the reader has gone, which is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Terminated:
        print("error: terminated (SIGTERM); outputs are as they were before this command", file=sys.stderr)
        return 128 + signal.SIGTERM
    except Exception as exc:  # never a bare traceback for users; --debug shows it
        if args.debug:
            traceback.print_exc()
        print(f"error: internal error: {type(exc).__name__}: {exc} (rerun with --debug and report it)", file=sys.stderr)
        return 1


def train_worker(args: argparse.Namespace) -> None:
    """One worker of a distributed `train`, started by the elastic agent: the same command, in this process."""
    code = execute(args)
    if code:
        raise SystemExit(code)
