"""The obstore client (Rust object_store): ranged reads from S3, GCS, Azure and plain HTTP, with
object_store's own retries and timeouts; fsspec-style storage options translated to its keys."""

from __future__ import annotations

import importlib.util
import json
import os
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from bale.errors import (
    AccessDeniedError,
    BaleError,
    CorruptFileError,
    ObjectNotFoundError,
    RemoteReadError,
)
from bale.io.remote_client import (
    RangeClient,
    RemoteOptions,
    Tail,
    import_client,
    options_key,
    shared_connection,
)
from bale.io.remote_url import AZURE_SCHEMES, GCS_SCHEMES, HTTP_SCHEMES, S3_SCHEMES, RemoteURL

#: The process in which obstore made its first request. obstore runs one tokio runtime per
#: process, started by the first request; its threads do not survive fork(), so in a process
#: forked after that, every obstore call hangs (obstore 0.12, tokio-rs/tokio#4301).
_RUNTIME_PID: list[int | None] = [None]

_STATUS = re.compile(r"status code: (\d{3})")
_RETRIES = re.compile(r"after (\d+) retries")

# fsspec option names (s3fs / gcsfs / adlfs) -> obstore's
_S3_NAMES = {
    "key": "access_key_id",
    "aws_access_key_id": "access_key_id",
    "secret": "secret_access_key",
    "aws_secret_access_key": "secret_access_key",
    "token": "session_token",
    "aws_session_token": "session_token",
    "endpoint_url": "endpoint",
    "region_name": "region",
    "requester_pays": "request_payer",
}
_AZURE_NAMES = {"sas_token": "sas_key", "credential": "account_key"}
# the parts of an Azure connection string (lower case) -> obstore's
_CONNECTION_STRING_NAMES = {
    "accountname": "account_name",
    "accountkey": "account_key",
    "sharedaccesssignature": "sas_key",
    "blobendpoint": "endpoint",
}
_GCS_NAMES = {"endpoint_url": "base_url"}  # gcsfs's name for another server (an emulator)
# options that only steer fsspec's own machinery (caching, listing, botocore): obstore ignores
_FSSPEC_ONLY = frozenset(
    {
        "asynchronous",
        "cache_regions",
        "config_kwargs",
        "default_block_size",
        "default_cache_type",
        "default_fill_cache",
        "listings_expiry_time",
        "loop",
        "max_concurrency",
        "max_paths",
        "retries",
        "s3_additional_kwargs",
        "skip_instance_cache",
        "use_listings_cache",
        "version_aware",
        "project",
        "access",
        "consistency",
        "block_size",
    }
)


class _OptionsError(ValueError):
    """Storage options this client does not understand (the message names keys, not values)."""


def available() -> bool:
    return importlib.util.find_spec("obstore") is not None


def usable_in_this_process() -> bool:
    """False in a process forked after obstore started its runtime (reads would hang)."""
    pid = _RUNTIME_PID[0]
    return pid is None or pid == os.getpid()


def serves(url: RemoteURL) -> bool:
    """Whether this client reads ``url``: a key on S3, GCS or Azure, or an HTTP(S) URL without
    credentials or a query of its own (a presigned URL goes through fsspec, which keeps the
    query as it is)."""
    if not url.key or not available():
        return False
    if url.scheme in HTTP_SCHEMES:
        return not url.has_query and not url.has_userinfo
    return url.scheme in S3_SCHEMES | GCS_SCHEMES | AZURE_SCHEMES


class ObstoreClient(RangeClient):
    name = "obstore"

    def __init__(
        self, url: RemoteURL, storage_options: Mapping[str, Any], options: RemoteOptions
    ) -> None:
        self._obstore: Any = import_client("obstore", url.scheme)
        self._exceptions: Any = importlib.import_module("obstore.exceptions")
        self._display = url.display
        self._path = url.key
        # object_store refuses suffix ranges for Azure (Blob Storage has none): the size first
        self._size_first = url.scheme in AZURE_SCHEMES
        key = ("obstore", url.scheme, url.netloc, options_key(storage_options), options)
        try:
            self._store = shared_connection(
                key, lambda: _store(url, dict(storage_options), options)
            )
        except (BaleError, _OptionsError):
            raise
        except Exception as exc:
            # obstore rejects unknown keys or bad values; name the keys given, never a value
            raise ValueError(
                f"obstore cannot build a {url.scheme}:// client from the storage options given "
                f"(keys: {sorted(storage_options)}): {type(exc).__name__}; the bale repository's "
                "docs/REMOTE.md has the option names, or use RemoteOptions(backend='fsspec')"
            ) from None

    def tail(self, n: int) -> Tail:
        _RUNTIME_PID[0] = os.getpid()
        if self._size_first:
            return self._tail_after_head(n)
        try:
            result = self._obstore.get(self._store, self._path, options={"range": {"suffix": n}})
            data = bytes(result.bytes())
            meta = result.meta
        except Exception as exc:
            # An empty object has no last bytes: S3 answers 416, some servers 200 (NotPartial)
            if _status(exc) == 416 or "NotPartial" in str(exc):
                return self._empty_tail(exc)
            raise self._translate(exc, "opening (a suffix-range GET)") from None
        return Tail(int(meta["size"]), _strong(meta.get("e_tag")), data, 1)

    def _tail_after_head(self, n: int) -> Tail:
        """A HEAD for the size and version, then a bounded GET of the last ``n`` bytes of that
        version: two requests, two round trips."""
        try:
            meta = self._obstore.head(self._store, self._path)
        except Exception as exc:
            raise self._translate(exc, "opening (a HEAD)") from None
        size, etag = int(meta["size"]), _strong(meta.get("e_tag"))
        data = self.get(max(0, size - n), size, etag) if size else b""
        return Tail(size, etag, data, 2 if size else 1)

    def _empty_tail(self, refused: Exception) -> Tail:
        try:
            meta = self._obstore.head(self._store, self._path)
        except Exception as exc:
            raise self._translate(exc, "opening (a HEAD)") from None
        if int(meta["size"]) != 0:
            raise self._translate(refused, "opening (a suffix-range GET)") from None
        return Tail(0, _strong(meta.get("e_tag")), b"", 2)

    def head(self, n: int) -> tuple[bytes, str | None] | None:
        _RUNTIME_PID[0] = os.getpid()
        result = self._obstore.get(self._store, self._path, options={"range": (0, n)})
        return bytes(result.bytes()), _strong(result.meta.get("e_tag"))

    def get(self, start: int, stop: int, etag: str | None) -> bytes:
        _RUNTIME_PID[0] = os.getpid()
        options: dict[str, Any] = {"range": (start, stop)}
        if etag is not None:
            options["if_match"] = etag
        try:
            return bytes(self._obstore.get(self._store, self._path, options=options).bytes())
        except Exception as exc:
            raise self._translate(exc, f"GET of bytes {start}..{stop - 1}") from None

    def _translate(self, exc: Exception, what: str) -> BaleError:
        """obstore's error as a bale error. obstore's messages are never passed on: they hold
        the request URL, and a configuration's debug form."""
        errors = self._exceptions
        status = _status(exc)
        if isinstance(exc, FileNotFoundError) or status == 404:
            return ObjectNotFoundError(f"no object at this URL ({what})", path=self._display)
        if isinstance(
            exc, (errors.PermissionDeniedError, errors.UnauthenticatedError)
        ) or status in (401, 403):
            return AccessDeniedError(
                f"the store refused access ({what}): check the credentials and the bucket's "
                "permissions",
                path=self._display,
            )
        if isinstance(exc, errors.PreconditionError) or status == 412:
            return CorruptFileError(
                "the object changed after it was opened (its ETag no longer matches): open it "
                "again to read the new version",
                path=self._display,
            )
        if isinstance(exc, errors.NotSupportedError) or "NotPartial" in str(exc):
            return RemoteReadError(
                f"the server does not answer byte-range requests ({what})", path=self._display
            )
        retries = _RETRIES.search(str(exc))
        after = f" after {retries.group(1)} retries" if retries else ""
        return RemoteReadError(f"{what} failed{after}: {_reason(exc, status)}", path=self._display)

    def close(self) -> None:
        self._store = None


def _status(exc: Exception) -> int | None:
    match = _STATUS.search(str(exc))
    return int(match.group(1)) if match else None


def _reason(exc: Exception, status: int | None) -> str:
    """A failure in words: the HTTP status, or the kind of transport failure."""
    if status is not None:
        return f"HTTP {status}"
    text = str(exc)
    if "Timeout" in text or "timed out" in text:
        return "timed out"
    if "body error" in text or "Interrupted" in text:
        return "the response body was cut short"
    if "error sending request" in text or "connect" in text.lower():
        return "the connection failed"
    return f"the request failed ({type(exc).__name__})"


def _strong(etag: object) -> str | None:
    """An ETag fit for If-Match: weak ones (W/"...") never match under strong comparison."""
    if not isinstance(etag, str) or not etag or etag.startswith("W/"):
        return None
    return etag


def _store(url: RemoteURL, storage_options: dict[str, Any], options: RemoteOptions) -> Any:
    stores: Any = importlib.import_module("obstore.store")
    client: dict[str, Any] = {
        "connect_timeout": timedelta(seconds=options.connect_timeout_s),
        "read_timeout": timedelta(seconds=options.read_timeout_s),
        "timeout": timedelta(seconds=options.request_timeout_s),
    }
    client.update(storage_options.pop("client_options", None) or {})
    retry = {
        "max_retries": options.max_retries,
        "retry_timeout": timedelta(seconds=options.retry_timeout_s),
        "backoff": {
            "init_backoff": timedelta(seconds=options.backoff_initial_s),
            "max_backoff": timedelta(seconds=max(options.backoff_max_s, options.backoff_initial_s)),
            "base": 2.0,
        },
    }
    common = {"client_options": client, "retry_config": retry}
    if url.scheme in HTTP_SCHEMES:
        headers = storage_options.pop("headers", None)
        _no_more_options(storage_options, url.scheme)
        if headers:
            client["default_headers"] = dict(headers)
        client.setdefault("allow_http", url.scheme == "http")
        return stores.HTTPStore.from_url(f"{url.scheme}://{url.netloc}", **common)
    if url.scheme in S3_SCHEMES:
        config, provider = _s3_config(storage_options)
        endpoint = config.get("endpoint") or os.environ.get("AWS_ENDPOINT_URL", "")
        if str(endpoint).startswith("http://"):
            client.setdefault("allow_http", True)
        return stores.S3Store(url.netloc, config=config, credential_provider=provider, **common)
    if url.scheme in GCS_SCHEMES:
        config = _gcs_config(storage_options)
        if str(config.get("base_url", "")).startswith("http://"):  # an emulator
            client.setdefault("allow_http", True)
        return stores.GCSStore(url.netloc, config=config, **common)
    config = _azure_config(storage_options)
    if str(config.get("endpoint", "")).startswith("http://"):
        client.setdefault("allow_http", True)
    return stores.AzureStore.from_url(f"{url.scheme}://{url.netloc}", config=config, **common)


def _no_more_options(rest: Mapping[str, Any], scheme: str) -> None:
    unknown = sorted(set(rest) - _FSSPEC_ONLY)
    if unknown:
        raise _OptionsError(
            f"storage options {unknown} are not understood by the obstore client for {scheme}:// "
            "URLs; the bale repository's docs/REMOTE.md has the option names, or use "
            "RemoteOptions(backend='fsspec')"
        )


def _s3_config(opts: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    opts = dict(opts)
    client_kwargs = opts.pop("client_kwargs", None) or {}
    opts.update({k: v for k, v in client_kwargs.items() if k in ("endpoint_url", "region_name")})
    profile = opts.pop("profile", None)
    config: dict[str, Any] = {}
    if opts.pop("anon", False):
        config["skip_signature"] = True
    for name, value in opts.items():
        if name in _FSSPEC_ONLY:
            continue
        config[_S3_NAMES.get(name, name)] = value
    provider = None
    explicit = "access_key_id" in config or config.get("skip_signature")
    if not explicit and (profile or _aws_files_in_use()):
        provider = _botocore_credentials(profile, config)
    return config, provider


def _aws_files_in_use() -> bool:
    """Credentials would come from ~/.aws files or a profile, not the environment: the part
    of the usual AWS chain that object_store does not read itself."""
    if os.environ.get("AWS_ACCESS_KEY_ID"):
        return False
    if os.environ.get("AWS_PROFILE") or os.environ.get("AWS_SHARED_CREDENTIALS_FILE"):
        return True
    home = os.path.expanduser("~/.aws")
    return os.path.exists(os.path.join(home, "credentials")) or os.path.exists(
        os.path.join(home, "config")
    )


def _botocore_credentials(profile: str | None, config: dict[str, Any]) -> Any:
    """An obstore credential provider over botocore's chain (profiles, ~/.aws files, SSO, role
    assumption), when botocore is installed (it comes with s3fs) and finds credentials."""
    if importlib.util.find_spec("botocore") is None:
        return None
    session_module: Any = importlib.import_module("botocore.session")
    session = session_module.Session(profile=profile)
    credentials = session.get_credentials()
    if credentials is None:
        return None
    region = session.get_config_variable("region")
    if region and "region" not in config:
        config["region"] = region
    return _BotocoreCredentials(credentials)


class _BotocoreCredentials:
    """obstore's S3 credential provider protocol, answered from botocore (refreshing)."""

    def __init__(self, credentials: Any) -> None:
        self._credentials = credentials

    def __call__(self) -> dict[str, Any]:
        frozen = self._credentials.get_frozen_credentials()
        expiry = getattr(self._credentials, "_expiry_time", None)
        return {
            "access_key_id": frozen.access_key,
            "secret_access_key": frozen.secret_key,
            "token": frozen.token,
            "expires_at": expiry if isinstance(expiry, datetime) else None,
        }

    def __repr__(self) -> str:
        return "_BotocoreCredentials(...)"


def _gcs_config(opts: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for name, value in opts.items():
        if name in _FSSPEC_ONLY:
            continue
        if name == "token":
            if value == "anon":
                config["skip_signature"] = True
            elif isinstance(value, dict):
                config["service_account_key"] = json.dumps(value)
            elif isinstance(value, str) and value not in ("google_default", "cloud", "cache"):
                config["service_account"] = value
        elif name == "anon":
            if value:
                config["skip_signature"] = True
        else:
            config[_GCS_NAMES.get(name, name)] = value
    return config


def _azure_config(opts: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for name, value in opts.items():
        if name in _FSSPEC_ONLY:
            continue
        if name == "anon":
            if value:
                config["skip_signature"] = True
        elif name == "connection_string":
            config.update(_azure_connection_string(str(value)))
        else:
            config[_AZURE_NAMES.get(name, name)] = value
    return config


def _azure_connection_string(text: str) -> dict[str, Any]:
    """adlfs's ``connection_string`` (``AccountName=...;AccountKey=...;BlobEndpoint=...``) as
    obstore's keys. Parts obstore has no use for (the queue and table endpoints, the protocol
    when an endpoint is given) are dropped; a malformed string names no value."""
    parts: dict[str, str] = {}
    for item in text.split(";"):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")  # a key's base64 ends in "=": split once
        if not sep:
            raise _OptionsError("storage option 'connection_string' is not NAME=VALUE;...")
        parts[name.strip().lower()] = value.strip()
    config: dict[str, Any] = {}
    if parts.get("usedevelopmentstorage", "").lower() == "true":
        config["use_emulator"] = True
    for name, key in _CONNECTION_STRING_NAMES.items():
        if parts.get(name):
            config[key] = parts[name]
    if "endpoint" not in config and parts.get("accountname") and parts.get("endpointsuffix"):
        protocol = parts.get("defaultendpointsprotocol", "https")  # a sovereign cloud
        config["endpoint"] = f"{protocol}://{parts['accountname']}.blob.{parts['endpointsuffix']}"
    return config
