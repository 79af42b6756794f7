"""Where Ray Train keeps a grid's checkpoints, read the way Ray Train writes them.

By default the results folder's ``ray/``; ``ray.storage_path`` moves them to another
absolute path on shared storage or to object storage, ``s3://bucket/prefix``, through
pyarrow's S3 filesystem (endpoint and keys from the usual AWS variables, on every node:
AWS_ENDPOINT_URL for an S3-compatible server, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_DEFAULT_REGION). The results tables stay on a POSIX path (docs/service.md).

Every read here goes through one pyarrow filesystem, local or S3, so resuming, ``raycell
status`` and ``--restart`` treat both alike.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raycell.core.filesystems import check_bucket, s3_filesystem
from raycell.core.layout import TRAIN_DIR, TRAIN_SNAPSHOT


@dataclass(frozen=True)
class CheckpointStore:
    uri: str  # what Ray Train's RunConfig(storage_path=...) gets, and messages name
    fs: Any  # a pyarrow FileSystem
    root: str  # the URI's path on ``fs``

    def folder(self, train_name: str) -> str:
        """A run's Ray Train folder on ``fs``; ``train_name`` is ``<name>-<key>``."""
        return f"{self.root}/{train_name}"

    def where(self, path: str) -> str:
        """A path on ``fs`` as a person finds it again (with its s3:// scheme)."""
        return f"s3://{path}" if self.uri.startswith("s3://") else path

    def read_bytes(self, path: str) -> bytes | None:
        """A file's bytes; None if it is not there."""
        from pyarrow.fs import FileType

        if self.fs.get_file_info(path).type != FileType.File:
            return None
        with self.fs.open_input_stream(path) as stream:
            return stream.read()

    def latest_checkpoint(self, train_name: str) -> dict[str, Any] | None:
        """Ray Train's record of a run's latest registered checkpoint
        (``checkpoint_dir_name``, ``metrics``), None without one; ValueError, KeyError or
        TypeError if it is corrupt."""
        snapshot = self.read_bytes(f"{self.folder(train_name)}/{TRAIN_SNAPSHOT}")
        return None if snapshot is None else json.loads(snapshot)["latest_checkpoint_result"]

    @contextmanager
    def local_file(self, path: str) -> Iterator[Path]:
        """A file of the store as a local path: itself on a local store, a temporary copy
        from object storage."""
        if not self.uri.startswith("s3://"):
            yield Path(path)
            return
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / Path(path).name
            copy.write_bytes(self.read_bytes(path) or b"")
            yield copy

    def run_names(self) -> list[str]:
        """The Ray Train folders under the store (``<name>-<key>``)."""
        from pyarrow.fs import FileSelector, FileType

        found = self.fs.get_file_info(FileSelector(self.root, allow_not_found=True))
        return sorted(Path(f.path).name for f in found if f.type == FileType.Directory)

    def checkpoints(self, train_name: str) -> list[str]:
        """A run's checkpoint folders, as a person finds them again."""
        from pyarrow.fs import FileSelector, FileType

        found = self.fs.get_file_info(FileSelector(self.folder(train_name),
                                                   allow_not_found=True))
        return sorted(self.where(f.path) for f in found
                      if f.type == FileType.Directory and f.base_name.startswith("checkpoint_"))

    def has(self, train_name: str) -> bool:
        from pyarrow.fs import FileType

        return self.fs.get_file_info(self.folder(train_name)).type == FileType.Directory

    def remove(self, train_name: str) -> None:
        if self.has(train_name):
            self.fs.delete_dir(self.folder(train_name))


def open_store(uri: str) -> CheckpointStore:
    """The store at ``uri``: ``s3://bucket/prefix`` or an absolute local path."""
    if uri.startswith("s3://"):
        uri = uri.rstrip("/")
        return CheckpointStore(uri, s3_filesystem(), uri.removeprefix("s3://"))
    from pyarrow.fs import LocalFileSystem

    return CheckpointStore(uri, LocalFileSystem(), uri)


def checkpoint_store(save_dir: Path, storage_path: str | None = None) -> CheckpointStore:
    """The store of a grid whose results go to ``save_dir``: the config's
    ``ray.storage_path``, or the results folder's ``ray/``."""
    return open_store(storage_path or str(Path(save_dir).resolve() / TRAIN_DIR))


def check_reachable(store: CheckpointStore) -> None:
    """Object storage that does not answer, or a bucket that is not there, is one line
    within seconds, before a grid writes anything."""
    check_bucket(store.uri, "ray.storage_path")
