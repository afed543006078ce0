"""Real callers of runc, pointed at Berth: Podman (through conmon) and containerd (its
runc v2 shim), with limits. They run where limits work: in the VM (pure cgroup v2 with
every controller, Scripts/vm) and on a cgroup v1 or hybrid host (this one); without the
Debian packages they are skipped. With systemd as pid 1 (Scripts/vm --systemd) each caller
runs in its default configuration there, the systemd cgroup driver, and the tests check
that the container landed in the caller's systemd scope."""
import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest

from conftest import APPARMOR, BERTH, CGROUP2, SELINUX, CGROUP_V1, REPO, SYSTEMD_PID1, host_cgroup, limit_file, wait_for

CONTROLLERS = set(open(os.path.join(CGROUP2, "cgroup.controllers")).read().split())
IN_VM = {"memory", "pids", "cpu"} <= CONTROLLERS and CGROUP2 == "/sys/fs/cgroup"
LIMITS = IN_VM or CGROUP_V1


@pytest.fixture(scope="module")
def caller_rootfs():
    d = tempfile.mkdtemp(prefix="berth-callers-")
    subprocess.run([os.path.join(REPO, "Scripts", "mkrootfs"), d + "/rootfs"], check=True)
    yield d + "/rootfs"
    shutil.rmtree(d, ignore_errors=True)


# ---- Podman ---------------------------------------------------------------------------

needs_podman = pytest.mark.skipif(not (LIMITS and shutil.which("podman") and shutil.which("conmon")),
                                  reason="needs Podman, and cgroup v1 or a full cgroup v2 (run Scripts/vm)")


@pytest.fixture
def podman():
    # Podman refuses a runroot longer than 50 characters: a short directory of our own.
    d = tempfile.mkdtemp(prefix="bp-", dir="/tmp")
    base = ["podman", "--root", d + "/storage", "--runroot", d + "/run",
            "--storage-driver", "vfs", "--events-backend", "file", "--runtime", BERTH]
    # Podman's own default (systemd) where systemd runs; cgroupfs elsewhere.
    if not SYSTEMD_PID1:
        base += ["--cgroup-manager", "cgroupfs"]
    # Podman asks for nofile and nproc limits above the hard ones; root here lacks
    # CAP_SYS_RESOURCE to raise them (runc fails the same way), so `run` asks for less.
    ulimits = [] if IN_VM else ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768"]
    had_parent = {r for r in v1_roots() if os.path.isdir(r + "/libpod_parent")}
    had_roots = set(v1_roots())

    def run(*args, check=False, timeout=120):
        args = list(args)
        if args and args[0] == "run":
            args[1:1] = ulimits
        return subprocess.run(base + args, capture_output=True, text=True, timeout=timeout, check=check)
    run.store = d
    run.ulimits = ulimits
    yield run
    run("pod", "rm", "-af", "-t", "0")
    run("rm", "-af", "-t", "0")
    subprocess.run(["umount", "-R", d + "/storage"], capture_output=True)
    shutil.rmtree(d, ignore_errors=True)
    # Podman's cgroupfs parent, in every hierarchy (and as a plain directory, with files,
    # where a controller is not mounted: Podman makes /sys/fs/cgroup/hugetlb and the like
    # in the tmpfs).
    for r in v1_roots():
        if r in had_parent or not os.path.isdir(r + "/libpod_parent"):
            continue
        if not os.path.ismount(r):
            shutil.rmtree(r + "/libpod_parent", ignore_errors=True)
            if r not in had_roots and not os.listdir(r):
                os.rmdir(r)
            continue
        for top, dirs, _ in os.walk(r + "/libpod_parent", topdown=False):
            try:
                os.rmdir(top)
            except OSError:
                pass
    # Plain directories Podman made for hierarchies the host does not mount.
    for r in set(v1_roots()) - had_roots:
        if not os.path.ismount(r):
            shutil.rmtree(r, ignore_errors=True)


def v1_roots():
    return [os.path.join("/sys/fs/cgroup", n) for n in os.listdir("/sys/fs/cgroup")] if CGROUP_V1 else []


@needs_podman
def test_podman_run_limits_and_exit_codes(podman, caller_rootfs):
    p = podman("run", "--rm", "--network", "none", "--memory", "64m", "--pids-limit", "50", "--cpus", "0.5",
               "--rootfs", caller_rootfs, "/bin/sh", "-c",
               f"echo hello; cat {limit_file('memory.max')} {limit_file('pids.max')} {limit_file('cpu.max')}")
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["hello", "67108864", "50", "50000"] + ([] if CGROUP_V1 else ["100000"])
    assert podman("run", "--rm", "--network", "none", "--rootfs", caller_rootfs, "/bin/sh", "-c", "exit 3").returncode == 3
    # Podman maps "executable file not found" / "no such file" to 127, "permission denied" to 126.
    assert podman("run", "--rm", "--network", "none", "--rootfs", caller_rootfs, "/nonexistent").returncode == 127
    assert podman("run", "--rm", "--network", "none", "--rootfs", caller_rootfs, "/etc/passwd").returncode == 126


@needs_podman
@pytest.mark.skipif(not APPARMOR, reason="needs AppArmor (the VM)")
def test_podman_apparmor_default_profile(podman, caller_rootfs):
    # Podman 4.3 loads its containers-default-<version> profile and names it in the config.
    p = podman("run", "--rm", "--network", "none", "--rootfs", caller_rootfs, "cat", "/proc/self/attr/current")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("containers-default-") and p.stdout.strip().endswith(" (enforce)"), p.stdout
    p = podman("run", "--rm", "--privileged", "--network", "none", "--rootfs", caller_rootfs,
               "cat", "/proc/self/attr/current")
    assert p.returncode == 0 and p.stdout.strip() == "unconfined", (p.stdout, p.stderr)
    p = podman("run", "-d", "--name", "aa", "--network", "none", "--rootfs", caller_rootfs, "sleep", "300")
    assert p.returncode == 0, p.stderr
    p = podman("exec", "aa", "cat", "/proc/self/attr/current")
    assert p.returncode == 0 and p.stdout.startswith("containers-default-"), (p.stdout, p.stderr)
    podman("rm", "-f", "-t", "0", "aa")


@needs_podman
@pytest.mark.skipif(not SELINUX, reason="needs SELinux (Scripts/vm --selinux)")
def test_podman_selinux_labels(podman, caller_rootfs):
    # Podman 4.3 labels every container by default: container_t and container_file_t with
    # the container's own categories.
    p = podman("run", "--rm", "--network", "none", "--rootfs", caller_rootfs, "sh", "-c",
               "cat /proc/self/attr/current; echo; cat /proc/self/mounts")
    assert p.returncode == 0, p.stderr
    label = p.stdout.splitlines()[0].strip("\0")
    assert ":container_t:s0:c" in label, p.stdout
    assert "container_file_t:" + label.split(":", 3)[3] in p.stdout, p.stdout


@needs_podman
def test_podman_tty(podman, caller_rootfs):
    p = podman("run", "--rm", "-t", "--network", "none", "--rootfs", caller_rootfs, "/bin/sh", "-c", "test -t 1 && echo tty-yes")
    assert p.returncode == 0, p.stderr
    assert "tty-yes" in p.stdout


@needs_podman
def test_podman_lifecycle(podman, caller_rootfs):
    p = podman("run", "-d", "--name", "bx", "--network", "none", "--rootfs", caller_rootfs, "/bin/sh", "-c", "sleep 300")
    assert p.returncode == 0, p.stderr
    cid = p.stdout.strip()
    if SYSTEMD_PID1:
        assert podman("info", "--format", "{{.Host.CgroupManager}}").stdout.strip() == "systemd"
        pid = int(podman("inspect", "--format", "{{.State.Pid}}", "bx").stdout)
        # In its scope in every hierarchy (one on cgroup v2, each v1 one on a hybrid host).
        paths = {l.split(":", 2)[2] for l in open(f"/proc/{pid}/cgroup").read().splitlines()}
        assert paths == {f"/machine.slice/libpod-{cid}.scope"}, paths
    p = podman("exec", "bx", "sh", "-c", "echo exec-ok; ps | grep -c sleep")
    assert p.returncode == 0 and "exec-ok" in p.stdout, p.stderr
    assert podman("pause", "bx").returncode == 0
    assert "paused" in podman("inspect", "--format", "{{.State.Status}}", "bx").stdout
    assert podman("unpause", "bx").returncode == 0
    assert "running" in podman("inspect", "--format", "{{.State.Status}}", "bx").stdout
    p = podman("stop", "-t", "1", "bx")
    assert p.returncode == 0, p.stderr
    assert podman("rm", "bx").returncode == 0


@needs_podman
@pytest.mark.skipif(not CGROUP_V1 or SYSTEMD_PID1,
                    reason="Podman 4.3 pods on a pure v2 host: the infra container cannot open /dev/null, "
                           "through runc as through Berth (measured in the VM); run on the host")
def test_podman_pod_without_a_network_talks_over_loopback(podman, caller_rootfs, tmp_path, monkeypatch):
    # A pod with --network none (and `play kube` alike): its containers share the infra
    # container's network namespace and reach each other on 127.0.0.1, which needs lo up
    # there, as runc brings it up.
    if not shutil.which("buildah"):
        pytest.skip("needs buildah to make the pod's infra image offline")
    buildah = ["buildah", "--root", podman.store + "/storage", "--runroot", podman.store + "/run",
               "--storage-driver", "vfs"]
    tar = str(tmp_path / "rootfs.tar")
    subprocess.run(["tar", "-C", caller_rootfs, "-cf", tar, "."], check=True)
    ctr = subprocess.run(buildah + ["from", "scratch"], capture_output=True, text=True, check=True).stdout.strip()
    subprocess.run(buildah + ["add", ctr, tar, "/"], capture_output=True, check=True)
    subprocess.run(buildah + ["config", "--entrypoint", '["sleep", "100000"]', ctr], capture_output=True, check=True)
    subprocess.run(buildah + ["commit", "-q", ctr, "localhost/berth-pod"], capture_output=True, check=True)
    subprocess.run(buildah + ["rm", ctr], capture_output=True)
    # The infra container takes its limits from containers.conf (pod create has no --ulimit).
    if podman.ulimits:
        conf = tmp_path / "containers.conf"
        conf.write_text('[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n')
        monkeypatch.setenv("CONTAINERS_CONF", str(conf))
    p = podman("pod", "create", "--name", "bpod", "--network", "none", "--infra-image", "localhost/berth-pod")
    assert p.returncode == 0, p.stderr
    p = podman("run", "-d", "--pod", "bpod", "--name", "srv", "--entrypoint", "sh", "localhost/berth-pod",
               "-c", "echo hello-from-the-pod | nc -l -p 8080")
    assert p.returncode == 0, p.stderr
    p = podman("run", "--rm", "--pod", "bpod", "--entrypoint", "sh", "localhost/berth-pod", "-c",
               "for i in 1 2 3 4 5 6 7 8 9 10; do nc -w 2 127.0.0.1 8080 && exit 0; sleep 0.3; done; exit 1")
    assert p.returncode == 0 and "hello-from-the-pod" in p.stdout, (p.stdout, p.stderr)
    # Podman's own pod cleanup fails on a v1 host's unmounted hierarchies (the plain
    # hugetlb directory it made): whatever it leaves, the fixture removes.
    podman("pod", "rm", "-f", "bpod")


# ---- containerd ---------------------------------------------------------------------------

needs_containerd = pytest.mark.skipif(not (LIMITS and shutil.which("containerd") and shutil.which("ctr")),
                                      reason="needs containerd, and cgroup v1 or a full cgroup v2 (run Scripts/vm)")


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


def run_args(ctr, *extra, cid=None):
    """ctr run's flags. Where systemd runs, the shim's SystemdCgroup option (Kubernetes'
    default, `--runc-systemd-cgroup` in ctr), which wants a slice:prefix:name path."""
    args = ["run", "--snapshotter", "native", "--runtime", "io.containerd.runc.v2", "--runc-binary", BERTH]
    if SYSTEMD_PID1:
        args += ["--runc-systemd-cgroup", "--cgroup", f"system.slice:ctr:{cid}"]
    return args + list(extra)


@needs_containerd
def test_containerd_run_with_limits(containerd):
    p = containerd(*run_args(containerd, "--rm", containerd.image, "c1", "sh", "-c", "echo hello from containerd", cid="c1"))
    assert p.returncode == 0, p.stderr
    assert p.stdout == "hello from containerd\n"
    # Limits, checked from the host on a running task (ctr's default spec gives the
    # container no cgroup2 view of its own cgroup).
    p = containerd(*run_args(containerd, "-d", "--memory-limit", str(64 << 20), "--cpus", "0.5", containerd.image, "c4", "sleep", "300", cid="c4"))
    assert p.returncode == 0, p.stderr
    try:
        rows = [l.split() for l in containerd("task", "ls").stdout.splitlines()[1:]]
        pid = int([r for r in rows if r[0] == "c4"][0][1])
        # ctr 1.6 has no pids flag (Podman's test covers pids.max); its --cpus becomes the
        # CFS quota.
        if SYSTEMD_PID1:
            assert host_cgroup(pid, "memory").endswith("/system.slice/ctr-c4.scope")
        if CGROUP_V1:
            assert open(host_cgroup(pid, "memory") + "/memory.limit_in_bytes").read().strip() == str(64 << 20)
            cpu = host_cgroup(pid, "cpu")
            assert open(cpu + "/cpu.cfs_quota_us").read().strip() == "50000"
            assert open(cpu + "/cpu.cfs_period_us").read().strip() == "100000"
        else:
            cg = host_cgroup(pid, "memory")
            assert open(cg + "/memory.max").read().strip() == str(64 << 20)
            assert open(cg + "/cpu.max").read().strip() == "50000 100000"
        # The shim reads the container's cgroups for its metrics.
        p = containerd("task", "metrics", "c4")
        assert p.returncode == 0, p.stderr
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
    spec["process"]["args"] = ["sh", "-c", f"cat {limit_file('pids.max')}"]
    spec["process"]["terminal"] = False
    spec["linux"]["resources"]["pids"] = {"limit": 42}
    spec["root"] = {"path": caller_rootfs, "readonly": True}
    (d / "config.json").write_text(json.dumps(spec))
    # With a spec file ctr takes only the container id: the root comes from the spec.
    args = ["run", "--runtime", "io.containerd.runc.v2", "--runc-binary", BERTH, "--rm",
            "--config", str(d / "config.json"), "c5"]
    if SYSTEMD_PID1:
        spec["linux"]["cgroupsPath"] = "system.slice:ctr:c5"
        (d / "config.json").write_text(json.dumps(spec))
        args[1:1] = ["--runc-systemd-cgroup", "--cgroup", "system.slice:ctr:c5"]
    p = containerd(*args)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "42"


@needs_containerd
def test_containerd_tty(containerd):
    # ctr -t wants a terminal of its own: it runs under a pty, as at a person's terminal.
    from test_terminal import run_in_pty
    args = ["ctr", "--address", containerd.address] + run_args(containerd, "--rm", "-t", containerd.image, "c2",
                                                               "sh", "-c", "test -t 1 && echo tty-yes", cid="c2")
    out, status = run_in_pty([shutil.which("ctr")] + args[1:], timeout=60)
    assert status == 0, out
    assert "tty-yes" in out


@needs_containerd
def test_containerd_exec_pause_kill(containerd):
    p = containerd(*run_args(containerd, "-d", containerd.image, "c3", "sleep", "300", cid="c3"))
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


@needs_containerd
def test_containerd_cri_sandbox_cpu_shares(containerd):
    # containerd's CRI puts cpu.shares 2 on every pod sandbox; on v1 it is written as is.
    p = containerd(*run_args(containerd, "-d", "--cpu-shares", "2", containerd.image, "c6", "sleep", "300", cid="c6"))
    assert p.returncode == 0, p.stderr
    try:
        rows = [l.split() for l in containerd("task", "ls").stdout.splitlines()[1:]]
        pid = int([r for r in rows if r[0] == "c6"][0][1])
        if CGROUP_V1:
            assert open(host_cgroup(pid, "cpu") + "/cpu.shares").read().strip() == "2"
        else:
            assert open(host_cgroup(pid, "cpu") + "/cpu.weight").read().strip() == "1"
    finally:
        containerd("task", "kill", "-s", "SIGKILL", "c6")
        wait_for(lambda: "STOPPED" in containerd("task", "ls").stdout, timeout=30)
        containerd("task", "delete", "-f", "c6")
        containerd("container", "delete", "c6")
