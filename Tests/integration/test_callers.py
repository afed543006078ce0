"""Real callers of runc, pointed at Berth: Podman (through conmon) and containerd (its
runc v2 shim). They need a pure cgroup v2 host with every controller, so they run in the
VM (Scripts/vm); elsewhere, or without the Debian packages, they are skipped."""
import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest

from conftest import BERTH, CGROUP2, REPO, wait_for

CONTROLLERS = set(open(os.path.join(CGROUP2, "cgroup.controllers")).read().split())
IN_VM = {"memory", "pids", "cpu"} <= CONTROLLERS and CGROUP2 == "/sys/fs/cgroup"


@pytest.fixture(scope="module")
def caller_rootfs():
    d = tempfile.mkdtemp(prefix="berth-callers-")
    subprocess.run([os.path.join(REPO, "Scripts", "mkrootfs"), d + "/rootfs"], check=True)
    yield d + "/rootfs"
    shutil.rmtree(d, ignore_errors=True)


# ---- Podman ---------------------------------------------------------------------------

needs_podman = pytest.mark.skipif(not (IN_VM and shutil.which("podman") and shutil.which("conmon")),
                                  reason="needs Podman and a pure cgroup v2 host (run Scripts/vm)")


@pytest.fixture
def podman():
    # Podman refuses a runroot longer than 50 characters: a short directory of our own.
    d = tempfile.mkdtemp(prefix="bp-", dir="/tmp")
    base = ["podman", "--root", d + "/storage", "--runroot", d + "/run",
            "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "file",
            "--runtime", BERTH]

    def run(*args, check=False, timeout=120):
        return subprocess.run(base + list(args), capture_output=True, text=True, timeout=timeout, check=check)
    yield run
    run("rm", "-af", "-t", "0")
    subprocess.run(["umount", "-R", d + "/storage"], capture_output=True)
    shutil.rmtree(d, ignore_errors=True)


@needs_podman
def test_podman_run_limits_and_exit_codes(podman, caller_rootfs):
    p = podman("run", "--rm", "--network", "none", "--memory", "64m", "--pids-limit", "50", "--rootfs", caller_rootfs,
               "/bin/sh", "-c", "echo hello; cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max")
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["hello", "67108864", "50"]
    assert podman("run", "--rm", "--network", "none", "--rootfs", caller_rootfs, "/bin/sh", "-c", "exit 3").returncode == 3
    # Podman maps "executable file not found" / "no such file" to 127, "permission denied" to 126.
    assert podman("run", "--rm", "--network", "none", "--rootfs", caller_rootfs, "/nonexistent").returncode == 127
    assert podman("run", "--rm", "--network", "none", "--rootfs", caller_rootfs, "/etc/passwd").returncode == 126


@needs_podman
def test_podman_tty(podman, caller_rootfs):
    p = podman("run", "--rm", "-t", "--network", "none", "--rootfs", caller_rootfs, "/bin/sh", "-c", "test -t 1 && echo tty-yes")
    assert p.returncode == 0, p.stderr
    assert "tty-yes" in p.stdout


@needs_podman
def test_podman_lifecycle(podman, caller_rootfs):
    p = podman("run", "-d", "--name", "bx", "--network", "none", "--rootfs", caller_rootfs, "/bin/sh", "-c", "sleep 300")
    assert p.returncode == 0, p.stderr
    p = podman("exec", "bx", "sh", "-c", "echo exec-ok; ps | grep -c sleep")
    assert p.returncode == 0 and "exec-ok" in p.stdout, p.stderr
    assert podman("pause", "bx").returncode == 0
    assert "paused" in podman("inspect", "--format", "{{.State.Status}}", "bx").stdout
    assert podman("unpause", "bx").returncode == 0
    assert "running" in podman("inspect", "--format", "{{.State.Status}}", "bx").stdout
    p = podman("stop", "-t", "1", "bx")
    assert p.returncode == 0, p.stderr
    assert podman("rm", "bx").returncode == 0


# ---- containerd ---------------------------------------------------------------------------

needs_containerd = pytest.mark.skipif(not (IN_VM and shutil.which("containerd") and shutil.which("ctr")),
                                      reason="needs containerd and a pure cgroup v2 host (run Scripts/vm)")


def oci_image(rootfs, out, name):
    """An OCI image layout made by hand from the rootfs: one layer, a config, a manifest."""
    import hashlib
    import tarfile
    blobs = os.path.join(out, "layout", "blobs", "sha256")
    os.makedirs(blobs)

    def blob(data):
        h = hashlib.sha256(data).hexdigest()
        with open(os.path.join(blobs, h), "wb") as f:
            f.write(data)
        return {"digest": "sha256:" + h, "size": len(data)}
    layer_tar = os.path.join(out, "layer.tar")
    with tarfile.open(layer_tar, "w") as t:
        t.add(rootfs, arcname=".")
    layer = open(layer_tar, "rb").read()
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    lb = dict(blob(layer), mediaType="application/vnd.oci.image.layer.v1.tar")
    config = {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [diff_id]},
              "config": {"Env": ["PATH=/bin:/sbin:/usr/bin"], "Cmd": ["/bin/sh"]}}
    cb = dict(blob(json.dumps(config).encode()), mediaType="application/vnd.oci.image.config.v1+json")
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": cb, "layers": [lb]}
    mb = dict(blob(json.dumps(manifest).encode()), mediaType="application/vnd.oci.image.manifest.v1+json")
    mb["annotations"] = {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": "latest"}
    mb["platform"] = {"architecture": "amd64", "os": "linux"}
    with open(os.path.join(out, "layout", "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [mb]}, f)
    with open(os.path.join(out, "layout", "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    img = os.path.join(out, "image.tar")
    with tarfile.open(img, "w") as t:
        for entry in os.listdir(os.path.join(out, "layout")):
            t.add(os.path.join(out, "layout", entry), arcname=entry)
    return img


@pytest.fixture(scope="module")
def containerd(caller_rootfs):
    d = tempfile.mkdtemp(prefix="berth-containerd-")
    sock = os.path.join(d, "containerd.sock")
    log = open(os.path.join(d, "containerd.log"), "w")
    daemon = subprocess.Popen(["containerd", "--root", os.path.join(d, "root"), "--state", os.path.join(d, "state"),
                               "--address", sock], stdout=log, stderr=subprocess.STDOUT)
    assert wait_for(lambda: os.path.exists(sock), timeout=30)

    def ctr(*args, check=False, timeout=120, **kw):
        return subprocess.run(["ctr", "--address", sock] + list(args), capture_output=True, text=True,
                              timeout=timeout, check=check, **kw)
    name = "docker.io/library/berth-test:latest"
    img = oci_image(caller_rootfs, d, name)
    p = ctr("image", "import", "--snapshotter", "native", "--all-platforms", img)
    assert p.returncode == 0, p.stderr
    ctr.image = name
    ctr.address = sock
    ctr.log = os.path.join(d, "containerd.log")
    yield ctr
    daemon.terminate()
    daemon.wait(timeout=30)
    subprocess.run(["umount", "-R", os.path.join(d, "state")], capture_output=True)
    shutil.rmtree(d, ignore_errors=True)


def run_args(ctr, *extra):
    return ["run", "--snapshotter", "native", "--runtime", "io.containerd.runc.v2", "--runc-binary", BERTH] + list(extra)


@needs_containerd
def test_containerd_run_with_limits(containerd):
    p = containerd(*run_args(containerd, "--rm", containerd.image, "c1", "sh", "-c", "echo hello from containerd"))
    assert p.returncode == 0, p.stderr
    assert p.stdout == "hello from containerd\n"
    # Limits, checked from the host on a running task (ctr's default spec gives the
    # container no cgroup2 view of its own cgroup).
    p = containerd(*run_args(containerd, "-d", "--memory-limit", str(64 << 20), "--cpus", "0.5", containerd.image, "c4", "sleep", "300"))
    assert p.returncode == 0, p.stderr
    try:
        rows = [l.split() for l in containerd("task", "ls").stdout.splitlines()[1:]]
        pid = int([r for r in rows if r[0] == "c4"][0][1])
        rel = [l for l in open(f"/proc/{pid}/cgroup").read().splitlines() if l.startswith("0::")][0][3:]
        assert open(CGROUP2 + rel + "/memory.max").read().strip() == str(64 << 20)
        # ctr 1.6 has no pids flag (Podman's test covers pids.max); its --cpus becomes cpu.max.
        assert open(CGROUP2 + rel + "/cpu.max").read().strip() == "50000 100000"
    finally:
        containerd("task", "kill", "-s", "SIGKILL", "c4")
        wait_for(lambda: "STOPPED" in containerd("task", "ls").stdout, timeout=30)
        containerd("task", "delete", "-f", "c4")
        containerd("container", "delete", "c4")


@needs_containerd
def test_containerd_pids_limit_from_a_spec(containerd, caller_rootfs, tmp_path):
    # ctr 1.6 has no pids flag; `ctr run --config` takes a whole runtime spec instead.
    d = tmp_path / "spec"
    d.mkdir()
    subprocess.run([BERTH, "spec", "--bundle", str(d)], check=True)
    spec = json.loads((d / "config.json").read_text())
    spec["process"]["args"] = ["sh", "-c", "cat /sys/fs/cgroup/pids.max"]
    spec["process"]["terminal"] = False
    spec["linux"]["resources"]["pids"] = {"limit": 42}
    spec["root"] = {"path": caller_rootfs, "readonly": True}
    (d / "config.json").write_text(json.dumps(spec))
    # With a spec file ctr takes only the container id: the root comes from the spec.
    args = ["run", "--runtime", "io.containerd.runc.v2", "--runc-binary", BERTH, "--rm",
            "--config", str(d / "config.json"), "c5"]
    p = containerd(*args)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "42"


@needs_containerd
def test_containerd_tty(containerd):
    # ctr -t wants a terminal of its own: it runs under a pty, as at a person's terminal.
    from test_terminal import run_in_pty
    args = ["ctr", "--address", containerd.address] + run_args(containerd, "--rm", "-t", containerd.image, "c2",
                                                               "sh", "-c", "test -t 1 && echo tty-yes")
    out, status = run_in_pty([shutil.which("ctr")] + args[1:], timeout=60)
    assert status == 0, out
    assert "tty-yes" in out


@needs_containerd
def test_containerd_exec_pause_kill(containerd):
    p = containerd(*run_args(containerd, "-d", containerd.image, "c3", "sleep", "300"))
    assert p.returncode == 0, p.stderr
    try:
        p = containerd("task", "exec", "--exec-id", "e1", "c3", "sh", "-c", "echo exec-ok")
        assert p.returncode == 0 and "exec-ok" in p.stdout, p.stderr
        assert containerd("task", "pause", "c3").returncode == 0
        assert "PAUSED" in containerd("task", "ls").stdout
        assert containerd("task", "resume", "c3").returncode == 0
        assert "RUNNING" in containerd("task", "ls").stdout
        assert containerd("task", "kill", "-s", "SIGKILL", "c3").returncode == 0
        assert wait_for(lambda: "STOPPED" in containerd("task", "ls").stdout, timeout=30)
    finally:
        containerd("task", "delete", "-f", "c3")
        containerd("container", "delete", "c3")
    log = open(containerd.log).read()
    assert "unable to retrieve OCI runtime error" not in log
