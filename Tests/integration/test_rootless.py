"""Rootless (issue 12): Berth run by an unprivileged user, no setuid, no capabilities, and by
root in a user namespace the caller made (as rootless Podman runs its runtime). The
container's view is checked from inside; the state lives in $XDG_RUNTIME_DIR/berth, and
nothing is left there, in the cgroup trees or among the user's processes afterwards."""
import json
import os
import shutil
import stat
import subprocess
import tempfile

import pytest

from conftest import BERTH as BUILT, CGROUP_ROOTS, CGROUP_V1, v1_hierarchies, wait_for

UID = 4242  # no passwd entry: the owner shows as "#4242", as with runc


@pytest.fixture
def user(rootfs):
    """A runner for commands as the unprivileged user, with its own XDG_RUNTIME_DIR and a
    bundle directory it owns (the rootfs stays root's and world-readable, as an image
    unpacked by root would be)."""
    base = tempfile.mkdtemp(prefix="berth-rootless-")
    os.chmod(base, 0o755)
    xdg = os.path.join(base, "run")
    bundle = os.path.join(base, "bundle")
    for d in (xdg, bundle):
        os.mkdir(d, 0o700)
        os.chown(d, UID, UID)
    os.symlink(rootfs, os.path.join(bundle, "rootfs"))
    # A copy the user can run wherever the checkout lives (CI's may be in root's home).
    berth = os.path.join(base, "berth")
    shutil.copy2(BUILT, berth)

    class User:
        def __init__(self):
            self.xdg, self.bundle, self.base, self.berth = xdg, bundle, base, berth
            self.ids = []

        def cmd(self, *args, userns=False):
            env = {"PATH": os.environ["PATH"], "XDG_RUNTIME_DIR": xdg, "USER": "tester", "HOME": base}
            pre = ["setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups", "--inh-caps=-all"]
            if userns:
                pre += ["unshare", "--user", "--map-root-user"]
            return pre, env

        def run(self, shell, userns=False, timeout=30):
            pre, env = self.cmd(userns=userns)
            shell = shell.replace("BERTH", berth)
            return subprocess.run(pre + ["sh", "-c", shell], env=env, cwd=bundle, capture_output=True, text=True,
                                  timeout=timeout, stdin=subprocess.DEVNULL)

        def detach(self, cid, userns=False):
            """`run -d`, the container's stdio in a file (a pipe would stay open)."""
            log = os.path.join(bundle, cid + ".log")
            p = self.run(f"BERTH run -d {cid} >{log} 2>&1", userns=userns)
            p.stderr = open(log).read()
            return p

        def config(self, args, userns=False, mutate=None):
            """`berth spec --rootless` as the user (inside the namespace with userns), then
            the process and whatever `mutate` changes."""
            p = self.run("rm -f config.json && BERTH spec --rootless", userns=userns)
            assert p.returncode == 0, p.stderr
            path = os.path.join(bundle, "config.json")
            c = json.load(open(path))
            c["process"]["terminal"] = False
            c["process"]["args"] = args
            if mutate:
                mutate(c)
            with open(path, "w") as f:
                json.dump(c, f)
            return c

        def leftovers(self):
            found = []
            d = os.path.join(xdg, "berth")
            if os.path.isdir(d) and os.listdir(d):
                found.append(f"state: {os.listdir(d)}")
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    st = os.stat(f"/proc/{pid}")
                    state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
                except OSError:
                    continue
                if st.st_uid == UID and state != "Z":
                    found.append(f"process {pid}")
            for root in CGROUP_ROOTS:
                for dirpath, dirnames, _ in os.walk(root):
                    found += [os.path.join(dirpath, n) for n in dirnames if n.startswith("rl-")]
            return found

    u = User()
    yield u
    for cid in u.ids:
        u.run(f"BERTH delete --force {cid}")
        u.run(f"BERTH delete --force {cid}", userns=True)
    left = u.leftovers()
    subprocess.run(["pkill", "-9", "-U", str(UID)], capture_output=True)
    shutil.rmtree(base, ignore_errors=True)
    assert not left, left


def test_unprivileged_user_runs_a_container(user):
    user.config(["sh", "-c", "id -u; cat /proc/self/uid_map; cat /proc/self/setgroups"])
    user.ids.append("rl-fg")
    p = user.run("BERTH run rl-fg")
    assert p.returncode == 0, p.stderr
    lines = [l.split() if i == 1 else l for i, l in enumerate(p.stdout.splitlines())]
    # root inside, the user outside; setgroups denied (the one way to map one's own gid).
    assert lines == ["0", ["0", str(UID), "1"], "deny"], p.stdout
    root = os.path.join(user.xdg, "berth")
    st = os.stat(root)
    assert st.st_uid == UID and stat.S_IMODE(st.st_mode) == 0o1700  # runc's: owner only, sticky


def test_lifecycle_without_a_cgroup(user):
    user.config(["sleep", "60"])
    user.ids.append("rl-d")
    p = user.detach("rl-d")
    assert p.returncode == 0, p.stderr
    p = user.run("BERTH list")
    row = p.stdout.splitlines()[1].split()
    assert row[0] == "rl-d" and row[2] == "running" and row[-1] == f"#{UID}", p.stdout
    st = json.loads(user.run("BERTH state rl-d").stdout)
    assert st["status"] == "running"
    # The container runs as the user on the host, with no cgroup of its own.
    assert os.stat(f"/proc/{st['pid']}").st_uid == UID
    p = user.run("BERTH exec rl-d sh -c 'echo exec-ok; id -u'")
    assert p.returncode == 0 and p.stdout.split() == ["exec-ok", "0"], p.stderr
    p = user.run("BERTH ps rl-d")
    assert p.returncode == 0 and "sleep" in p.stdout
    p = user.run("BERTH pause rl-d")
    assert p.returncode == 1 and p.stderr.strip() == "cannot pause: the container has no cgroup", p.stderr
    assert user.run("BERTH kill rl-d KILL").returncode == 0
    assert wait_for(lambda: json.loads(user.run("BERTH state rl-d").stdout)["status"] == "stopped", 10)
    # Stopped: a signal for init is an error, --all (nothing left to signal) is not (runc).
    p = user.run("BERTH kill rl-d 0")
    assert p.returncode == 1 and p.stderr.strip() == "container not running", p.stderr
    p = user.run("BERTH kill --all rl-d 0")
    assert p.returncode == 0, p.stderr
    p = user.run("BERTH delete rl-d")
    assert p.returncode == 0, p.stderr
    assert not os.listdir(os.path.join(user.xdg, "berth"))


def test_limits_without_a_cgroup_are_refused(user):
    def m(c):
        c["linux"]["resources"] = {"memory": {"limit": 64 << 20}}
    user.config(["true"], mutate=m)
    p = user.run("BERTH run rl-lim")
    assert p.returncode == 1
    assert p.stderr.strip() == "cannot set memory limit: container could not join or create cgroup", p.stderr
    assert not os.listdir(os.path.join(user.xdg, "berth"))
    # A cgroup the config names is never done without: the user may not make it here.
    def named(c):
        c["linux"]["cgroupsPath"] = "/rl-named/c"
    user.config(["true"], mutate=named)
    p = user.run("BERTH run rl-named")
    assert p.returncode == 1
    assert p.stderr.startswith("unable to apply cgroup configuration: mkdir /sys/fs/cgroup/") and \
        p.stderr.strip().endswith("/rl-named/c: permission denied"), p.stderr
    assert not os.listdir(os.path.join(user.xdg, "berth"))
    # Device rules alone are not limits: they are not enforced rootless, as with runc.
    def d(c):
        c["linux"]["resources"] = {"devices": [{"allow": False, "access": "rwm"}]}
    user.config(["true"], mutate=d)
    user.ids.append("rl-dev")
    p = user.run("BERTH run rl-dev")
    assert p.returncode == 0, p.stderr


def test_additional_gids_are_refused_rootless(user):
    # setgroups is denied in an unprivileged user's namespace: runc refuses the groups in
    # these words instead of running without them; exec --additional-gids likewise.
    def m(c):
        c["process"]["user"]["additionalGids"] = [5]
    user.config(["true"], mutate=m)
    p = user.run("BERTH run rl-gids")
    assert p.returncode == 1 and "cannot set any additional groups in a rootless container" in p.stderr, p.stderr
    assert not os.listdir(os.path.join(user.xdg, "berth"))
    user.config(["sleep", "60"])
    user.ids.append("rl-gx")
    assert user.detach("rl-gx").returncode == 0
    p = user.run("BERTH exec --additional-gids 5 rl-gx true")
    assert p.returncode != 0 and "cannot set any additional groups in a rootless container" in p.stderr, p.stderr


@pytest.mark.parametrize("userns", [False, True], ids=["as-user", "root-of-callers-namespace"])
def test_cgroupfs_is_read_only_inside_without_a_cgroup_namespace(user, userns):
    # CVE-2023-25809: `spec --rootless` has no cgroup namespace and binds /sys with
    # "rbind,ro"; every /sys/fs/cgroup mount the container sees must still be read-only,
    # or a user's delegated cgroups (systemd's user.slice) are writable from inside.
    user.config(["cat", "/proc/self/mountinfo"], userns=userns)
    user.ids.append("rl-cgro")
    p = user.run("BERTH run rl-cgro", userns=userns)
    assert p.returncode == 0, p.stderr
    # What a path reaches: a later mount on a path or above it covers what was there
    # (the rbind's own submounts lie below Berth's).
    top = {}
    for line in p.stdout.splitlines():
        pre, post = line.split(" - ", 1)
        point, opts, fstype = pre.split()[4], pre.split()[5], post.split()[0]
        top = {k: v for k, v in top.items() if k != point and not k.startswith(point + "/")}
        if point.startswith("/sys/fs/cgroup"):
            top[point] = (fstype, opts)
    cgroupfs = {k: v for k, v in top.items() if v[0] in ("cgroup", "cgroup2")}
    assert cgroupfs, p.stdout
    assert all(opts.split(",")[0] == "ro" for _, opts in cgroupfs.values()), cgroupfs


def test_the_containers_own_ptmx_even_when_listed(user):
    # runc's default config lists /dev/ptmx among the devices: bound from the host in a
    # user namespace it would belong to nobody (the host's root) and open the host's
    # devpts; it is the container's own pts/ptmx, as runc makes it.
    def m(c):
        c["linux"]["devices"] = [{"path": "/dev/ptmx", "type": "c", "major": 5, "minor": 2}]
    user.config(["sh", "-c", "readlink /dev/ptmx; ls -lLn /dev/ptmx"], mutate=m)
    user.ids.append("rl-ptmx")
    p = user.run("BERTH run rl-ptmx")
    assert p.returncode == 0, p.stderr
    link, ls = p.stdout.splitlines()
    assert link == "pts/ptmx", p.stdout
    assert ls.split()[:4] == ["crw-rw-rw-", "1", "0", "0"], p.stdout


@pytest.mark.skipif(not CGROUP_V1 or "pids" not in v1_hierarchies(), reason="needs a v1 pids hierarchy (this host)")
def test_a_v1_hierarchy_the_user_may_write_is_used(user):
    # runc's fs driver, rootless, goes hierarchy by hierarchy: Berth started in a pids
    # cgroup the user owns puts the container below it (runc's rootless default) with its
    # limit, and does without the hierarchies the user may not write.
    top = os.path.join(v1_hierarchies()["pids"], "rl-v1")
    os.mkdir(top)
    try:
        for n in ("", "/cgroup.procs", "/tasks"):
            os.chown(top + n, UID, UID)

        def m(c):
            c["linux"]["resources"] = {"pids": {"limit": 37}}
        user.config(["sh", "-c", "grep :pids: /proc/self/cgroup | cut -d: -f3; cat /sys/fs/cgroup/pids/pids.max"], mutate=m)
        pre, env = user.cmd()

        def run(cid):
            script = f"echo $$ > {top}/cgroup.procs && cd {user.bundle} && exec " + " ".join(pre) + f" {user.berth} run {cid}"
            return subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        user.ids.append("rl-v1c")
        p = run("rl-v1c")
        assert p.returncode == 0, p.stderr
        assert p.stdout.split() == ["/rl-v1/rl-v1c", "37"], p.stdout
        assert not os.path.exists(top + "/rl-v1c")
        # A limit in a hierarchy the user may not write is refused by name.
        def mem(c):
            c["linux"]["resources"] = {"pids": {"limit": 37}, "memory": {"limit": 64 << 20}}
        user.config(["true"], mutate=mem)
        p = run("rl-v1c")
        assert p.returncode == 1
        assert p.stderr.strip() == "cannot set memory limit: container could not join or create cgroup", p.stderr
        assert not os.path.exists(top + "/rl-v1c")
    finally:
        for d in (top + "/rl-v1c", top):
            if os.path.isdir(d):
                os.rmdir(d)


def test_root_in_the_callers_user_namespace_is_rootless(user):
    # As rootless Podman runs its runtime: euid 0 in a user namespace the caller made
    # (setgroups denied there). Berth behaves rootless: state in $XDG_RUNTIME_DIR (USER is
    # not root), no cgroup, and no setgroups call in the container's nested namespace.
    user.config(["sh", "-c", "id -u; cat /proc/self/setgroups"], userns=True)
    user.ids.append("rl-ns")
    p = user.run(f"BERTH run rl-ns", userns=True)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["0", "deny"], p.stdout
    user.ids.append("rl-ns2")
    p = user.detach("rl-ns2", userns=True)
    assert p.returncode == 0, p.stderr
    p = user.run("BERTH list -q && ls $XDG_RUNTIME_DIR/berth", userns=True)
    assert p.returncode == 0 and p.stdout.split() == ["rl-ns2", "rl-ns2"], (p.stdout, p.stderr)


def test_an_images_own_setgroups_file_is_not_believed(env, rootfs):
    # Berth skips setgroups(2) where the user namespace denies it, and asks procfs. A
    # config without a /proc mount leaves the image's own /proc there: a file saying
    # "deny" must not make Berth skip the call, or the process would keep the host's
    # supplementary groups (root's, here) instead of the ones it was given.
    own = os.path.join(env.tmp, "rootfs")
    shutil.copytree(rootfs, own, symlinks=True)
    os.makedirs(os.path.join(own, "proc", "self"), exist_ok=True)
    with open(os.path.join(own, "proc", "self", "setgroups"), "w") as f:
        f.write("deny\n")

    def m(c):
        c["root"]["path"] = own
        c["mounts"] = [x for x in c["mounts"] if x["destination"] != "/proc"]
        c["linux"]["namespaces"].append({"type": "user"})
        c["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        c["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
        c["linux"].pop("maskedPaths", None)
        c["linux"].pop("readonlyPaths", None)
        c["process"]["user"] = {"uid": 0, "gid": 0, "additionalGids": [1234]}
    p = env.run(["id", "-G"], mutate=m)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["0", "1234"], p.stdout


def user_etc(user, home):
    """passwd, group, subuid and subgid with the user (home `home`) and a range of 65536
    ids from 300000, in the test's directory; returns the shell that binds them over /etc
    (run it in a private mount namespace)."""
    etc = os.path.join(user.base, "etc")
    os.mkdir(etc)
    files = {"passwd": open("/etc/passwd").read() + f"tester:x:{UID}:{UID}::{home}:/bin/sh\n",
             "group": open("/etc/group").read() + f"tester:x:{UID}:\n",
             "subuid": "tester:300000:65536\n", "subgid": "tester:300000:65536\n"}
    for name, text in files.items():
        with open(os.path.join(etc, name), "w") as f:
            f.write(text)
    return "; ".join(f"mount --bind {etc}/{n} /etc/{n}" for n in files)


def test_more_ids_through_newuidmap(user):
    # A user may map only its own ids; a range from /etc/subuid and /etc/subgid needs the
    # setuid newuidmap/newgidmap, as with runc. The user and its ranges exist only in a
    # private mount namespace of the test's (bound over /etc), so nothing is left behind.
    if not shutil.which("newuidmap"):
        pytest.skip("newuidmap is not installed (Debian's uidmap)")
    binds = user_etc(user, "/tmp")
    maps = [{"containerID": 0, "hostID": UID, "size": 1}, {"containerID": 1, "hostID": 300000, "size": 65536}]

    def m(c):
        c["linux"]["uidMappings"] = maps
        c["linux"]["gidMappings"] = maps
        c["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]})
        for k in ("bounding", "effective", "permitted"):
            c["process"]["capabilities"][k].append("CAP_CHOWN")
    user.config(["sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map; "
                             "touch /tmp/f && chown 1000:1000 /tmp/f && stat -c '%u %g' /tmp/f"], mutate=m)
    pre, env = user.cmd()
    script = f"{binds}; cd {user.bundle}; exec " + " ".join(pre) + f" {user.berth} run rl-map"
    user.ids.append("rl-map")
    p = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script], env=env,
                       capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr
    lines = [l.split() for l in p.stdout.splitlines()]
    assert lines[:4] == [["0", str(UID), "1"], ["1", "300000", "65536"]] * 2, p.stdout
    # A second id exists inside: a file can belong to it.
    assert lines[-1] == ["1000", "1000"], p.stdout


@pytest.mark.skipif(not os.path.exists("/sys/fs/cgroup/cgroup.controllers"), reason="needs a pure cgroup v2 host (Scripts/vm)")
def test_a_delegated_subtree_holds_the_container_with_its_limits(user):
    # systemd delegates user@UID.service to the user this way: the directory and its
    # cgroup.procs, cgroup.subtree_control and cgroup.threads belong to the user. Berth,
    # started inside it, puts the container next to its own cgroup (runc's rootless
    # default) and sets the limits there.
    top = "/sys/fs/cgroup/rl-deleg"
    os.mkdir(top)
    try:
        for c in ("+memory", "+pids"):
            with open("/sys/fs/cgroup/cgroup.subtree_control", "w") as f:
                f.write(c)
        os.mkdir(top + "/launcher")
        for p in (top, top + "/launcher"):
            for n in ("", "/cgroup.procs", "/cgroup.subtree_control", "/cgroup.threads"):
                os.chown(p + n, UID, UID)

        def m(c):
            c["linux"]["resources"] = {"memory": {"limit": 64 << 20}, "pids": {"limit": 40}}
            if {"type": "cgroup"} not in c["linux"]["namespaces"]:
                c["linux"]["namespaces"].append({"type": "cgroup"})
        user.config(["sh", "-c", "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max; cat /proc/self/cgroup"], mutate=m)
        pre, env = user.cmd()
        script = f"echo $$ > {top}/launcher/cgroup.procs && cd {user.bundle} && exec " + " ".join(pre) + f" {user.berth} run rl-cg"
        user.ids.append("rl-cg")
        p = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert p.returncode == 0, p.stderr
        assert p.stdout.split() == [str(64 << 20), "40", "0::/"], p.stdout
        assert not os.path.exists(top + "/rl-cg")
    finally:
        for d in (top + "/rl-cg", top + "/launcher", top):
            if os.path.isdir(d):
                os.rmdir(d)


def test_rootless_podman(user, rootfs):
    # Podman run by the user: it makes its own user namespace from /etc/subuid (newuidmap)
    # and runs Berth inside it, as root there and nowhere else. The user, with a home and
    # its ranges, exists only in a private mount namespace of the test's (bound over /etc).
    if not shutil.which("podman") or not shutil.which("newuidmap"):
        pytest.skip("podman and uidmap are not installed")
    home = os.path.join(user.base, "home")
    os.mkdir(home, 0o700)
    os.chown(home, UID, UID)
    binds = user_etc(user, home)
    # The user's own copy of the image (Podman writes /etc/mtab and the like into it).
    own = os.path.join(home, "rootfs")
    shutil.copytree(rootfs, own, symlinks=True)
    subprocess.run(["chown", "-R", "-h", f"{UID}:{UID}", own], check=True)
    rootfs = own
    pre, env = user.cmd()
    env = dict(env, HOME=home)
    podman = ("podman --runtime " + user.berth + " --cgroup-manager cgroupfs --events-backend file "
              "--storage-driver vfs")

    def run(args, timeout=120):
        script = f"{binds}; cd {home}; exec " + " ".join(pre) + f" sh -c '{podman} {args}'"
        return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script], env=env,
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    try:
        p = run(f"run --rm --network none --rootfs {rootfs} /bin/sh -c \"id -u; cat /proc/self/uid_map\"")
        assert p.returncode == 0, p.stderr
        out = p.stdout.split()
        # root in the container; the namespace maps the user's own id and its range.
        assert out[0] == "0" and out[1:4] == ["0", str(UID), "1"] and out[4:7] == ["1", "300000", "65536"], p.stdout
        p = run(f"run -d --name rl-pod --network none --rootfs {rootfs} /bin/sleep 300")
        assert p.returncode == 0, p.stderr
        p = run("exec rl-pod /bin/sh -c \"echo exec-ok\"")
        assert p.returncode == 0 and p.stdout.strip() == "exec-ok", p.stderr
        p = run("stop -t 1 rl-pod")
        assert p.returncode == 0, p.stderr
        p = run("rm rl-pod")
        assert p.returncode == 0, p.stderr
    finally:
        run("rm -af -t 0")
        # Podman's pause process keeps its user namespace for later calls: not ours to keep.
        subprocess.run(["pkill", "-9", "-U", str(UID)], capture_output=True)
        wait_for(lambda: not [l for l in user.leftovers() if l.startswith("process")], 5)
