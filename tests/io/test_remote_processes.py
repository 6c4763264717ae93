"""A RemoteSource works in forked children (DataLoader workers under 'fork') and, pickled, in
spawned ones; a child never uses its parent's client, and never breaks the parent's."""

from __future__ import annotations

import multiprocessing
import pickle
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from remote_children import digest, read_and_report
from remote_helpers import QUICK, Store, bounded, missing, skip_without

from bale.errors import RemoteReadError
from bale.io.remote import RemoteSource

KiB = 1 << 10
DATA = np.random.default_rng(11).integers(0, 256, 600 * KiB, dtype=np.uint8).tobytes()
RANGES = [(100 * KiB, 50 * KiB), (300 * KiB, 100 * KiB), (0, 10), (len(DATA) - 40, 40)]


def run_child(context: str, source: Any, ranges: list[tuple[int, int]]) -> tuple[Any, ...]:
    """``read_and_report`` in a child started with ``context``; its report, or a test failure
    if it does not answer in time."""
    ctx = multiprocessing.get_context(context)
    results = ctx.Queue()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
        child = ctx.Process(target=read_and_report, args=(source, ranges, results))
        child.start()
    try:
        report: tuple[Any, ...] = results.get(timeout=60)
    except Exception:
        child.kill()
        pytest.fail(f"the {context} child did not answer: a hang")
    child.join(10)
    results.close()
    results.join_thread()
    return report


def expected(ranges: list[tuple[int, int]]) -> list[str]:
    return [digest(DATA[start : start + size]) for start, size in ranges]


def test_a_forked_child_reads_with_its_own_client(store: Store) -> None:
    store.put("forked.bin", DATA)
    source = store.open("forked.bin", backend="auto" if store.backend == "obstore" else "fsspec")
    assert source.backend == store.backend
    assert source.read(*RANGES[0]) == DATA[RANGES[0][0] : sum(RANGES[0])]  # the parent's client
    source.will_need(450 * KiB, 100 * KiB)  # read-ahead threads running at fork time
    ranges = [*RANGES, (450 * KiB, 100 * KiB)]
    status, backend, digests, _ = run_child("fork", source, ranges)
    assert status == "ok", digests
    assert digests == expected(ranges)
    # obstore's runtime does not survive fork: a child of a parent that used it reads through fsspec
    assert backend == "fsspec"
    # and the parent's connections still work, at once
    started = time.monotonic()
    assert bounded(lambda: source.read(200 * KiB, 1000)) == DATA[200 * KiB : 200 * KiB + 1000]
    assert time.monotonic() - started < 1.0


def test_a_pickled_copy_reads_in_a_spawned_child(store: Store) -> None:
    store.put("spawned.bin", DATA)
    source = store.open("spawned.bin")
    copy = pickle.loads(pickle.dumps(source))
    assert copy.path == source.path and copy.size() == source.size()
    status, backend, digests, requests = run_child("spawn", source, RANGES)
    assert status == "ok", digests
    assert digests == expected(RANGES)
    assert backend == store.backend  # a fresh process: obstore is usable there
    # the size and ETag travel with the pickle: no request to reopen, one per read
    assert requests == len(RANGES)


def test_a_pickle_holds_no_client_and_a_repr_no_credentials(store: Store) -> None:
    store.put("pickled.bin", DATA[:1000])
    source = store.open("pickled.bin")
    state = source.__getstate__()
    assert set(state) == {"url", "storage_options", "options", "size", "etag"}
    assert "secret" not in repr(pickle.loads(pickle.dumps(source)))


def test_forcing_obstore_in_a_forked_child_is_a_clear_error(store: Store) -> None:
    if store.backend != "obstore":
        pytest.skip("about obstore's runtime")
    store.put("forced.bin", DATA)
    source = store.open("forced.bin")  # obstore's runtime now runs in this process
    status, name, message, _ = run_child("fork", source, RANGES[:1])
    assert (status, name) == ("error", RemoteReadError.__name__)
    assert "forked" in message and store.url("forced.bin") in message


@pytest.mark.skipif(bool(missing("fsspec", "aiohttp")), reason="needs fsspec and aiohttp")
def test_a_child_exiting_normally_leaves_the_parents_fsspec_connections_alone(
    tmp_path: Path,
) -> None:
    """A forked child that exits through the interpreter's shutdown (finalizers, atexit) must
    not close the parent's pooled connections: they share descriptors and the epoll set.
    Run in a fresh interpreter, which forks and exits as a script would."""
    script = textwrap.dedent(
        f"""
        import os, sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from remote_servers import RangeServer
        from bale.io.remote import RemoteOptions, RemoteSource
        server = RangeServer()
        server.objects["/b/x.bin"] = bytes(range(256)) * 1024
        options = RemoteOptions(backend="fsspec", read_timeout_s=3, request_timeout_s=5)
        source = RemoteSource(server.url("/b/x.bin"), options=options)
        source.read(0, 100)
        data = bytes(range(256)) * 1024
        for use_it in (True, False):  # a child that reads, and one that never does
            pid = os.fork()
            if pid == 0:
                if use_it:
                    source.read(90_000, 100)
                del source
                sys.exit(0)  # the interpreter's shutdown, finalizers included
            os.waitpid(pid, 0)
            started = time.monotonic()
            start = 100_000 + 1000 * use_it  # past the kept head: a request on a pooled connection
            assert source.read(start, 100) == data[start : start + 100]
            print(round(time.monotonic() - started, 3))
        server.close()
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    # a stall here would last the read timeout (3 s) before a retry on a new connection
    assert all(float(t) < 1.0 for t in result.stdout.split()), result.stdout


def test_remote_modules_import_no_client_library() -> None:
    """``bale.io.remote`` can sit under ``import bale``: it imports no client library, no
    thread pool, no event loop until a source is opened."""
    heavy = ("fsspec", "obstore", "aiohttp", "s3fs", "botocore", "concurrent.futures", "asyncio")
    probe = f"import sys, bale.io.remote\nprint([m for m in {heavy!r} if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_missing_client_library_names_the_packages() -> None:
    """The hint names what pip can install (bale is not on PyPI: no ``bale[s3]``). Run where
    neither obstore nor s3fs can be imported: fsspec reads, and lacks its filesystem package."""
    skip_without("fsspec")
    probe = textwrap.dedent(
        """
        import sys
        sys.modules["obstore"] = sys.modules["s3fs"] = None  # as if not installed
        from bale.io.remote import RemoteSource
        try:
            RemoteSource("s3://bucket/key.bale")
        except ImportError as exc:
            print(exc)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "reading s3:// URLs through fsspec needs its filesystem package (s3fs), which is not "
        "installed: pip install fsspec s3fs"
    )


def test_obstore_that_cannot_be_imported_names_its_package(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """obstore is found (so it is the client for s3://) but fails to import."""
    skip_without("obstore")
    import bale.io.remote_client as remote_client

    real = remote_client.importlib.import_module

    def without_obstore(name: str, *args: Any) -> Any:
        if name.split(".")[0] == "obstore":
            raise ImportError(f"No module named {name!r}", name=name)
        return real(name, *args)

    monkeypatch.setattr(remote_client.importlib, "import_module", without_obstore)
    with pytest.raises(
        ImportError, match=r"needs 'obstore', which is not installed: pip install obstore$"
    ):
        RemoteSource("s3://bucket/key.bale", options=QUICK)
