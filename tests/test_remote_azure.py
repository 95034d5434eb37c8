"""Remote sources: convert from az:// against Azurite, the Azure Storage emulator (from npm), on 127.0.0.1.

Azurite is found as $IMGTRAIN_AZURITE, `azurite-blob` on the PATH, or .azurite/node_modules/.bin/azurite-blob
(what .ci/run installs: `npm install --prefix .azurite azurite`). Without it the tests skip, unless
IMGTRAIN_REQUIRE_AZURITE=1 (CI), where they fail.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from test_remote import every_kind_of_source_converts, missing_and_escaping_keys_are_refused, sample_objects

blob = pytest.importorskip("azure.storage.blob")
pytest.importorskip("adlfs")

#: Azurite's documented development account (public: https://learn.microsoft.com/azure/storage/common/storage-use-azurite).
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
WRONG_KEY = "d3Jvbmcta2V5LW5vdC1mb3ItbG9ncw=="  # base64 of "wrong-key-not-for-logs"


def _azurite() -> str | None:
    local = Path(__file__).resolve().parents[1] / ".azurite" / "node_modules" / ".bin" / "azurite-blob"
    for candidate in (os.environ.get("IMGTRAIN_AZURITE"), shutil.which("azurite-blob"), str(local)):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def _connection_string(port: int, key: str = KEY) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={key};"
        f"BlobEndpoint=http://127.0.0.1:{port}/{ACCOUNT};"
    )


@pytest.fixture(scope="module")
def azurite(tmp_path_factory):
    """Azurite's blob service on a free loopback port, a container `photos` with the sample objects."""
    binary = _azurite()
    if binary is None:
        if os.environ.get("IMGTRAIN_REQUIRE_AZURITE") == "1":
            pytest.fail("Azurite is required here (IMGTRAIN_REQUIRE_AZURITE=1) but was not found.")
        pytest.skip("Azurite is not installed (npm install --prefix .azurite azurite)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen(
        [
            binary,
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--location",
            str(tmp_path_factory.mktemp("azurite")),
            "--silent",
            "--skipApiVersionCheck",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    pytest.fail("Azurite did not start")
                time.sleep(0.2)
        service = blob.BlobServiceClient.from_connection_string(_connection_string(port))
        container = service.create_container("photos")
        for key, body in sample_objects().items():
            container.upload_blob(key, body)
        with pytest.MonkeyPatch.context() as env:
            env.setenv("AZURE_STORAGE_CONNECTION_STRING", _connection_string(port))
            yield port
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # npm's launcher and node: the whole group
        process.wait(timeout=10)


def test_a_prefix_an_archive_and_a_manifest_in_a_container(azurite, tmp_path):
    every_kind_of_source_converts("az://photos", tmp_path)


def test_missing_keys_and_manifests_leaving_their_prefix_are_refused(azurite, tmp_path):
    missing_and_escaping_keys_are_refused("az://photos", tmp_path)


def test_a_wrong_account_key_fails_clearly_without_the_key(azurite, tmp_path, monkeypatch, run_cli):
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", _connection_string(azurite, WRONG_KEY))
    code, out, err = run_cli("convert", "az://photos/labeled", tmp_path / "out")
    assert code == 1 and "Traceback" not in err and "az://photos/labeled" in err
    assert WRONG_KEY not in out + err and KEY not in out + err
    assert not (tmp_path / "out").exists()
