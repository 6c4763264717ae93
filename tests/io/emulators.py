"""Loopback emulators of Google Cloud Storage and Azure Blob Storage for the remote tests: each in a
child process on 127.0.0.1 with a free port and in-memory storage, started with a bounded wait and
stopped by its fixture. A test is skipped only when the emulator is not installed, with the
install command.

- GCS: ``gcp-storage-emulator`` (PyPI, pure Python: the JSON API and a part of the XML API):
  ``.venv/bin/pip install gcp-storage-emulator``.
- Azure: Azurite's blob service (npm):
  ``npm install --prefix .cache/azurite azurite`` (found there, under ``$BALE_AZURITE``, or as
  ``azurite-blob`` on the PATH). Node 18 or later.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STARTUP_S = 30.0

GCS_BUCKET = "balegcs"  # no "-": object_store sends it as %2D, which the emulator does not match
AZURE_CONTAINER = "bale-az"
#: Azurite's well-known development account and key (public, documented by Microsoft).
AZURE_ACCOUNT = "devstoreaccount1"
AZURE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

GCS_HINT = "pip install gcp-storage-emulator"
AZURITE_HINT = "npm install --prefix .cache/azurite azurite (Node 18+), or set BALE_AZURITE"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Emulator:
    """A running emulator: its endpoint (``http://127.0.0.1:PORT``) and its process."""

    endpoint: str
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        """SIGTERM to the emulator's own process group (Azurite's launcher starts node), then
        SIGKILL after 5 s."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        if self.process.stderr is not None:
            self.process.stderr.close()


def _start(command: list[str], port: int, ready: str, name: str) -> Emulator:
    """Start ``command`` in a session of its own; wait (at most STARTUP_S) until GET ``ready``
    answers; fail with its error output if it exits or never answers."""
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    emulator = Emulator(f"http://127.0.0.1:{port}", process)
    deadline = time.monotonic() + STARTUP_S
    while True:
        if process.poll() is not None:
            error = process.stderr.read().decode(errors="replace") if process.stderr else ""
            emulator.stop()
            pytest.fail(f"{name} exited at start (status {process.returncode}): {error[-2000:]}")
        try:
            with urllib.request.urlopen(emulator.endpoint + ready, timeout=1.0):
                return emulator
        except urllib.error.HTTPError:
            return emulator  # it answers (Azurite answers 400 to a bare GET)
        except OSError:
            pass
        if time.monotonic() > deadline:
            emulator.stop()
            pytest.fail(f"{name} did not answer within {STARTUP_S:.0f} s")
        time.sleep(0.05)


# -- GCS ----------------------------------------------------------------------------------------


def start_gcs() -> Emulator:
    """gcp-storage-emulator, in memory, with the bucket GCS_BUCKET."""
    if importlib.util.find_spec("gcp_storage_emulator") is None:
        pytest.skip(f"needs the GCS emulator: {GCS_HINT}")
    port = free_port()
    command = [sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--in-memory", "--default-bucket", GCS_BUCKET, "--quiet"]
    return _start(command, port, "/", "gcp-storage-emulator")


def gcs_put(endpoint: str, name: str, data: bytes, bucket: str = GCS_BUCKET) -> None:
    """Upload an object through the JSON API's media upload (replacing any object there)."""
    query = urllib.parse.urlencode({"uploadType": "media", "name": name})
    request = urllib.request.Request(
        f"{endpoint}/upload/storage/v1/b/{bucket}/o?{query}",
        data=data,
        method="POST",
        headers={"Content-Type": "application/octet-stream"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        json.load(answer)


# -- Azure --------------------------------------------------------------------------------------


def azurite_binary() -> str | None:
    candidates = [
        os.environ.get("BALE_AZURITE", ""),
        str(REPO / ".cache" / "azurite" / "node_modules" / ".bin" / "azurite-blob"),
        shutil.which("azurite-blob") or "",
    ]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


def start_azurite() -> Emulator:
    """Azurite's blob service, in memory, checking shared-key signatures."""
    binary = azurite_binary()
    if binary is None or shutil.which("node") is None:
        pytest.skip(f"needs Azurite: {AZURITE_HINT}")
    port = free_port()
    command = [binary, "--blobHost", "127.0.0.1", "--blobPort", str(port)]
    command += ["--inMemoryPersistence", "--skipApiVersionCheck", "--loose", "--silent"]
    command += ["--disableTelemetry"]
    return _start(command, port, "/", "Azurite")


def azure_connection_string(endpoint: str, key: str = AZURE_KEY) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURE_ACCOUNT};AccountKey={key};"
        f"BlobEndpoint={endpoint}/{AZURE_ACCOUNT};"
    )


@contextlib.contextmanager
def azure_container_client(endpoint: str) -> Iterator[object]:
    """azure-storage-blob's client of AZURE_CONTAINER (the tests' admin: puts, block lists)."""
    if importlib.util.find_spec("azure.storage.blob") is None:
        pytest.skip("needs azure-storage-blob (pip install 'bale[azure]')")
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(azure_connection_string(endpoint))
    try:
        yield service.get_container_client(AZURE_CONTAINER)
    finally:
        service.close()
