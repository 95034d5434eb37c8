"""Sweep workers sharing one Optuna study in a real PostgreSQL server (Debian's, started here as its own user):
one worker joins another's study and counts its trials; two workers on two "hosts" (network namespaces joined by
a veth pair, the server on the first) run one study to exactly --trials trials between them.

Needs PostgreSQL's server binaries (Debian: postgresql); skips where they are missing, unless
IMGTRAIN_REQUIRE_POSTGRES=1 (.ci/run installs them and sets it)."""

from __future__ import annotations

import contextlib
import csv
import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import sweep_inputs_in

pytestmark = pytest.mark.slow  # two to four sweep processes, each importing torch: `make test-slow`

PASSWORD = "s3cret-sweep"
SPACE = {"learning_rate": {"low": 0.001, "high": 0.1, "log": True}, "epochs": 2}


def _postgres_bin() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    return os.path.dirname(found[-1]) if found else None


def _as_postgres(argv: list[str]) -> list[str]:
    """Run as the postgres user when root (the server refuses root), else as whoever runs the tests."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_postgres(address: str = "127.0.0.1", netns: str | None = None):
    """A server on `address` (in namespace `netns`) for the test's length: its URL (user imgtrain, trusted)."""
    folder = Path(tempfile.mkdtemp(prefix="imgtrain-pg-"))  # not under pytest's tmp: root-only, postgres runs as itself
    folder.chmod(0o755)
    try:
        process, url = start_postgres(folder / "cluster", address, netns)
        try:
            yield url
        finally:
            process.terminate()
            process.wait(timeout=30)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def start_postgres(folder: Path, address: str, netns: str | None):
    """initdb a cluster in `folder` (trust authentication, user imgtrain) and start its server on `address`;
    return (process, URL)."""
    bindir = _postgres_bin()
    if bindir is None:
        if os.environ.get("IMGTRAIN_REQUIRE_POSTGRES") == "1":
            pytest.fail("PostgreSQL's server is not installed (apt-get install postgresql)")
        pytest.skip("PostgreSQL's server is not installed (Debian: apt-get install postgresql)")
    folder.mkdir(parents=True)
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    data, port, password = folder / "data", _free_port(), folder / "password"
    password.write_text(PASSWORD)
    if os.geteuid() == 0:
        shutil.chown(password, "postgres")
    init = [f"{bindir}/initdb", "-D", str(data), "-A", "trust", "-U", "imgtrain", "--pwfile", str(password)]
    subprocess.run(_as_postgres([*init, "--no-sync", "-E", "UTF8"]), check=True, capture_output=True, timeout=120)
    with open(data / "pg_hba.conf", "a") as hba:  # loopback is trusted; the other host must give the password
        hba.write("host all all 10.0.0.0/8 scram-sha-256\n")
    prefix = ["ip", "netns", "exec", netns] if netns else []
    server = [f"{bindir}/postgres", "-D", str(data), "-p", str(port), "-k", str(folder), "-c", "fsync=off"]
    server += ["-c", f"listen_addresses={address}"]
    process = subprocess.Popen(prefix + _as_postgres(server), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ready = [f"{bindir}/pg_isready", "-h", address, "-p", str(port)]
    for _ in range(150):
        if subprocess.run(prefix + ready, capture_output=True).returncode == 0:
            credentials = "imgtrain" if address == "127.0.0.1" else f"imgtrain:{PASSWORD}"
            return process, f"postgresql://{credentials}@{address}:{port}/postgres"
        if process.poll() is not None:
            pytest.fail(f"postgres did not start: {process.stderr.read().decode()[-1000:]}")
        time.sleep(0.2)
    process.terminate()
    pytest.fail("postgres did not answer within 30 s")


@pytest.fixture
def postgres():
    with running_postgres() as url:
        yield url


@pytest.fixture
def inputs(small_training_data, tmp_path):
    return sweep_inputs_in(tmp_path, small_training_data, SPACE)


def sweep_command(inputs, out, url, trials, netns=None):
    model, train, valid, spec, space = inputs
    prefix = ["ip", "netns", "exec", netns] if netns else []
    argv = [*prefix, sys.executable, "-m", "imgtrain", "sweep", "--model", model, "--train", train, "--valid", valid,
            "--out", out, "--transform", spec, "--space", space, "--batch-size", "8", "--no-progress",
            "--storage", url, "--study-name", "shared", "--trials", str(trials)]  # fmt: skip
    return [str(a) for a in argv]


def rows(out):
    with open(out / "trials.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_second_worker_joins_the_study_and_counts_the_first_ones_trials(postgres, inputs, tmp_path):
    first = subprocess.run(sweep_command(inputs, tmp_path / "a", postgres, 2), capture_output=True, text=True)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "postgresql://imgtrain@" in first.stderr and "sweep.db" not in first.stderr
    second = subprocess.run(sweep_command(inputs, tmp_path / "b", postgres, 4), capture_output=True, text=True)
    assert second.returncode == 0, second.stderr[-2000:]
    table = rows(tmp_path / "b")
    assert [r["trial"] for r in table] == ["0", "1", "2", "3"]  # two trials run by a, two by b: none repeated
    assert not (tmp_path / "b" / "trials" / "0").exists() and (tmp_path / "a" / "trials" / "0").is_dir()
    assert {r["folder"] for r in table[2:]} == {"trials/2", "trials/3"}
    assert not (tmp_path / "a" / "sweep.db").exists() and not (tmp_path / "b" / "sweep.db").exists()
    other_space = tmp_path / "other.json"
    other_space.write_text(json.dumps({"learning_rate": [0.01]}))
    argv = sweep_command((*inputs[:4], other_space), tmp_path / "c", postgres, 5)
    refused = subprocess.run(argv, capture_output=True, text=True)
    assert refused.returncode == 1 and "searches another space" in refused.stderr


def test_two_hosts_share_one_study_to_exactly_its_trials(network, inputs, tmp_path):
    """The server on host a (10.N.M.1); a worker on each host, started together."""
    (space_a, _, address), (space_b, _, _) = network
    with running_postgres(address, netns=space_a) as url:
        workers = [
            subprocess.Popen(
                sweep_command(inputs, tmp_path / name, url, 6, netns=space),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for name, space in (("a", space_a), ("b", space_b))
        ]
        results = [(w.wait(timeout=300), w.stderr.read() if w.stderr else "") for w in workers]
    assert all(code == 0 for code, _ in results), "\n".join(err[-1500:] for _, err in results)
    assert all("imgtrain:***@" in err and PASSWORD not in err for _, err in results)  # the password never shows
    a, b = rows(tmp_path / "a"), rows(tmp_path / "b")
    finished = {r["trial"] for r in a + b if r["state"] in ("complete", "pruned")}
    assert finished == {str(n) for n in range(6)}  # six trials between them, each run once
    ran_a = {r["trial"] for r in b if r["folder"] and (tmp_path / "a" / r["folder"]).is_dir()}
    ran_b = {r["trial"] for r in b if r["folder"] and (tmp_path / "b" / r["folder"]).is_dir()}
    assert ran_a | ran_b == finished and not ran_a & ran_b
