"""Docker 20.10, its classic builder, docker-compose 1.29, `buildah bud` and `podman build`,
unchanged, with Berth as their runtime (Debian's packages; images made offline with
Scripts/mkrootfs and `docker import`, no registry).

dockerd runs with its own data-root, exec-root and socket, `runtimes.berth` and
`"default-runtime": "berth"` in its daemon.json, no default bridge and no iptables
rules. On the host (hybrid cgroups) everything but the limits runs; `docker update` of
limits needs the VM's pure cgroup v2 hierarchy (Scripts/vm), where the storage driver is vfs
(the VM's root is an overlay already). With systemd as pid 1 (Scripts/vm --systemd) dockerd
keeps its default cgroup driver on cgroup v2, systemd, and the limits test checks the
container's docker-<id>.scope.
"""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request

import pytest

from conftest import APPARMOR, BERTH, CGROUP2, SELINUX, CGROUP_V1, REPO, SYSTEMD, limit_file, wait_for

DOCKER = "/usr/bin/docker"  # Debian's client, whatever else is on PATH
CONTROLLERS = set(open(os.path.join(CGROUP2, "cgroup.controllers")).read().split())
IN_VM = {"memory", "pids", "cpu"} <= CONTROLLERS and CGROUP2 == "/sys/fs/cgroup"

needs_docker = pytest.mark.skipif(not (os.path.exists("/usr/sbin/dockerd") and os.path.exists(DOCKER)),
                                  reason="needs Debian's docker.io")
host_only = pytest.mark.skipif(IN_VM, reason="runs on the host; the VM run covers the limits only")
vm_only = pytest.mark.skipif(not IN_VM, reason="limits need a pure cgroup v2 host with every controller (run Scripts/vm)")
# Limits work on a pure v2 host with every controller (the VM) and on a v1 or hybrid one
# (this host, through the v1 hierarchies).
limits_here = pytest.mark.skipif(not (IN_VM or CGROUP_V1), reason="needs cgroup v1 or a full cgroup v2 (run Scripts/vm)")

def cgroup_roots():
    """Every mounted cgroup hierarchy (v1 controllers and the v2 one)."""
    roots = []
    for line in open("/proc/self/mounts"):
        f = line.split()
        if f[2] in ("cgroup", "cgroup2"):
            roots.append(f[1])
    return roots


class Docker:
    def __init__(self, base):
        self.base = base
        self.sock = os.path.join(base, "docker.sock")
        self.env = dict(os.environ, DOCKER_HOST="unix://" + self.sock, DOCKER_BUILDKIT="0",
                        DOCKER_CONFIG=os.path.join(base, "client"))
        # The shim calls the runtime with this --root (Docker names it after runc whatever
        # the runtime): Berth's state directories land there.
        self.state_root = os.path.join(base, "exec", "runtime-runc", "moby")

    def __call__(self, *args, timeout=120, check=False, **kw):
        p = subprocess.run([DOCKER] + list(args), capture_output=True, text=True, timeout=timeout,
                           env=self.env, **kw)
        if check:
            assert p.returncode == 0, (args, p.stdout, p.stderr)
        return p

    def tty(self, command, timeout=60):
        """Runs a docker command line under script(1), so that it has a terminal."""
        return subprocess.run(["script", "-qec", command, "/dev/null"], capture_output=True, text=True,
                              timeout=timeout, env=self.env, stdin=subprocess.DEVNULL)

    def berth_state(self, cid):
        p = subprocess.run([BERTH, "--root", self.state_root, "state", cid], capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout)


@pytest.fixture(scope="module")
def docker():
    # Short paths: containerd's socket lives under exec-root and unix socket paths are short.
    base = tempfile.mkdtemp(prefix="bd-", dir="/tmp")
    os.chmod(base, 0o755)
    before = {r: os.path.isdir(os.path.join(r, "docker")) for r in cgroup_roots()}
    cfg = {
        "data-root": os.path.join(base, "data"), "exec-root": os.path.join(base, "exec"),
        "pidfile": os.path.join(base, "docker.pid"), "hosts": ["unix://" + os.path.join(base, "docker.sock")],
        "bridge": "none", "iptables": False, "ip-forward": False, "ip-masq": False,
        "runtimes": {"berth": {"path": BERTH}}, "default-runtime": "berth",
        "storage-driver": "vfs" if IN_VM else "overlay2",
        # Docker labels containers only when asked (Scripts/vm --selinux asks).
        "selinux-enabled": SELINUX,
    }
    with open(os.path.join(base, "daemon.json"), "w") as f:
        json.dump(cfg, f)
    log = open(os.path.join(base, "dockerd.log"), "w")
    daemon = subprocess.Popen(["/usr/sbin/dockerd", "--config-file", os.path.join(base, "daemon.json")],
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    d = Docker(base)
    try:
        assert wait_for(lambda: d("version").returncode == 0, timeout=120), open(log.name).read()[-3000:]
        info = json.loads(d("info", "--format", "{{json .}}", check=True).stdout)
        assert info["DefaultRuntime"] == "berth"
        # Docker's own choice: systemd on cgroup v2 where systemd runs.
        assert info["CgroupDriver"] == ("systemd" if SYSTEMD else "cgroupfs")
        rootfs = os.path.join(base, "rootfs")
        subprocess.run([os.path.join(REPO, "Scripts", "mkrootfs"), rootfs], check=True, capture_output=True)
        tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
        p = subprocess.run([DOCKER, "import", "-", "berth-test:latest"], stdin=tar.stdout, capture_output=True,
                           text=True, env=d.env, timeout=300)
        tar.wait()
        assert p.returncode == 0, p.stderr
        d.rootfs = rootfs
        yield d
    finally:
        ids = d("ps", "-aq").stdout.split()
        if ids:
            d("rm", "-f", *ids, timeout=300)
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait()
        log.close()
        # dockerd's containerd and shims are gone with it; anything mounted under base is not.
        mounts = [l.split()[1] for l in open("/proc/self/mounts") if l.split()[1].startswith(base + "/")]
        for m in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
        # dockerd creates a "docker" cgroup in every hierarchy; the containers' own are gone.
        for root, existed in before.items():
            if not existed and os.path.isdir(os.path.join(root, "docker")):
                try:
                    os.rmdir(os.path.join(root, "docker"))
                except OSError:
                    pass


def run_cmd(docker, *args, **kw):
    return docker("run", "--rm", *args, **kw)


@needs_docker
@host_only
def test_docker_run_exit_codes_and_options(docker, tmp_path):
    assert run_cmd(docker, "berth-test", "sh", "-c", "exit 0").returncode == 0
    assert run_cmd(docker, "berth-test", "sh", "-c", "exit 3").returncode == 3
    p = run_cmd(docker, "berth-test", "/nonexistent")
    assert p.returncode == 127, p.stderr
    p = run_cmd(docker, "berth-test", "/etc/passwd")
    assert p.returncode == 126, p.stderr

    p = run_cmd(docker, "-e", "FOO=bar", "-w", "/work/dir", "-u", "1000:1000", "berth-test",
                "sh", "-c", 'echo "$FOO"; pwd; id -u; id -g')
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["bar", "/work/dir", "1000", "1000"]

    p = run_cmd(docker, "--read-only", "--tmpfs", "/scratch", "berth-test", "sh", "-c",
                "touch /x 2>/dev/null && echo root-writable; touch /scratch/y && echo tmpfs-writable;"
                " grep ' /scratch ' /proc/mounts | cut -d' ' -f3")
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["tmpfs-writable", "tmpfs"]

    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "in").write_text("from the host\n")
    p = run_cmd(docker, "-v", f"{vol}:/vol", "berth-test", "sh", "-c", "cat /vol/in; echo from the container > /vol/out")
    assert p.returncode == 0, p.stderr
    assert p.stdout == "from the host\n"
    assert (vol / "out").read_text() == "from the container\n"

    # --cap-drop ALL --cap-add NET_ADMIN: bit 12 only, in every set but inheritable/ambient.
    p = run_cmd(docker, "--cap-drop", "ALL", "--cap-add", "NET_ADMIN", "berth-test", "grep", "^Cap", "/proc/self/status")
    caps = dict(l.split(":\t") for l in p.stdout.splitlines())
    assert caps["CapEff"] == caps["CapPrm"] == caps["CapBnd"] == "%016x" % (1 << 12), p.stdout
    assert caps["CapInh"] == caps["CapAmb"] == "0" * 16
    p = run_cmd(docker, "berth-test", "grep", "^CapEff", "/proc/self/status")
    assert p.stdout.split()[1] == "00000000a80425fb", p.stdout  # Docker's default set

    p = run_cmd(docker, "--security-opt", "no-new-privileges", "berth-test", "grep", "NoNewPrivs", "/proc/self/status")
    assert p.stdout.split() == ["NoNewPrivs:", "1"], p.stdout
    p = run_cmd(docker, "berth-test", "grep", "NoNewPrivs", "/proc/self/status")
    assert p.stdout.split() == ["NoNewPrivs:", "0"], p.stdout

    # --init: Docker's tini is pid 1, the command its child.
    p = run_cmd(docker, "--init", "berth-test", "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '; echo; echo $$")
    assert p.returncode == 0, p.stderr
    first, second = p.stdout.splitlines()
    assert first.startswith("/sbin/docker-init -- sh -c"), first
    assert second != "1"

    # -it: a terminal inside, the exit status through.
    p = docker.tty(f"{DOCKER} run --rm -it berth-test sh -c 'tty; [ -t 0 ] && echo stdin-is-a-tty; exit 5'")
    assert p.returncode == 5, p.stdout
    assert "/dev/pts/0" in p.stdout and "stdin-is-a-tty" in p.stdout, p.stdout


@needs_docker
@host_only
def test_docker_detached_lifecycle(docker, tmp_path):
    script = 'trap "echo got-usr1" USR1; trap "echo got-term; exit 0" TERM; echo started; while true; do sleep 0.1; done'
    cid = docker("run", "-d", "--name", "life", "berth-test", "sh", "-c", script, check=True).stdout.strip()
    try:
        # It is Berth's container: its state is in Berth's format under the shim's --root.
        st = docker.berth_state(cid)
        assert st["status"] == "running" and st["id"] == cid
        assert os.path.isfile(os.path.join(docker.state_root, cid, "recovery"))  # a Berth-only file

        p = docker("exec", "life", "sh", "-c", "echo exec-ok; tty || true")
        assert p.returncode == 0 and p.stdout.split("\n")[:2] == ["exec-ok", "not a tty"], p
        assert docker("exec", "life", "sh", "-c", "exit 4").returncode == 4
        p = docker.tty(f"{DOCKER} exec -it life sh -c 'tty; exit 6'")
        assert p.returncode == 6 and "/dev/pts/" in p.stdout, p.stdout

        p = docker("top", "life", check=True)
        # Berth's init pid (from its state) is the first process listed.
        assert p.stdout.splitlines()[1].split()[1] == str(st["pid"]), p.stdout
        p = docker("stats", "--no-stream", "--format", "{{.Name}}", "life", check=True)
        assert p.stdout.strip() == "life"

        docker("pause", "life", check=True)
        assert docker.berth_state(cid)["status"] == "paused"
        assert docker("inspect", "-f", "{{.State.Status}}", "life").stdout.strip() == "paused"
        docker("unpause", "life", check=True)
        assert docker.berth_state(cid)["status"] == "running"

        docker("kill", "-s", "USR1", "life", check=True)
        assert wait_for(lambda: "got-usr1" in docker("logs", "life").stdout, timeout=10)
        assert docker("inspect", "-f", "{{.State.Status}}", "life").stdout.strip() == "running"

        # stop: TERM first; the trap exits 0 at once.
        t = time.monotonic()
        docker("stop", "-t", "10", "life", check=True)
        assert time.monotonic() - t < 8
        assert docker("inspect", "-f", "{{.State.ExitCode}}", "life").stdout.strip() == "0"
        logs = docker("logs", "life").stdout.split()
        assert logs[0] == "started" and logs[-1] == "got-term", logs

        # restart: a new init, Berth's state for the same id again.
        docker("restart", "-t", "1", "life", check=True)
        assert docker("inspect", "-f", "{{.State.Status}}", "life").stdout.strip() == "running"
        assert docker.berth_state(cid)["status"] == "running"
        p = docker("update", "--restart", "always", "life")
        assert p.returncode == 0, p.stderr
        assert docker("inspect", "-f", "{{.HostConfig.RestartPolicy.Name}}", "life").stdout.strip() == "always"

        # cp, both ways, into a running container.
        src = tmp_path / "cp-in"
        src.write_text("copied in\n")
        docker("cp", str(src), "life:/tmp/cp-in", check=True)
        assert docker("exec", "life", "cat", "/tmp/cp-in").stdout == "copied in\n"
        docker("exec", "life", "sh", "-c", "echo copied out > /tmp/cp-out", check=True)
        docker("cp", "life:/tmp/cp-out", str(tmp_path / "cp-out"), check=True)
        assert (tmp_path / "cp-out").read_text() == "copied out\n"

        # rm -f of a running container: killed and gone, Berth's state too.
        docker("rm", "-f", "life", check=True)
        assert not os.path.exists(os.path.join(docker.state_root, cid))
    finally:
        docker("rm", "-f", "life")

    # stop of a process that ignores TERM: KILL after the timeout, exit 137.
    docker("run", "-d", "--name", "stubborn", "berth-test", "sh", "-c",
           'trap "" TERM; while true; do sleep 0.1; done', check=True)
    try:
        t = time.monotonic()
        docker("stop", "-t", "1", "stubborn", check=True)
        took = time.monotonic() - t
        assert 1 <= took < 10, took
        assert docker("inspect", "-f", "{{.State.ExitCode}}", "stubborn").stdout.strip() == "137"
    finally:
        docker("rm", "-f", "stubborn")

    # wait: the exit status of a detached container.
    docker("run", "-d", "--name", "waited", "berth-test", "sh", "-c", "sleep 0.5; exit 7", check=True)
    try:
        assert docker("wait", "waited").stdout.strip() == "7"
    finally:
        docker("rm", "-f", "waited")


@needs_docker
@pytest.mark.skipif(not APPARMOR, reason="needs AppArmor (the VM)")
def test_docker_apparmor_profiles(docker):
    # Docker 20.10 loads docker-default itself and names it in every config; --privileged
    # and apparmor=unconfined name "unconfined".
    p = run_cmd(docker, "berth-test", "cat", "/proc/self/attr/current", check=True)
    assert p.stdout.strip() == "docker-default (enforce)", p.stdout
    for opts in (["--privileged"], ["--security-opt", "apparmor=unconfined"]):
        p = run_cmd(docker, *opts, "berth-test", "cat", "/proc/self/attr/current", check=True)
        assert p.stdout.strip() == "unconfined", (opts, p.stdout)
    cid = docker("run", "-d", "berth-test", "sleep", "300", check=True).stdout.strip()
    p = docker("exec", cid, "cat", "/proc/self/attr/current", check=True)
    assert p.stdout.strip() == "docker-default (enforce)", p.stdout
    docker("rm", "-f", cid, check=True)


@needs_docker
@pytest.mark.skipif(not SELINUX, reason="needs SELinux (Scripts/vm --selinux)")
def test_docker_selinux_labels(docker):
    # With selinux-enabled, Docker 20.10 gives each container container_t with its own
    # categories, and the same categories to its mounts (container_file_t).
    p = run_cmd(docker, "berth-test", "sh", "-c", "cat /proc/self/attr/current; echo; cat /proc/self/mounts", check=True)
    label = p.stdout.splitlines()[0].strip("\0")
    assert ":container_t:s0:c" in label, p.stdout
    level = label.split(":", 3)[3]
    assert f'container_file_t:{level}' in p.stdout, p.stdout
    p = run_cmd(docker, "--security-opt", "label=disable", "berth-test", "cat", "/proc/self/attr/current", check=True)
    assert ":container_t:" not in p.stdout, p.stdout


@needs_docker
@limits_here
def test_docker_update_limits(docker):
    cid = docker("run", "-d", "--name", "limits", "--memory", "32m", "berth-test", "sleep", "1000", check=True).stdout.strip()
    try:
        def inside(path):
            v = docker("exec", "limits", "cat", limit_file(path), check=True).stdout.strip()
            # cgroup v1 has the quota alone (the period stays 100000).
            return f"{v} 100000" if CGROUP_V1 and path == "cpu.max" else v
        assert inside("memory.max") == str(32 << 20)
        if SYSTEMD:
            pid = docker("inspect", "--format", "{{.State.Pid}}", "limits", check=True).stdout.strip()
            assert open(f"/proc/{pid}/cgroup").read().strip() == f"0::/system.slice/docker-{cid}.scope"
        # (Docker 20.10 leaves swap out of an update's resources: memory.swap.max stays.)
        p = docker("update", "--memory", "64m", "--cpus", "0.5", "--pids-limit", "50", "limits")
        assert p.returncode == 0, p.stderr
        assert inside("memory.max") == str(64 << 20)
        assert inside("cpu.max") == "50000 100000"
        assert inside("pids.max") == "50"
        # --restart alone sends zeros for every limit: nothing changes.
        assert docker("update", "--restart", "on-failure", "limits").returncode == 0
        assert inside("memory.max") == str(64 << 20) and inside("cpu.max") == "50000 100000" and inside("pids.max") == "50"
        p = docker("stats", "--no-stream", "--format", "{{.MemUsage}} {{.PIDs}}", "limits", check=True)
        assert p.stdout.split()[2:] == ["64MiB", "1"], p.stdout
        assert docker.berth_state(cid)["status"] == "running"
        assert docker("stop", "-t", "1", "limits").returncode == 0
        assert docker("inspect", "--format", "{{.State.Status}}", "limits").stdout.strip() == "exited"
        if SYSTEMD:
            assert wait_for(lambda: not os.path.exists(f"/sys/fs/cgroup/system.slice/docker-{cid}.scope"), 10)
    finally:
        docker("rm", "-f", "limits")


BUILD_CONTEXT = {
    "payload.txt": "copied\n",
    "Dockerfile": """FROM berth-test
ENV GREETING=hello
WORKDIR /app
COPY payload.txt /app/payload.txt
RUN echo "$GREETING from RUN" > /app/run1 && pwd > /app/wd
RUN echo "appuser:x:1234:1234::/home/appuser:/bin/sh" >> /etc/passwd && mkdir -p /home/appuser && chown 1234 /home/appuser /app
USER appuser
RUN id -u > /app/uid && echo "$HOME" > /app/home
CMD ["sh", "-c", "cat /app/payload.txt /app/run1 /app/wd /app/uid /app/home; echo $GREETING; id -u; pwd"]
""",
    "Dockerfile.fail": "FROM berth-test\nRUN echo before\nRUN exit 9\nRUN echo after > /after\n",
}
BUILT_OUTPUT = ["copied", "hello", "from", "RUN", "/app", "1234", "/home/appuser", "hello", "1234", "/app"]


def build_context(tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    for name, text in BUILD_CONTEXT.items():
        (ctx / name).write_text(text)
    return ctx


@needs_docker
@host_only
def test_docker_classic_build(docker, tmp_path):
    ctx = build_context(tmp_path)
    p = docker("build", "-t", "berth-built", str(ctx), timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    p = run_cmd(docker, "berth-built")
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == BUILT_OUTPUT
    p = docker("build", "-f", str(ctx / "Dockerfile.fail"), str(ctx), timeout=300)
    assert p.returncode != 0
    assert "returned a non-zero code: 9" in p.stderr, p.stderr
    assert "before" in p.stdout and "Step 4/4" not in p.stdout


needs_buildah = pytest.mark.skipif(not (shutil.which("buildah") and shutil.which("podman")),
                                   reason="needs Debian's buildah and podman")


@pytest.fixture
def image_store(tmp_path):
    """A buildah/podman store of their own, holding berth-test, and a logging wrapper that
    records each call of the runtime before it runs Berth."""
    d = tempfile.mkdtemp(prefix="bb-", dir="/tmp")  # Podman refuses a runroot over 50 characters
    # A RUN gets the default CNI network: its bridge and its address book are left behind.
    had_bridge = os.path.exists("/sys/class/net/cni-podman0")
    had_cni = os.path.exists("/var/lib/cni")
    # buildah/podman make plain directories for v1 hierarchies the host does not mount.
    had_cgroup_dirs = set(os.listdir("/sys/fs/cgroup"))
    common = ["--root", d + "/storage", "--runroot", d + "/run", "--storage-driver", "vfs"]
    calls = os.path.join(d, "calls")
    wrapper = os.path.join(d, "berth")
    with open(wrapper, "w") as f:
        f.write(f'#!/bin/sh\necho "$1" >> {calls}\nexec {BERTH} "$@"\n')
    os.chmod(wrapper, 0o755)

    def buildah(*args, timeout=300):
        return subprocess.run(["buildah"] + common + list(args), capture_output=True, text=True, timeout=timeout)

    def podman(*args, timeout=300):
        return subprocess.run(["podman"] + common + ["--cgroup-manager", "cgroupfs", "--events-backend", "file"]
                              + list(args), capture_output=True, text=True, timeout=timeout)
    rootfs = os.path.join(d, "rootfs")
    subprocess.run([os.path.join(REPO, "Scripts", "mkrootfs"), rootfs], check=True, capture_output=True)
    subprocess.run(["tar", "-C", rootfs, "-cf", d + "/rootfs.tar", "."], check=True)
    ctr = buildah("from", "scratch").stdout.strip()
    assert ctr
    assert buildah("add", ctr, d + "/rootfs.tar", "/").returncode == 0
    assert buildah("commit", "-q", ctr, "berth-test").returncode == 0
    buildah("rm", ctr)

    def calls_made():
        try:
            return open(calls).read().split()
        finally:
            if os.path.exists(calls):
                os.unlink(calls)
    store = type("Store", (), {})()
    store.buildah, store.podman, store.runtime, store.calls = buildah, podman, wrapper, calls_made
    yield store
    buildah("rm", "--all")
    podman("rm", "-af")
    subprocess.run(["umount", "-R", d + "/storage"], capture_output=True)
    subprocess.run(["umount", "-R", d + "/run"], capture_output=True)
    shutil.rmtree(d, ignore_errors=True)
    for n in set(os.listdir("/sys/fs/cgroup")) - had_cgroup_dirs:
        if not os.path.ismount("/sys/fs/cgroup/" + n):
            shutil.rmtree("/sys/fs/cgroup/" + n, ignore_errors=True)
    if not had_bridge and os.path.exists("/sys/class/net/cni-podman0"):
        subprocess.run(["ip", "link", "del", "cni-podman0"], capture_output=True)
    if not had_cni:
        shutil.rmtree("/var/lib/cni", ignore_errors=True)


def check_built_image(store, image):
    """Runs the built image's CMD with `buildah run` (through Berth) and checks what the
    build left in it."""
    ctr = store.buildah("from", image).stdout.strip()
    assert ctr
    try:
        cmd = json.loads(store.buildah("inspect", "--type", "image", image).stdout)["OCIv1"]["config"]["Cmd"]
        p = store.buildah("run", "--runtime", store.runtime, "--user", "1234", "--workingdir", "/app", ctr, "--", *cmd)
        assert p.returncode == 0, p.stderr
        assert p.stdout.split() == BUILT_OUTPUT
    finally:
        store.buildah("rm", ctr)
        store.calls()  # forget the calls of this check


@needs_buildah
@host_only
def test_buildah_bud(image_store, tmp_path):
    ctx = build_context(tmp_path)
    p = image_store.buildah("bud", "--runtime", image_store.runtime, "--isolation", "oci", "-t", "built-b", str(ctx))
    assert p.returncode == 0, p.stdout + p.stderr
    # Four RUNs, each a create/start/delete of Berth.
    assert image_store.calls().count("create") == 3
    check_built_image(image_store, "built-b")
    p = image_store.buildah("bud", "--runtime", image_store.runtime, "--isolation", "oci", "-f",
                            str(ctx / "Dockerfile.fail"), str(ctx))
    assert p.returncode != 0 and "exit status 9" in p.stderr, p.stderr
    assert image_store.calls().count("create") == 2  # the failing RUN was the last


@needs_buildah
@host_only
def test_podman_build(image_store, tmp_path):
    ctx = build_context(tmp_path)
    p = image_store.podman("build", "--runtime", image_store.runtime, "-t", "built-p", str(ctx))
    assert p.returncode == 0, p.stdout + p.stderr
    assert image_store.calls().count("create") == 3
    check_built_image(image_store, "built-p")
    p = image_store.podman("build", "--runtime", image_store.runtime, "-f", str(ctx / "Dockerfile.fail"), str(ctx))
    assert p.returncode != 0 and "exit status 9" in p.stderr, p.stderr
    assert image_store.calls().count("create") == 2


COMPOSE = """version: "2.4"
services:
  store:
    image: berth-test
    command: ["sh", "-c", "echo \\"stored by $$ROLE\\" > /data/index.html; trap 'exit 0' TERM; while true; do sleep 0.1; done"]
    environment:
      ROLE: store
    volumes:
      - shared:/data
  web:
    image: berth-test
    init: true
    depends_on:
      - store
    command: ["httpd", "-f", "-p", "8080", "-h", "/data"]
    environment:
      ROLE: web
    volumes:
      - shared:/data
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"]
      interval: 1s
      timeout: 2s
      retries: 30
volumes:
  shared:
"""


@needs_docker
@host_only
@pytest.mark.skipif(not shutil.which("docker-compose"), reason="needs Debian's docker-compose")
def test_docker_compose(docker, tmp_path):
    (tmp_path / "docker-compose.yml").write_text(COMPOSE)

    def compose(*args, check=True, timeout=180):
        p = subprocess.run(["docker-compose", "-p", "berthtest", "--no-ansi"] + list(args), capture_output=True,
                           text=True, timeout=timeout, env=docker.env, cwd=tmp_path)
        if check:
            assert p.returncode == 0, (args, p.stdout, p.stderr)
        return p

    def health():
        return docker("inspect", "-f", "{{.State.Health.Status}}", "berthtest_web_1").stdout.strip()

    def answer():
        ip = docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                    "berthtest_web_1").stdout.strip()
        return urllib.request.urlopen(f"http://{ip}:8080/", timeout=5).read().decode()
    try:
        compose("up", "-d")
        ps = compose("ps").stdout
        assert "berthtest_store_1" in ps and "berthtest_web_1" in ps, ps
        assert wait_for(lambda: health() == "healthy", timeout=60), health()
        assert "healthy" in compose("ps").stdout
        # The web answers from its own address on the project's network, with what the
        # service it depends on wrote into the shared volume.
        assert answer() == "stored by store\n"
        # exec, and the service names resolve on the project's network.
        p = compose("exec", "-T", "store", "sh", "-c", "echo $ROLE; wget -q -O - http://web:8080/")
        assert p.stdout == "store\nstored by store\n"
        assert "Attaching to" in compose("logs").stdout
        compose("restart", "-t", "5")
        assert wait_for(lambda: health() == "healthy", timeout=60), health()
        assert answer() == "stored by store\n"
        compose("down", "-v", "-t", "5")
        assert docker("ps", "-aq", "--filter", "name=berthtest").stdout.strip() == ""
    finally:
        compose("down", "-v", "-t", "1", check=False)
