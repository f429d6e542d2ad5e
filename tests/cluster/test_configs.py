"""What ships in cluster/: the launcher config, the KubeRay manifest, the image, local.sh.

No cloud here: the configs are checked against Ray's own launcher schema, against each
other (one Ray version, secret names that exist) and against the `ablate` CLI they run.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
import ray
import yaml

from ablate.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "cluster"


def load(name: str) -> dict:
    return yaml.safe_load((CLUSTER / name).read_text())


def kuberay_documents() -> dict[str, dict]:
    documents = [doc for doc in yaml.safe_load_all((CLUSTER / "kuberay.yaml").read_text()) if doc]
    return {doc["kind"]: doc for doc in documents}


def test_launcher_config_passes_ray_schema() -> None:
    from ray.autoscaler._private.util import validate_config

    validate_config(load("aws.yaml"))  # raises on an unknown or mistyped key


def test_launcher_head_has_no_gpu_and_workers_autoscale() -> None:
    config = load("aws.yaml")
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"] == {"CPU": 0, "GPU": 0}
    workers = [node for name, node in types.items() if name != config["head_node_type"]]
    assert workers, "no worker node type"
    for worker in workers:
        assert worker["resources"]["GPU"] >= 1
        assert 0 <= worker["min_workers"] <= worker["max_workers"] <= config["max_workers"]


def test_launcher_installs_torch_and_ablate_and_points_at_data_and_bucket() -> None:
    config = load("aws.yaml")
    setup = " ; ".join(config["setup_commands"])
    assert "pip install" in setup and "torch" in setup and "download.pytorch.org" in setup
    mounted = [remote for remote, local in config["file_mounts"].items() if local == "."]
    assert mounted and f"pip install -e {mounted[0]}" in setup
    assert any("EBHI_SEG_ROOT=" in command for command in config["head_setup_commands"])
    assert "--out s3://" in (CLUSTER / "aws.yaml").read_text()


def _ray_job() -> dict:
    return kuberay_documents()["RayJob"]


def test_kuberay_manifest_is_a_rayjob_running_ablate_to_a_bucket() -> None:
    job = _ray_job()
    assert job["apiVersion"] == "ray.io/v1"
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:2] == ["ablate", "run"]
    args = build_parser().parse_args(argv[1:])  # the real CLI accepts it
    assert args.out.startswith("s3://")
    # The grid path is inside the image (WORKDIR /home/ray/ablate holds the repo's grids/).
    assert (REPO / Path(args.grid).relative_to("/home/ray/ablate")).is_file()


def _containers(group: dict) -> list[dict]:
    return group["template"]["spec"]["containers"]


def test_kuberay_head_without_gpu_and_gpu_worker_group() -> None:
    cluster = _ray_job()["spec"]["rayClusterSpec"]
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    for container in _containers(head):
        assert "nvidia.com/gpu" not in container["resources"].get("limits", {})
        env = {item["name"]: item for item in container["env"]}
        assert env["EBHI_SEG_ROOT"]["value"].startswith("/")
    (workers,) = cluster["workerGroupSpecs"]
    assert 0 <= workers["minReplicas"] <= workers["replicas"] <= workers["maxReplicas"]
    for container in _containers(workers):
        assert int(container["resources"]["limits"]["nvidia.com/gpu"]) >= 1


def test_kuberay_credentials_come_from_the_declared_secret() -> None:
    documents = kuberay_documents()
    secret = documents["Secret"]
    cluster = documents["RayJob"]["spec"]["rayClusterSpec"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    references = [
        item["valueFrom"]["secretKeyRef"]
        for group in groups
        for container in _containers(group)
        for item in container["env"]
        if "valueFrom" in item
    ]
    assert len(references) == 2 * len(groups)  # key id and secret, on every node
    for reference in references:
        assert reference["name"] == secret["metadata"]["name"]
        assert reference["key"] in secret["stringData"]


def test_configs_use_the_ray_version_the_project_runs() -> None:
    """Driver and nodes must run the same Ray; the configs pin the version tested here."""
    versions = {
        "kuberay": _ray_job()["spec"]["rayClusterSpec"]["rayVersion"],
        "aws image": re.search(r"ray:([\d.]+)-", load("aws.yaml")["docker"]["image"])[1],
        "Dockerfile": re.search(
            r"FROM rayproject/ray:([\d.]+)-", (CLUSTER / "Dockerfile").read_text()
        )[1],
    }
    assert set(versions.values()) == {ray.__version__}, versions


def _local_sh(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {"ABLATE_CLUSTER_DIR": str(tmp_path / "state"), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        ["bash", str(CLUSTER / "local.sh"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_local_sh_parses() -> None:
    result = subprocess.run(
        ["bash", "-n", str(CLUSTER / "local.sh")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "up N"),
        (("up",), "number of worker nodes"),
        (("up", "two"), "number of worker nodes"),
        (("kill", "1"), "no worker node 1"),
    ],
)
def test_local_sh_rejects_bad_arguments(
    args: tuple[str, ...], message: str, tmp_path: Path
) -> None:
    result = _local_sh(*args, tmp_path=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr


def test_local_sh_status_and_down_without_a_cluster(tmp_path: Path) -> None:
    assert "no cluster up" in _local_sh("status", tmp_path=tmp_path).stdout
    down = _local_sh("down", tmp_path=tmp_path)
    assert down.returncode == 0, down.stderr
