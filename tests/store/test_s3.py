"""The store on an object store (s3://), through pyarrow's S3 filesystem.

A real bucket cannot exist here, so moto's S3 server stands in for it (the one mock of this
folder); everything above the HTTP API (pyarrow's S3FileSystem, the store) is the real code.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow.fs as pafs
import pytest

from ablate.engine.lock import StudyLock
from ablate.errors import UserError
from ablate.store import ResultStore, StudyDir, check_writable, resolve_study

BUCKET = "ablate-test"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    server_module = pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    server = server_module.ThreadedMotoServer(port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        client = boto3.client("s3", endpoint_url=f"http://{host}:{port}", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield f"{host}:{port}"
    server.stop()


def _uri(endpoint: str, name: str) -> str:
    return f"s3://{BUCKET}/{name}?endpoint_override={endpoint}&scheme=http&region=us-east-1"


def test_tables_round_trip_through_s3(s3_endpoint: str) -> None:
    location = resolve_study(_uri(s3_endpoint, "roundtrip"))
    assert not location.local
    check_writable(location)
    store = ResultStore(location, study="demo")
    frame = pd.DataFrame({"category": ["A", "B"], "tp": 1, "fp": 2, "fn": 3, "tn": 4})
    store.write("class_metrics", "baseline", 0, frame)
    store.write("class_metrics", "norm=none", 0, frame)
    store.write("runs", "baseline", 0, pd.DataFrame({"status": ["ok"], "error": [None]}))
    assert store.completed() == {("baseline", 0)}
    table = store.read("class_metrics")
    assert len(table) == 4 and set(table["variant"]) == {"baseline", "norm=none"}
    folder = pafs.FileSelector(location.path("results", "class_metrics"))
    listed = {info.base_name for info in location.fs.get_file_info(folder)}
    assert not any(name.startswith(".") for name in listed)  # temporaries were renamed


def test_checkpoint_folder_is_uploaded(s3_endpoint: str, tmp_path: Path) -> None:
    (tmp_path / "best.pt").write_bytes(b"weights")
    location = resolve_study(_uri(s3_endpoint, "upload"))
    location.put_dir(tmp_path, "checkpoints", "baseline", "seed=0")
    assert location.exists("checkpoints", "baseline", "seed=0", "best.pt")


def test_lock_on_s3(s3_endpoint: str) -> None:
    study = StudyDir.open(_uri(s3_endpoint, "locked"))
    with StudyLock(study), pytest.raises(UserError, match="in use"):
        StudyLock(study).acquire()
    assert not study.location.exists("study.lock")


def test_a_run_stores_tables_and_checkpoints_in_s3(s3_endpoint: str, synthetic_root: Path) -> None:
    """The trial's remote path: outputs go to a scratch folder, then up to the bucket."""
    from ablate.config import RunConfig
    from ablate.data.ebhi import load_ebhi
    from ablate.engine.trainable import TrialSetup, run_seed

    config = RunConfig.model_validate(
        {
            "data": {"root": str(synthetic_root)},
            "protocol": {"seeds": 1, "test_fraction": 0.25, "val_fraction": 0.15},
            "model": {"widths": [4, 8]},
            "train": {"image_size": 32, "epochs": 1, "patience": None, "num_workers": 0},
            "augment": {"ops": {}},
        }
    )
    uri = _uri(s3_endpoint, "trained")
    configs = {"baseline": config.model_dump_json()}
    setup = TrialSetup(study="demo", study_uri=uri, run_configs=configs, seeds=[0])
    store = ResultStore(uri, study="demo")
    status, dice = run_seed(StudyDir.open(uri), setup, load_ebhi(synthetic_root), "baseline", 0)
    assert status == "ok" and 0.0 <= dice <= 1.0
    assert store.completed() == {("baseline", 0)}
    assert len(store.read("class_metrics")) == 6
    for name in ("initial.pt", "best.pt"):
        assert store.location.exists("checkpoints", "baseline", "seed=0", name)
    assert store.location.fs.get_file_info(
        pafs.FileSelector(store.location.path("tensorboard", "baseline", "seed=0"), recursive=True)
    )


def test_a_study_in_a_bucket_is_summarized_in_place_and_crafted_keys_go_nowhere(
    s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The summary reads the bucket through the store and writes summary/ back into it: no
    local mirror, so an object key holding `..` cannot become a file outside the study."""
    import boto3
    from ablate_testing import load_conftest

    from ablate.report.summarize import summarize

    local = load_conftest("report/conftest.py").write_study(tmp_path / "hand")
    uri = _uri(s3_endpoint, "hand")
    study = StudyDir.open(uri)
    study.location.put_dir(local)
    client = boto3.client("s3", endpoint_url=f"http://{s3_endpoint}", region_name="us-east-1")
    crafted = "hand/results/runs/../../../../escape/variant=evil__seed=0.parquet"
    client.put_object(Bucket=BUCKET, Key=crafted, Body=b"not parquet")
    monkeypatch.chdir(tmp_path)
    summarize(study)
    assert study.location.exists("summary", "report.html")
    assert study.location.exists("summary", "deltas.csv")
    assert not any(path.name == "escape" for path in tmp_path.rglob("*"))
    assert not Path("/escape").exists()
    assert not (local / "summary").exists()  # nothing was written to a local copy either


def test_status_of_a_study_in_s3(s3_endpoint: str) -> None:
    """`ablate status` on a bucket: counts and the summary's freshness read through the same
    filesystem; the seeds running now are unknown there (runs upload their files at the end)."""
    from ablate.config import DataConfig, GridConfig, Recipe, SyntheticConfig
    from ablate.engine.status import study_status
    from ablate.grid import dump_grid

    study = StudyDir.open(_uri(s3_endpoint, "status"))
    grid = GridConfig(
        study="remote",
        data=DataConfig(synthetic=SyntheticConfig(per_class=4, size=32)),
        protocol={"seeds": 2},
        baseline=Recipe(),
    )
    study.write_grid(dump_grid(grid))
    study.write_dataset({"root": "/data", "counts": {}, "dropped": [], "categories": []})
    runs = pd.DataFrame({"status": ["ok"], "error": [None], "duration_s": [4.0]})
    study.results("remote").write("runs", "baseline", 0, runs.astype({"error": "string"}))
    with StudyLock(study):
        status = study_status(study)
    assert status.state == "running" and status.lock.alive is True
    assert status.variants[0].ok == 1 and status.variants[0].running is None
    assert status.parallelism is None and status.time_left_s is None
    assert status.totals()["running"] is None and status.totals()["pending"] == 1
    assert "running seeds are unknown" in status.format()
    assert status.summary == "missing"
    study.write_summary({"report.html": b"<html></html>"})
    assert study_status(study).summary == "current"
    assert study_status(study).state == "stopped"
