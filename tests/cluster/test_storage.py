"""A study whose directory is a filesystem URI: file:// and s3:// (a local S3-compatible server).

The S3 server is moto's, on 127.0.0.1 only: a stand-in for a cloud bucket, which cannot
exist here. Every read and write goes through pyarrow's S3FileSystem, as on AWS; the
endpoint travels inside the URI (`?endpoint_override=...&scheme=http`), so the trial
processes find the server with no environment of their own but the credentials.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest

from ablate.store import ResultStore, resolve_study

pytestmark = [pytest.mark.slow, pytest.mark.ray]

VARIANTS = ("baseline", "no-skips")
TABLES = ("runs", "class_metrics", "image_metrics", "history")
EXPECTED = {(variant, 0) for variant in VARIANTS}
# moto 5.2.0-5.2.1 answer CompleteMultipartUpload with the wrong XML root element, which
# pyarrow's S3 client rejects (getmoto/moto#10055, fixed in 5.2.2).
MOTO_MINIMUM = (5, 2, 2)
BUCKET = "ablate-results"
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}

Study = tuple[str, subprocess.CompletedProcess]


def _env(**extra: str) -> dict[str, str]:
    """`ablate run`'s environment: no cluster address and no S3 endpoint inherited."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "AWS_ENDPOINT_URL")}
    return {**env, **extra}


def _run_study(
    tmp: Path, out: str, env: dict[str, str], write_grid, run_ablate
) -> subprocess.CompletedProcess:
    """Two runs (baseline, no-skips; seed 0) on a fresh local Ray (`--address local`)."""
    grid = write_grid(tmp / "grid.yaml", "storage", seeds=1)
    return run_ablate("run", str(grid), "--out", out, "--address", "local", env=env, cwd=tmp)


def _tables(uri: str) -> dict:
    store = ResultStore(uri)
    return {name: store.read(name) for name in TABLES}


@pytest.fixture(scope="module")
def file_study(tmp_path_factory: pytest.TempPathFactory, write_grid, run_ablate) -> Study:
    tmp = tmp_path_factory.mktemp("file-uri")
    uri = f"file://{tmp / 'study'}"
    return uri, _run_study(tmp, uri, _env(), write_grid, run_ablate)


def test_file_uri_study_stores_every_run_once(file_study: Study, assert_each_run_once) -> None:
    uri, result = file_study
    assert "runs: 2/2 finished (2 ok" in result.stdout, result.stdout + result.stderr
    assert_each_run_once(_tables(uri), EXPECTED)
    root = Path(resolve_study(uri).root)
    assert (root / "grid.yaml").is_file() and (root / "dataset.json").is_file()
    assert sorted(p.name for p in (root / "checkpoints" / "baseline" / "seed=0").iterdir()) == [
        "best.pt",
        "initial.pt",
    ]


def test_file_uri_study_is_summarized(file_study: Study) -> None:
    uri, result = file_study
    assert result.returncode == 0, result.stdout + result.stderr
    assert (Path(resolve_study(uri).root) / "summary" / "report.html").is_file()


def _moto_version() -> tuple[int, ...]:
    return tuple(int(part) for part in version("moto").split(".")[:3] if part.isdigit())


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 with an empty bucket; its http endpoint."""
    pytest.importorskip("moto.server", reason="moto[server] (dev extra) is not installed")
    if _moto_version() < MOTO_MINIMUM:
        pytest.skip(f"moto {version('moto')} breaks pyarrow multipart uploads (need >= 5.2.2)")
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=endpoint, **_boto_credentials()).create_bucket(Bucket=BUCKET)
    yield endpoint
    server.stop()


def _boto_credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "region_name": FAKE_CREDENTIALS["AWS_DEFAULT_REGION"],
    }


@pytest.fixture(scope="module")
def s3_study(
    s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory, write_grid, run_ablate
) -> Iterator[Study]:
    tmp = tmp_path_factory.mktemp("s3-uri")
    uri = f"s3://{BUCKET}/studies/storage?endpoint_override={s3_endpoint}&scheme=http"
    result = _run_study(tmp, uri, _env(**FAKE_CREDENTIALS), write_grid, run_ablate)
    with pytest.MonkeyPatch.context() as patch:
        for key, value in FAKE_CREDENTIALS.items():
            patch.setenv(key, value)  # for this process's reads of the bucket
        yield uri, result


def test_s3_study_stores_every_run_once(s3_study: Study, assert_each_run_once) -> None:
    uri, result = s3_study
    assert "runs: 2/2 finished (2 ok" in result.stdout, result.stdout + result.stderr
    assert_each_run_once(_tables(uri), EXPECTED)
    location = resolve_study(uri)
    assert location.exists("grid.yaml") and location.exists("dataset.json")
    assert location.exists("checkpoints", "baseline", "seed=0", "best.pt")
    assert not location.exists("study.lock")  # released at the end


def test_s3_study_is_summarized(s3_study: Study) -> None:
    uri, result = s3_study
    assert result.returncode == 0, result.stdout + result.stderr
    assert resolve_study(uri).exists("summary", "report.html")
