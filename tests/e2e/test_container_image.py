"""The image users deploy, built from the Dockerfile and run the way SageMaker runs it.

A private Docker engine builds the project's Dockerfile as it is, with build arguments only: a base image
made from Debian's packages stands in for python:3.11-slim-bookworm (Docker Hub is not reachable here), and
torch is the pinned version's CPU wheel instead of the CUDA one (this machine has no GPU; the CUDA build's
pairing with the endpoint's driver is checked by tests/sdturbo_ops/test_gpu_stack.py). The container then gets
SageMaker's contract: ``docker run IMAGE serve`` with no network, the model data read-only at
/opt/ml/model, the image's own USER, SIGTERM on stop.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import threading
import time

import pytest

from tests.support.container import (
    SUMMARY, PrivateDocker, WheelIndex, base_rootfs, container_http, engine_problems, host_network_state,
    import_base_image, local_cpu_wheel, make_tempdir,
)
from tests.support import emf
from tests.support.helpers import PYTHON, REPO, decode_image, wait_until
from tests.support.images import b64, encode, picture

# The first test pays for the image build (minutes on two cores), so the per-test limit is raised here.
pytestmark = [pytest.mark.container, pytest.mark.timeout(1800)]

IMAGE = "sdturbo-serve:test"
BASE = "sdturbo-test-base:bookworm"
CACHE = REPO / "build" / "container"


def report(request, line: str) -> None:
    """Shown at the end of the test run, also when the tests pass (image size, build time)."""
    request.config.stash.setdefault(SUMMARY, []).append(line)


@pytest.fixture(scope="module")
def engine():
    problems = engine_problems()
    if problems:
        message = ("the image test needs " + ", ".join(problems) + "; `make test` installs the packages "
                   "when run as root")
        if os.environ.get("CI"):
            pytest.fail(message)  # CI must run this test, never skip it
        pytest.skip(message)
    before = host_network_state()
    docker = PrivateDocker(make_tempdir("sdt-docker-"))
    try:
        docker.start()
        yield docker
    finally:
        docker.stop()
        assert not docker.root.exists(), f"{docker.root} was left behind"
        assert host_network_state() == before, "the Docker engine changed the host's ip_forward or iptables"


@pytest.fixture(scope="module")
def image(engine, request):
    started = time.monotonic()
    tarball, fresh = base_rootfs(CACHE)
    base_seconds = time.monotonic() - started
    import_base_image(engine, tarball, BASE)
    report(request, f"base image: {'made with mmdebstrap' if fresh else 'reused rootfs from ' + str(tarball)} "
                    f"in {base_seconds:.0f} s")

    wheel = local_cpu_wheel()
    scratch = make_tempdir("sdt-wheels-")
    index = WheelIndex(wheel, scratch) if wheel else None
    torch_args = (["--build-arg", f"TORCH_INDEX_URL={index.url}", "--build-arg", "TORCH_VARIANT=cpu"] if index
                  else ["--build-arg", "TORCH_INDEX_URL=https://pypi.org/simple", "--build-arg", "TORCH_VARIANT="])
    report(request, f"torch for the test build: {wheel or 'PyPI (no local CPU wheel; a large CUDA build)'}")
    started = time.monotonic()
    try:
        build = engine.docker("build", "--network", "host", "--progress", "plain", "--build-arg",
                              f"BASE_IMAGE={BASE}", *torch_args, "-t", IMAGE, str(REPO), check=False, timeout=1500)
    finally:
        if index:
            index.close()
        shutil.rmtree(scratch, ignore_errors=True)
    build_seconds = time.monotonic() - started
    assert build.returncode == 0, f"docker build failed:\n{build.stderr[-6000:]}"
    size = int(engine.docker("image", "inspect", "-f", "{{.Size}}", IMAGE).stdout)
    report(request, f"image {IMAGE}: {size / 1e9:.2f} GB, built in {build_seconds:.0f} s")
    return IMAGE


class Container:
    """One `docker run ... IMAGE serve`, polling /ping inside its network namespace from its first moment."""

    def __init__(self, engine: PrivateDocker, model_dir, env: dict[str, str] | None = None):
        self.engine = engine
        env_args = [arg for key, value in (env or {}).items() for arg in ("-e", f"{key}={value}")]
        self.started = time.monotonic()
        self.id = engine.docker("run", "-d", "--network", "none", "-v", f"{model_dir}:/opt/ml/model:ro",
                                *env_args, IMAGE, "serve").stdout.strip()
        self.pid = int(self.inspect("{{.State.Pid}}"))
        self.pings: list[int] = []
        self.last_ping = ""

    def inspect(self, template: str) -> str:
        return self.engine.docker("inspect", "-f", template, self.id).stdout.strip()

    def request(self, method: str, path: str, body: bytes | None = None, **kwargs):
        return container_http(self.pid, method, path, body, **kwargs)

    def post(self, payload, timeout: float = 60):
        return self.request("POST", "/invocations", json.dumps(payload).encode(), timeout=timeout)

    def ping(self) -> int:
        reply = self.request("GET", "/ping", content_type=None, timeout=2)
        self.pings.append(reply.status)
        self.last_ping = reply.body.decode(errors="replace")
        return reply.status

    def settled(self) -> bool:
        """Ready, exited, or failed to load: waiting longer would change nothing."""
        return (self.ping() == 200 or "failed to load" in self.last_ping
                or self.inspect("{{.State.Running}}") != "true")

    def logs(self) -> str:
        result = self.engine.docker("logs", self.id, check=False)
        return result.stdout + result.stderr

    def remove(self) -> None:
        self.engine.docker("rm", "-f", self.id, check=False)


@pytest.fixture(scope="module")
def container(engine, image, sagemaker_model_dir):
    running = Container(engine, sagemaker_model_dir)
    try:
        wait_until(running.settled, 180, 0.2, what="/ping to turn healthy in the container")
        assert running.pings[-1] == 200, f"{running.last_ping}\n{running.logs()[-4000:]}"
        yield running
    finally:
        running.remove()


def test_runs_as_the_images_own_non_root_user(container):
    assert container.inspect("{{.Config.User}}") == "1000:1000"
    status = open(f"/proc/{container.pid}/status").read()
    assert "\nUid:\t1000\t1000\t1000\t1000\n" in status


def test_ping_is_503_while_loading_then_200(container):
    answered = [status for status in container.pings if status]
    assert 503 in answered and answered[-1] == 200, container.pings
    assert answered.index(200) > answered.index(503)


def test_invocations_returns_a_png(container):
    reply = container.post({"prompt": "a cat", "seed": 3, "width": 256})
    assert reply.status == 200, reply.body[:500]
    image = decode_image(reply.json()["image"])
    assert (image.format, image.size) == ("PNG", (256, 512))


def test_stdout_carries_cloudwatch_records_of_each_stage_and_the_cold_start(container):
    """What SageMaker sends to the endpoint's log group: the container's stdout. Every EMF record there is
    a whole line that follows the format's specification (tests/support/emf.py); a batch's stages, the
    workers' starts and the cold start's phases are among them; no prompt is."""
    prompt = "a lighthouse for the metrics test"
    assert container.post({"prompt": prompt, "seed": 4, "width": 256}).status == 200

    def streams():
        logs = container.engine.docker("logs", container.id, check=False)
        return logs.stdout, logs.stderr

    def batch_records():
        stdout, _ = streams()
        return emf.events(emf.records(stdout), "batch") and emf.records(stdout)

    found = wait_until(batch_records, 30, 0.5, what="a batch record on the container's stdout")
    stdout, stderr = streams()
    assert '"_aws"' not in stderr
    batch = [emf.metrics(record) for record in emf.events(found, "batch")]
    assert any(m["GenerateTime"] > 0 and m["EncodeTime"] >= 0 and m["Images"] >= 1 for m in batch), batch
    assert {found[0][key] for key in ("Endpoint", "Model", "InstanceType")} == {"local"}
    phases = {name for record in emf.events(found, "worker-start") + emf.events(found, "cold-start")
              for name in emf.metrics(record)}
    assert {"StartupImports", "StartupModelLoad", "StartupWarmUp", "StartupReady", "ColdStartContainer",
            "ColdStartReady", "ColdStartFirstReply"} <= phases
    assert "lighthouse" not in "\n".join(line for line in stdout.splitlines() if '"_aws"' in line)


def test_invocations_with_accept_image_png_returns_the_png_itself(container):
    payload = json.dumps({"prompt": "a cat", "seed": 3, "width": 256}).encode()
    reply = container.request("POST", "/invocations", payload, accept="image/png")
    assert reply.status == 200, reply.body[:500]
    assert (reply.headers["content-type"], reply.headers["x-seed"]) == ("image/png", "3")
    assert reply.body == base64.b64decode(container.post(json.loads(payload)).json()["image"])


def test_image_to_image_returns_a_png_of_the_images_size(container):
    """An image body of 1.6 MB (over the frontend's former 1 MiB limit) through the container's own
    TorchServe config: the reply is the image's size."""
    start = b64(encode(picture(768, 512), "PNG", compress_level=0))
    assert len(start) > 2**20
    reply = container.post({"prompt": "a cat", "seed": 3, "image": start, "strength": 0.5})
    assert reply.status == 200, reply.body[:500]
    image = decode_image(reply.json()["image"])
    assert (image.format, image.size) == ("PNG", (768, 512))


@pytest.mark.parametrize("body, content_type, status", [
    (b"{not json", "application/json", 400),
    (json.dumps({"prompt": "a cat", "width": 1001}).encode(), "application/json", 400),
    (json.dumps({"prompt": "a cat", "steps": 2}).encode(), "application/json", 400),
    (b"prompt=a+cat", "application/x-www-form-urlencoded", 415),
    (json.dumps({"prompt": "x" * 70_000}).encode(), "application/json", 413),
    (json.dumps({"prompt": "a cat", "image": b64(encode(picture(256, 256))[:300])}).encode(), "application/json", 400),
], ids=["malformed", "bad-width", "unknown-field", "form", "oversize", "truncated-image"])
def test_bad_request_gets_its_4xx_json(container, body, content_type, status):
    reply = container.request("POST", "/invocations", body, content_type=content_type)
    assert reply.status == status, reply.body[:500]
    assert reply.json()["code"] == status and reply.json()["message"]


def test_healthcheck_reports_healthy(container):
    # The Dockerfile's HEALTHCHECK probes every 15 s; the first probe after the model is warm passes.
    health = wait_until(lambda: container.inspect("{{.State.Health.Status}}") == "healthy" or None, 90, 1,
                        what="docker's health status to turn healthy")
    assert health


def test_docker_stop_drains_the_request_in_flight_and_exits_0_within_30s(container):
    result = {}

    # Two 1024x1024 images: about 5 s of CPU work on two idle cores, so it is still running when the stop
    # comes and done well inside the 25 s drain even on a busy machine (four took over 25 s under load).
    def slow_request():
        result["reply"] = container.post({"prompt": "a cat", "num_images": 2, "width": 1024, "height": 1024})

    thread = threading.Thread(target=slow_request)
    thread.start()
    time.sleep(1.0)  # the request is in the worker now
    started = time.monotonic()
    container.engine.docker("stop", "--time", "30", container.id, timeout=60)
    stopped_after = time.monotonic() - started
    thread.join(60)
    logs = container.logs()
    assert container.inspect("{{.State.ExitCode}}") == "0", logs[-3000:]
    assert stopped_after < 30
    assert result["reply"].status == 200 and len(result["reply"].json()["images"]) == 2, logs[-5000:]
    assert "stopped cleanly" in logs


def test_cuda_required_without_cuda_answers_503_naming_the_cause(engine, image, sagemaker_model_dir, request):
    # What the stack sets on GPU instance types; this machine has no GPU (and the test image a CPU torch).
    running = Container(engine, sagemaker_model_dir, env={"SDTURBO_DEVICE": "cuda"})
    try:
        wait_until(lambda: running.post({"prompt": "a cat"}, timeout=30).status == 503, 120, 0.5,
                   what="the worker to refuse requests")
        after = time.monotonic() - running.started
        report(request, f"SDTURBO_DEVICE=cuda without CUDA: 503 naming the cause {after:.1f} s after docker run")
        assert running.ping() == 503
        started = time.monotonic()
        reply = running.post({"prompt": "a cat"}, timeout=30)
        assert reply.status == 503 and time.monotonic() - started < 10
        message = reply.json()["message"]
        assert "CUDA is not usable" in message and "built without CUDA" in message, message
    finally:
        running.remove()


def test_model_data_the_container_user_cannot_read_exits_4_with_one_line(engine, image, sagemaker_model_dir,
                                                                        tmp_path):
    model = tmp_path / "model"
    shutil.copytree(sagemaker_model_dir, model)
    locked = next((model / "model" / "unet").glob("*.safetensors"))
    locked.chmod(0o600)  # what some model writers leave; the container's uid 1000 cannot open it
    run = engine.docker("run", "--network", "none", "-v", f"{model}:/opt/ml/model:ro", image, "serve",
                        check=False, timeout=120)
    assert run.returncode == 4, run.stdout[-2000:] + run.stderr[-2000:]
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "/opt/ml/model/model/unet/" in lines[0] and "chmod -R a+rX" in lines[0], lines


def test_without_cgroups_the_image_test_says_why_in_one_line():
    """Issue 35: as root where no cgroups are mounted (a container started without them), the image test
    ended in 15 errors, each a long dockerd log whose last line was the cause. It now says so in one line
    before any engine starts: here an engine test runs in a mount namespace whose /sys/fs/cgroup is unmounted
    (outside CI, so that it is skipped with its reason rather than failed)."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        message = "a mount namespace of its own needs root and unshare (util-linux)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    env = {name: value for name, value in os.environ.items() if name != "CI"}
    engine_test = f"{__file__}::test_runs_as_the_images_own_non_root_user"
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", 'umount -R /sys/fs/cgroup; exec "$@"', "sh",
         PYTHON, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", engine_test],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    reasons = [line for line in result.stdout.splitlines() if line.startswith("SKIPPED")]
    assert result.returncode == 0 and len(reasons) == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Devices cgroup isn't mounted" in reasons[0], reasons[0]
