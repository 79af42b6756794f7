"""Checkpoints in object storage (core/storage.py) against a real S3-compatible server on
loopback (moto), and the ways a storage path is bad input: one line, exit 2, within
seconds, nothing written. Runs that checkpoint to S3, lose a node and resume from it:
tests/service/test_multinode.py."""

from __future__ import annotations

import socket
import time

import pytest
import yaml

from raycell.core.storage import checkpoint_store, open_store
from tests.conftest import assert_clean_error, run_main, tiny_config


def _config(tmp_path, tahoe_dir, storage_path: str):
    save = tmp_path / "out"
    settings = tiny_config(tahoe_dir, save).model_dump()
    settings["ray"]["storage_path"] = storage_path
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(settings))
    return tmp_path / "c.yaml", save


@pytest.mark.parametrize(("path", "culprit"), [
    ("s3:///checkpoints", "'s3:///checkpoints' names no bucket"),
    ("checkpoints", "'checkpoints': use s3://bucket/prefix or an absolute path"),
    ("gs://bucket/x", "'gs://bucket/x': use s3://bucket/prefix"),
])
def test_a_storage_path_without_a_bucket_or_not_absolute_is_refused(tmp_path, tahoe_dir, path,
                                                                    culprit):
    config, save = _config(tmp_path, tahoe_dir, path)
    result = run_main("tahoe", "--config", config, "--strategy", "streaming")
    assert_clean_error(result, f"ray.storage_path: {culprit}", save)


@pytest.mark.parametrize("endpoint", ["refused", "silent"])
def test_object_storage_that_does_not_answer_is_one_line_within_seconds(
        tmp_path, tahoe_dir, monkeypatch, silent_endpoint, endpoint):
    if endpoint == "refused":  # nothing listens there
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            endpoint = f"http://127.0.0.1:{s.getsockname()[1]}"
    else:
        endpoint = silent_endpoint
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    config, save = _config(tmp_path, tahoe_dir, "s3://bucket/checkpoints")
    started = time.monotonic()
    result = run_main("tahoe", "--config", config, "--strategy", "streaming")
    assert time.monotonic() - started < 10
    assert_clean_error(result, f"ray.storage_path s3://bucket/checkpoints: object storage at "
                               f"{endpoint} does not answer", save)


def test_a_bucket_that_is_not_there_is_one_line(tmp_path, tahoe_dir, monkeypatch, s3):
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    config, save = _config(tmp_path, tahoe_dir, "s3://no-such-bucket/checkpoints")
    result = run_main("tahoe", "--config", config, "--strategy", "streaming")
    assert_clean_error(result, f"no bucket 'no-such-bucket' at {s3.endpoint}", save)


def test_the_store_reads_s3_as_the_local_folder(tmp_path, monkeypatch, s3):
    """The same files through both filesystems: run folders, the checkpoint record,
    checkpoint folders, removal."""
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    remote = open_store(s3.bucket("store") + "/prefix/")
    local = checkpoint_store(tmp_path)
    assert remote.uri == "s3://store/prefix" and local.uri == str(tmp_path / "ray")
    snapshot = b'{"latest_checkpoint_result": {"checkpoint_dir_name": "checkpoint_1", ' \
               b'"metrics": {"epoch": 1}}}'
    for store in (remote, local):
        assert store.run_names() == [] and store.latest_checkpoint("a-0123") is None
        store.fs.create_dir(f"{store.folder('a-0123')}/checkpoint_1")
        with store.fs.open_output_stream(f"{store.folder('a-0123')}/checkpoint_1/state.pt") as f:
            f.write(b"state")
        with store.fs.open_output_stream(
                f"{store.folder('a-0123')}/checkpoint_manager_snapshot.json") as f:
            f.write(snapshot)
        assert store.run_names() == ["a-0123"]
        assert store.latest_checkpoint("a-0123")["metrics"]["epoch"] == 1
        (checkpoint,) = store.checkpoints("a-0123")
        with store.local_file(f"{store.folder('a-0123')}/checkpoint_1/state.pt") as path:
            assert path.read_bytes() == b"state"
        store.remove("a-0123")
        assert store.run_names() == [] and not store.has("a-0123")
    assert checkpoint == str(tmp_path / "ray" / "a-0123" / "checkpoint_1")
    assert remote.checkpoints("b") == [] and remote.where("store/prefix/x") == "s3://store/prefix/x"
