"""Root integration tests: real containers from a busybox rootfs.

Every test gets its own state root and bundle directory under a temporary directory
named berth-test-*, and a fixture that, passing or failing, deletes its containers and
then checks that nothing is left on the host: no state directory, no cgroup, no mount,
no process.

The test process is a child subreaper (PR_SET_CHILD_SUBREAPER), as containerd's shim
is: inits of detached containers are re-parented to it, and it reaps them.
"""
import ctypes
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BERTH = os.environ.get("BERTH") or os.path.join(REPO, ".build", "debug", "berth")
CGROUP2 = "/sys/fs/cgroup/unified" if os.path.exists("/sys/fs/cgroup/unified/cgroup.procs") else "/sys/fs/cgroup"


V1_SUBSYSTEMS = {"cpuset", "devices", "memory", "cpu", "cpuacct", "pids", "blkio", "hugetlb", "net_cls",
                 "net_prio", "perf_event", "freezer", "rdma", "name=systemd", "misc"}


def v1_hierarchies():
    """{subsystems joined with ",": mount point} for every mounted cgroup v1 hierarchy."""
    out = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, post = line.split(" - ", 1)
            fields = post.split()
            if fields[0] != "cgroup":
                continue
            subs = [o for o in fields[2].split(",") if o in V1_SUBSYSTEMS]
            if subs:
                out.setdefault(",".join(subs), pre.split()[4])
    return out


# A v1 (or hybrid) host: /sys/fs/cgroup is not itself cgroup2, and Berth manages the v1
# hierarchies there (as runc does); the VM is pure v2.
CGROUP_V1 = not os.path.exists("/sys/fs/cgroup/cgroup.controllers") and bool(v1_hierarchies())
# systemd is pid 1 on a pure cgroup v2 host (Scripts/vm --systemd): the callers then use
# their default, systemd, cgroup driver and pass --systemd-cgroup to the runtime.
SYSTEMD = os.path.isdir("/run/systemd/system") and os.path.exists("/sys/fs/cgroup/cgroup.controllers")
# systemd is pid 1, whichever cgroup layout (Scripts/vm --systemd [--hybrid]): Podman and
# Kubernetes' containerd use the systemd driver then; Docker 20.10 only on cgroup v2.
SYSTEMD_PID1 = os.path.isdir("/run/systemd/system")
CGROUP_ROOTS = [CGROUP2] + sorted(set(v1_hierarchies().values()))

# A limit's file inside a container, as runc's "cgroup" mount shows it: the v2 name, or
# the v1 hierarchy's file on a v1 host.
V1_FILES = {"memory.max": "memory/memory.limit_in_bytes", "pids.max": "pids/pids.max",
            "cpu.max": "cpu/cpu.cfs_quota_us", "cpu.weight": "cpu/cpu.shares"}


def limit_file(name):
    return "/sys/fs/cgroup/" + (V1_FILES[name] if CGROUP_V1 else name)


def host_cgroup(pid, subsystem):
    """A process's cgroup directory on the host: in the v1 hierarchy holding `subsystem`
    on a v1 host, in the v2 hierarchy otherwise."""
    for line in open(f"/proc/{pid}/cgroup").read().splitlines():
        num, ctrls, path = line.split(":", 2)
        if CGROUP_V1 and subsystem in ctrls.split(","):
            return v1_hierarchies()[ctrls] + path
        if not CGROUP_V1 and num == "0":
            return CGROUP2 + path
    raise AssertionError(f"process {pid} has no {subsystem} cgroup")

def apparmor_on():
    """AppArmor enabled in the kernel, securityfs mounted and apparmor_parser installed:
    the VM (Debian's kernel). Docker and Podman then put their profiles in every config."""
    try:
        enabled = open("/sys/module/apparmor/parameters/enabled").read().startswith("Y")
    except OSError:
        return False
    return enabled and os.path.isdir("/sys/kernel/security/apparmor") and bool(shutil.which("apparmor_parser"))


APPARMOR = apparmor_on()


def selinux_on():
    """SELinux with a policy loaded (Scripts/vm --selinux): selinuxfs mounted and this
    process labelled by the policy."""
    try:
        current = open("/proc/self/attr/current").read().strip("\0\n")
    except OSError:
        return False
    return os.path.exists("/sys/fs/selinux/enforce") and current not in ("", "kernel")


SELINUX = selinux_on()

libc = ctypes.CDLL(None, use_errno=True)
PR_SET_CHILD_SUBREAPER = 36
libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def reap_all():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


@pytest.fixture(scope="session")
def rootfs():
    if os.geteuid() != 0:
        pytest.skip("integration tests need root")
    base = tempfile.mkdtemp(prefix="berth-test-rootfs-")
    os.chmod(base, 0o755)  # reachable by a user namespace's root
    path = os.path.join(base, "rootfs")
    subprocess.run([os.path.join(REPO, "Scripts", "mkrootfs"), path], check=True)
    yield path
    shutil.rmtree(base, ignore_errors=True)


def base_config(rootfs, args):
    return {
        "ociVersion": "1.3.0",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
        },
        "root": {"path": rootfs, "readonly": True},
        "hostname": "berth-test",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]},
        ],
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount", "cgroup")],
        },
    }


class Env:
    def __init__(self, rootfs):
        self.rootfs = rootfs
        self.tmp = tempfile.mkdtemp(prefix="berth-test-")
        os.chmod(self.tmp, 0o755)
        self.root = os.path.join(self.tmp, "state")
        self.ids = []
        self.prefix = "t" + uuid.uuid4().hex[:8]

    def new_id(self, name="c"):
        cid = f"{self.prefix}-{name}-{len(self.ids)}"
        self.ids.append(cid)
        return cid

    def bundle(self, args, name="bundle", mutate=None):
        """A bundle directory whose config runs `args`; `mutate(config)` edits it."""
        d = os.path.join(self.tmp, name)
        os.makedirs(d, exist_ok=True)
        cfg = base_config(self.rootfs, args)
        # Marks the container's processes so leftovers() can find strays.
        cfg["process"]["env"].append(f"BERTH_TEST={self.prefix}")
        if mutate:
            mutate(cfg)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
        return d

    def berth_cmd(self, *args, root=True):
        return [BERTH] + (["--root", self.root] if root else []) + [str(a) for a in args]

    def berth(self, *args, check=True, timeout=30, root=True, **kw):
        cmd = self.berth_cmd(*args, root=root)
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        p = subprocess.run(cmd, timeout=timeout, **kw)
        if check and p.returncode != 0:
            raise AssertionError(f"{cmd} exited {p.returncode}: {p.stderr}")
        return p

    def run(self, args, mutate=None, name="bundle", extra=()):
        """Foreground `berth run` of a fresh container; returns the CompletedProcess."""
        b = self.bundle(args, name=name, mutate=mutate)
        return self.berth("run", "--bundle", b, *extra, self.new_id(), check=False)

    def detach(self, bundle, cid, *extra):
        """`run -d` (or `create`, with extra=("create",)): the container's stdio goes to
        files so nothing waits on it."""
        return self._with_files("run", "-d", "--bundle", bundle, *extra, cid, cid=cid)

    def create(self, bundle, cid, *extra, check=True):
        return self._with_files("create", "--bundle", bundle, *extra, cid, cid=cid, check=check)

    def _with_files(self, *args, cid, check=True):
        # Berth's stdio is the container's: both go to files, read back on failure.
        out = open(os.path.join(self.tmp, cid + ".out"), "w")
        err = open(os.path.join(self.tmp, cid + ".err"), "w+")
        try:
            p = self.berth(*args, check=False, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                           capture_output=False)
            err.seek(0)
            p.stderr = err.read()
            if check and p.returncode != 0:
                raise AssertionError(f"berth {args} exited {p.returncode}: {p.stderr}")
            return p
        finally:
            out.close()
            err.close()

    def output(self, cid):
        with open(os.path.join(self.tmp, cid + ".out")) as f:
            return f.read()

    def state(self, cid):
        return json.loads(self.berth("state", cid).stdout)

    def cleanup(self):
        for cid in self.ids:
            subprocess.run([BERTH, "--root", self.root, "delete", "--force", cid],
                           capture_output=True, timeout=30)
        reap_all()

    def leftovers(self):
        found = []
        if os.path.isdir(self.root) and os.listdir(self.root):
            found.append(f"state directories: {os.listdir(self.root)}")
        for root in CGROUP_ROOTS:
            for dirpath, dirnames, _ in os.walk(root):
                for d in dirnames:
                    if d.startswith(self.prefix):
                        found.append(f"cgroup {os.path.join(dirpath, d)}")
        with open("/proc/self/mountinfo") as f:
            mounts = [l for l in f if self.tmp in l or self.rootfs in l]
        if mounts:
            found.append(f"mounts: {mounts}")
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    env = f.read()
                with open(f"/proc/{pid}/stat") as f:
                    st = f.read().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if self.prefix.encode() in env and st != "Z":
                found.append(f"process {pid}")
        return found


@pytest.fixture
def env(rootfs):
    e = Env(rootfs)
    try:
        yield e
    finally:
        e.cleanup()
        left = e.leftovers()
        shutil.rmtree(e.tmp, ignore_errors=True)
        assert not left, f"left behind on the host: {left}"


def alive(pid):
    """The process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for(pred, timeout=5.0):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


class fds_at:
    """Places fds at fixed numbers (as a caller's --preserve-fds range needs) and puts
    back whatever was there before, even pytest's own capture fds."""

    def __init__(self, placement):
        self.placement = placement  # {target fd: source fd}
        self.saved = {}

    def __enter__(self):
        for target, source in self.placement.items():
            try:
                self.saved[target] = os.dup(target)
            except OSError:
                self.saved[target] = None
            os.dup2(source, target, inheritable=True)
        return self

    def __exit__(self, *exc):
        for target, old in self.saved.items():
            if old is None:
                os.close(target)
            else:
                os.dup2(old, target)
                os.close(old)
        return False
