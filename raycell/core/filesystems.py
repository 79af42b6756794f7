"""Files named by URI through pyarrow's filesystems: a local path, ``s3://bucket/key`` or
``gs://bucket/key``.

S3 takes its endpoint and keys from the usual AWS variables (AWS_ENDPOINT_URL for an
S3-compatible server, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION);
pyarrow's own S3 filesystem ignores AWS_ENDPOINT_URL, so it is passed here. The keys go
into the filesystem object, so that read tasks in other processes and on other nodes,
which get it pickled, read with the launching process's keys. GCS is pyarrow's
GcsFileSystem with Google's default credentials (not tested here: no GCS server runs
on this machine).
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from raycell.core.errors import RaycellError

SCHEMES = ("s3://", "gs://")
# A probe of object storage gives up within seconds: an endpoint that does not answer is
# bad input, not something to retry for minutes (pyarrow's defaults: 3 attempts, long waits).
PROBE_TIMEOUT_S = 4


def is_url(value: str) -> bool:
    return str(value).startswith(SCHEMES)


def endpoint() -> str | None:
    """An S3-compatible server's address, as the AWS variables give it (None: AWS's own)."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")


def bucket_of(uri: str) -> str:
    """``s3://bucket/prefix`` -> ``bucket`` ("" when the URI names none)."""
    return fs_path(uri).split("/", 1)[0]


def fs_path(uri: str) -> str:
    """A URI's path on its filesystem: ``bucket/key`` for object storage."""
    for scheme in SCHEMES:
        if uri.startswith(scheme):
            return uri.removeprefix(scheme).rstrip("/")
    return uri


def join(uri: str, *parts: str) -> str:
    return "/".join([uri.rstrip("/"), *parts])


def s3_filesystem(probe: bool = False):
    """pyarrow's S3 filesystem as the AWS variables set it up (``probe``: one attempt,
    seconds to answer)."""
    from pyarrow import fs

    address = endpoint()
    options: dict[str, Any] = {"endpoint_override": address} if address else {}
    keys = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if all(keys):
        options |= {"access_key": keys[0], "secret_key": keys[1],
                    "session_token": os.environ.get("AWS_SESSION_TOKEN")}
    if os.environ.get("AWS_DEFAULT_REGION"):
        options["region"] = os.environ["AWS_DEFAULT_REGION"]
    if probe:
        options |= {"connect_timeout": PROBE_TIMEOUT_S, "request_timeout": PROBE_TIMEOUT_S,
                    "retry_strategy": fs.AwsStandardS3RetryStrategy(max_attempts=1)}
    return fs.S3FileSystem(**options)


def filesystem(uri: str, probe: bool = False):
    """The pyarrow filesystem that holds ``uri``."""
    from pyarrow import fs

    if uri.startswith("s3://"):
        return s3_filesystem(probe)
    if uri.startswith("gs://"):
        return fs.GcsFileSystem(**({"retry_time_limit": timedelta(seconds=PROBE_TIMEOUT_S)}
                                   if probe else {}))
    return fs.LocalFileSystem()


def check_bucket(uri: str, what: str) -> None:
    """Object storage that does not answer, or a bucket that is not there, is one line
    within seconds (``what`` names the setting), before anything is written."""
    if not is_url(uri):
        return
    from pyarrow.fs import FileType

    bucket = bucket_of(uri)
    where = (endpoint() or "AWS's endpoint") if uri.startswith("s3://") else "Google Cloud Storage"
    try:
        found = filesystem(uri, probe=True).get_file_info(bucket).type
    except OSError as error:
        reason = str(error).split("Details:")[-1].strip().rstrip(".")
        raise RaycellError(f"{what} {uri}: object storage at {where} does not answer "
                           f"({reason})") from None
    if found == FileType.NotFound:
        raise RaycellError(f"{what} {uri}: no bucket {bucket!r} at {where}")
