"""``make image-check``: build the container image and run it as production would.

1. Docker: Debian's ``docker.io`` daemon, started here with its own socket, data and exec
   directories (``--iptables=false --bridge=none``: containers use the host network),
   and stopped again at the end, whatever happens. ``docker.io`` and ``mmdebstrap`` are
   installed with apt when missing (root only).
2. Base image: Debian's python3 made into a root filesystem by ``mmdebstrap`` and
   ``docker import``-ed, so no registry is needed; the Dockerfile gets it as ``BASE``.
3. The image is built (``--network host``), then run read-only, as its non-root user,
   with a memory limit, on a port other than 8080. Checked: the user, the read-only root,
   the limit, ``/health``, signed JPEG, WebP and AVIF requests (decoded here), an
   unsigned request (403), and Docker's own HEALTHCHECK turning healthy on that port.
   ``gs://`` and ``abs://`` are on, so the server only starts if the image has their
   clients (the gcs and azure extras); opening them contacts nothing.

The base root filesystem and Docker's layer cache are kept in
``~/.cache/vipsgate/image-check`` (one run at a time: a lock), so later runs download
nothing unless requirements.lock or the Debian package list changes. Without root,
apt or a Docker daemon that can start here, the check is skipped with the reason
(exit 0); ``--require`` turns a skip into a failure. Every step has a time limit.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

#: gs:// and abs:// on, without credentials to fetch: start-up needs their clients
CLOUD_CLIENTS = ("--env", "IMGPROXY_USE_GCS=true", "--env", "VIPSGATE_GCS_NO_AUTH=true",
                 "--env", "IMGPROXY_USE_ABS=true", "--env", "IMGPROXY_ABS_NAME=vipsgate",
                 "--env", "IMGPROXY_ABS_KEY=" + "A" * 86 + "==")

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vipsgate" / \
    "image-check"
SUITE = "bookworm"  # Debian 12: python3 3.11
PACKAGES = ("python3", "python3-venv", "passwd", "ca-certificates")
MMDEBSTRAP = ["--variant=minbase", "--include=" + ",".join(PACKAGES),
              "--dpkgopt=path-exclude=/usr/share/doc/*",
              "--dpkgopt=path-exclude=/usr/share/man/*",
              "--dpkgopt=path-exclude=/usr/share/locale/*",
              "--aptopt=Acquire::Retries \"3\""]
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
IMAGE = "vipsgate:image-check"
MEMORY = "512m"
SIZE = (160, 120)


class Skip(Exception):
    """This machine cannot run the check (not a failure of the image)."""


def say(message: str) -> None:
    print(f"image-check: {message}", flush=True)


def run(args: list[str], timeout: float, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a command with a time limit; raise with its output when it fails."""
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                          check=False, **kwargs)  # type: ignore[call-overload]
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip().splitlines()[-25:]
        raise RuntimeError(f"{' '.join(args[:4])}... exited {done.returncode}:\n"
                           + "\n".join(tail))
    return done  # type: ignore[no-any-return]


def ensure_tools() -> None:
    """dockerd and mmdebstrap from Debian's packages (installed when root and apt)."""
    missing = [pkg for tool, pkg in (("dockerd", "docker.io"), ("mmdebstrap", "mmdebstrap"))
               if shutil.which(tool) is None]
    if not missing:
        return
    if sys.platform != "linux" or os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise Skip(f"needs {' and '.join(missing)}: run as root on Debian/Ubuntu, or "
                   f"apt-get install {' '.join(missing)}")
    say(f"installing {' '.join(missing)} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
    try:
        run(install, 600, env=env)
    except RuntimeError:
        run(["apt-get", "update", "-q"], 300, env=env)
        run(install, 600, env=env)
    # policy-rc.d may let the package start the system daemon: this check never uses it


class Docker:
    """A Docker daemon of our own: its socket, data root and exec root, nothing shared."""

    def __init__(self, data_root: Path, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.socket = run_dir / "docker.sock"
        self.client = shutil.which("docker", path="/usr/bin") or "docker"
        self.log = (run_dir / "dockerd.log").open("w")
        self.process = subprocess.Popen(
            ["dockerd", "--data-root", str(data_root), "--exec-root", str(run_dir / "exec"),
             "--pidfile", str(run_dir / "docker.pid"), "--host", f"unix://{self.socket}",
             "--iptables=false", "--ip6tables=false", "--ip-masq=false", "--bridge=none"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            probe = subprocess.run(self.args("version", "--format", "{{.Server.Version}}"),
                                   capture_output=True, text=True, timeout=20, check=False)
            if probe.returncode == 0:
                say(f"dockerd {probe.stdout.strip()} on {self.socket}")
                return
            time.sleep(0.5)  # polling a daemon's socket: nothing announces readiness
        self.log.flush()
        tail = (self.run_dir / "dockerd.log").read_text().strip().splitlines()[-8:]
        raise Skip("dockerd cannot start on this machine:\n  " + "\n  ".join(tail))

    def args(self, *args: str) -> list[str]:
        return [self.client, "--host", f"unix://{self.socket}", *args]

    def __call__(self, *args: str, timeout: float = 120,
                 env: dict[str, str] | None = None) -> str:
        return run(self.args(*args), timeout, env=env).stdout.strip()

    def stop(self) -> None:
        """SIGTERM (dockerd stops its containers and its containerd), SIGKILL after 60 s;
        then the mounts it leaves in its exec root (the host network namespace's)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self.log.close()
        prefix = str(self.run_dir) + "/"
        with open("/proc/self/mounts") as mounts:
            left = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
        for mount in sorted(left, reverse=True):  # the deepest first
            subprocess.run(["umount", "--lazy", mount], timeout=30, check=False)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"waiting for another image check ({path})")
            fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def base_image(docker: Docker) -> str:
    """The Debian base, made by mmdebstrap once and kept (as a tarball and an image)."""
    key = hashlib.sha256(json.dumps([SUITE, MMDEBSTRAP]).encode()).hexdigest()[:12]
    tag = f"vipsgate-check-base:{SUITE}-{key}"
    if docker("images", "--quiet", tag):
        return tag
    tarball = CACHE / f"base-{SUITE}-{key}.tar"
    if not tarball.exists():
        say(f"making a Debian {SUITE} base with mmdebstrap (downloads its packages, once)")
        partial = tarball.with_suffix(".partial")
        run(["mmdebstrap", "--format=tar", *MMDEBSTRAP, SUITE, str(partial),
             "http://deb.debian.org/debian"], 900)
        partial.rename(tarball)
    docker("import", "--change", f"ENV {PATH_ENV}", str(tarball), tag, timeout=300)
    return tag


def build(docker: Docker, base: str) -> None:
    ca = Path(os.environ.get("PIP_CERT") or "/etc/ssl/certs/ca-certificates.crt")
    secret = ["--secret", f"id=pip-ca,src={ca}"] if ca.is_file() else []
    started = time.monotonic()
    docker("build", "--network", "host", "--build-arg", f"BASE={base}", *secret,
           "--tag", IMAGE, str(ROOT), timeout=900, env={**os.environ, "DOCKER_BUILDKIT": "1"})
    say(f"built {IMAGE} in {time.monotonic() - started:.0f} s")
    docker("image", "prune", "--force", timeout=120)  # the previous build's layers
    docker("builder", "prune", "--force", "--keep-storage", "3gb", timeout=120)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port if port != 8080 else free_port()


def get(url: str, accept: str = "") -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


def check_running(docker: Docker, work: Path) -> None:
    """Run the image as production would, and check it from outside."""
    import pyvips

    from vipsgate.signing import Signer

    images = work / "images"
    images.mkdir()
    pyvips.Image.black(640, 480, bands=3).draw_circle([200, 80, 40], 320, 240, 150,
                                                      fill=True).write_to_file(
        str(images / "photo.jpg"))
    images.chmod(0o755)
    (images / "photo.jpg").chmod(0o644)
    key, salt, port = secrets.token_hex(32), secrets.token_hex(32), free_port()
    container = docker(
        "run", "--detach", "--network", "host", "--read-only", "--tmpfs", "/tmp:size=64m",
        "--memory", MEMORY, "--memory-swap", MEMORY, "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges", "--health-interval", "1s",
        "--health-retries", "3", "--env", f"IMGPROXY_BIND=127.0.0.1:{port}",
        "--env", f"IMGPROXY_KEY={key}", "--env", f"IMGPROXY_SALT={salt}",
        "--env", "IMGPROXY_LOCAL_FILESYSTEM_ROOT=/images",
        *CLOUD_CLIENTS, "--volume", f"{images}:/images:ro", IMAGE)
    try:
        inspect = json.loads(docker("inspect", container))[0]
        assert inspect["Config"]["User"] == "10001:10001", inspect["Config"]["User"]
        assert inspect["HostConfig"]["ReadonlyRootfs"] is True
        assert inspect["HostConfig"]["Memory"] == 512 * 1024 * 1024
        assert "CMD" in inspect["Config"]["Healthcheck"]["Test"][0]
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: get(base + "/health")[0] == 200, 60, "/health answering 200")
        assert docker("exec", container, "id", "-u") == "10001"
        refused = subprocess.run(docker.args("exec", container, "touch", "/opt/written"),
                                 capture_output=True, text=True, timeout=60, check=False)
        assert refused.returncode != 0 and "Read-only" in refused.stderr, refused.stderr
        signer = Signer.from_hex([key], [salt])
        for fmt in ("jpeg", "webp", "avif"):
            path = f"/rs:fit:{SIZE[0]}:{SIZE[1]}/plain/local:///photo.jpg@{fmt}"
            status, kind, body = get(f"{base}/{signer.sign(path)}{path}")
            assert (status, kind) == (200, f"image/{fmt}"), (status, kind, body[:200])
            image = pyvips.Image.new_from_buffer(body, "")
            assert (image.width, image.height) == SIZE, (fmt, image.width, image.height)
            say(f"signed {fmt}: 200, {len(body)} bytes, {image.width}x{image.height}")
        path = "/rs:fit:100:100/plain/local:///photo.jpg"
        status, kind, _ = get(f"{base}/{signer.sign(path)}{path}", "image/avif,image/webp")
        assert (status, kind) == (200, "image/avif"), (status, kind)
        assert get(f"{base}/insecure{path}")[0] == 403
        wait_for(lambda: docker("inspect", "--format", "{{.State.Health.Status}}",
                                container) == "healthy", 60,
                 f"Docker's HEALTHCHECK to turn healthy on port {port}")
        say(f"HEALTHCHECK healthy on port {port}; read-only, uid 10001, memory {MEMORY}")
    except BaseException:
        logs = subprocess.run(docker.args("logs", "--tail", "30", container), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60,
                              check=False)
        say("container log:\n" + logs.stdout)
        raise
    finally:
        docker("rm", "--force", container, timeout=60)


def wait_for(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, RuntimeError):
            if condition():  # type: ignore[operator]
                return
        time.sleep(0.2)  # polling a container from outside: nothing else announces it
    raise AssertionError(f"timed out waiting for {what}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--require", action="store_true",
                        help="fail (instead of skipping) when the machine cannot run it")
    args = parser.parse_args()
    started = time.monotonic()
    try:
        if sys.platform != "linux" or os.geteuid() != 0:
            raise Skip("needs root on Linux (it starts its own Docker daemon)")
        ensure_tools()
        with locked(CACHE / "lock"), tempfile.TemporaryDirectory(prefix="vg-ic-",
                                                                 dir="/tmp") as work:
            docker = Docker(CACHE / "docker", Path(work))
            try:
                docker.wait_ready()
                build(docker, base_image(docker))
                check_running(docker, Path(work))
            finally:
                docker.stop()
    except Skip as exc:
        say(f"skipped: {exc}")
        return 1 if args.require else 0
    except (AssertionError, RuntimeError, subprocess.TimeoutExpired) as exc:
        say(f"FAILED: {exc}")
        return 1
    say(f"passed in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
