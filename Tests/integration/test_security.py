"""The process profile and the hardening, seen from inside real containers, with one
test per attack that once broke runc."""
import ctypes
import hashlib
import json
import os
import shutil
import subprocess

from conftest import BERTH, wait_for

CAP = {"CAP_CHOWN": 0, "CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_NET_BIND_SERVICE": 10,
       "CAP_NET_RAW": 13, "CAP_SYS_ADMIN": 21, "CAP_AUDIT_WRITE": 29}


def mask(*names):
    return sum(1 << CAP[n] for n in names)


def status_fields(text):
    return {l.split(":")[0]: l.split(":", 1)[1].strip() for l in text.splitlines() if ":" in l}


def test_capabilities_root_exact_sets(env):
    caps = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    def m(c):
        c["process"]["capabilities"] = {k: caps for k in ("bounding", "effective", "permitted", "inheritable")}
    p = env.run(["grep", "^Cap", "/proc/self/status"], mutate=m)
    assert p.returncode == 0, p.stderr
    f = status_fields(p.stdout)
    want = f"{mask(*caps):016x}"
    assert (f["CapBnd"], f["CapEff"], f["CapPrm"], f["CapInh"], f["CapAmb"]) == (want, want, want, want, "0" * 16)


def test_capabilities_non_root_with_ambient(env):
    def m(c):
        c["process"]["user"] = {"uid": 1000, "gid": 1000}
        c["process"]["capabilities"] = {
            "bounding": ["CAP_NET_RAW", "CAP_KILL", "CAP_CHOWN"],
            "effective": ["CAP_NET_RAW"], "permitted": ["CAP_NET_RAW"],
            "inheritable": ["CAP_NET_RAW"], "ambient": ["CAP_NET_RAW"],
        }
    p = env.run(["grep", "^Cap", "/proc/self/status"], mutate=m)
    assert p.returncode == 0, p.stderr
    f = status_fields(p.stdout)
    assert f["CapBnd"] == f"{mask('CAP_NET_RAW', 'CAP_KILL', 'CAP_CHOWN'):016x}"
    assert f["CapAmb"] == f["CapEff"] == f["CapPrm"] == f"{mask('CAP_NET_RAW'):016x}"


def test_empty_inheritable_means_empty_inheritable_and_ambient(env):
    # CVE-2022-29162: runc once filled the inheritable set from the bounding set when the
    # config gave none; a non-root program could then keep capabilities across execve of
    # a file with inheritable file capabilities. None given must mean none inside, for
    # root and for a user, whatever bounding holds (ambient lists are skipped: they cannot
    # be raised without inheritable).
    for user in ({"uid": 0, "gid": 0}, {"uid": 1000, "gid": 1000}):
        def m(c):
            c["process"]["user"] = user
            full = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW", "CAP_SYS_ADMIN"]
            c["process"]["capabilities"] = {"bounding": full, "effective": full, "permitted": full,
                                            "inheritable": [], "ambient": ["CAP_NET_RAW"]}
        p = env.run(["grep", "^Cap", "/proc/self/status"], mutate=m)
        assert p.returncode == 0, p.stderr
        f = status_fields(p.stdout)
        assert f["CapInh"] == f["CapAmb"] == "0" * 16, (user, p.stdout)
        assert f["CapBnd"] == f"{mask('CAP_CHOWN', 'CAP_KILL', 'CAP_NET_RAW', 'CAP_SYS_ADMIN'):016x}"


def test_no_capabilities_field_means_none(env):
    p = env.run(["sh", "-c", "grep ^CapEff /proc/self/status; hostname x 2>&1 || true"])
    assert p.returncode == 0, p.stderr
    assert "CapEff:\t0000000000000000" in p.stdout
    assert "not permitted" in p.stdout


def test_unknown_capability_is_a_logged_warning(env):
    log = os.path.join(env.tmp, "log.json")
    def m(c):
        c["process"]["capabilities"] = {"bounding": ["CAP_KILL", "CAP_NOPE"], "effective": ["CAP_KILL"],
                                        "permitted": ["CAP_KILL"]}
    b = env.bundle(["true"], mutate=m)
    p = env.berth("--log", log, "--log-format", "json", "run", "--bundle", b, env.new_id(), check=False)
    assert p.returncode == 0, p.stderr
    lines = [json.loads(l) for l in open(log).read().splitlines()]
    assert [l["level"] for l in lines] == ["warning"]
    assert "CAP_NOPE" in lines[0]["msg"]


def test_no_new_privileges_rlimits_oom_personality(env):
    def m(c):
        c["process"]["noNewPrivileges"] = True
        c["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200},
                                   {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}]
        c["process"]["oomScoreAdj"] = 500
        c["linux"]["personality"] = {"domain": "LINUX32"}
    p = env.run(["sh", "-c", "grep NoNewPrivs /proc/self/status; ulimit -n; ulimit -Hn; ulimit -c; "
                 "cat /proc/self/oom_score_adj; uname -m"], mutate=m)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["NoNewPrivs:", "1", "100", "200", "0", "500", "i686"]


def test_scheduler_ioprio_affinity(env):
    def m(c):
        c["process"]["scheduler"] = {"policy": "SCHED_BATCH", "nice": 7}
        c["process"]["ioPriority"] = {"class": "IOPRIO_CLASS_BE", "priority": 6}
        c["process"]["execCPUAffinity"] = {"initial": "0-1", "final": "1"}
    b = env.bundle(["sleep", "60"], mutate=m)
    cid = env.new_id()
    env.detach(b, cid)
    pid = env.state(cid)["pid"]
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3: nice is field 19, policy field 41.
    assert fields[16] == "7" and fields[38] == "3"
    with open(f"/proc/{pid}/status") as f:
        assert "Cpus_allowed_list:\t1\n" in f.read()
    libc = ctypes.CDLL(None, use_errno=True)
    SYS_ioprio_get = 252
    assert libc.syscall(SYS_ioprio_get, 1, pid) == (2 << 13) | 6


def test_masked_and_readonly_paths(env):
    def m(c):
        c["linux"]["maskedPaths"] = ["/proc/keys", "/proc/acpi", "/sys/firmware", "/proc/does-not-exist"]
        c["linux"]["readonlyPaths"] = ["/proc/sys", "/proc/sysrq-trigger"]
        c["mounts"].append({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["ro"]})
        c["process"]["capabilities"] = {k: ["CAP_SYS_ADMIN", "CAP_DAC_OVERRIDE"] for k in ("bounding", "effective", "permitted")}
    p = env.run(["sh", "-c", "wc -c < /proc/keys; ls -A /proc/acpi | wc -l; ls -A /sys/firmware | wc -l; "
                 "echo 1 > /proc/sys/kernel/ns_last_pid 2>/dev/null && echo writable || echo refused; "
                 "grep -c ' /proc/sys ro' /proc/self/mountinfo"], mutate=m)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["0", "0", "0", "refused", "1"]


def test_sysctl_inside_and_host_unchanged(env):
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        host_fwd = f.read()
    with open("/proc/sys/kernel/shmmax") as f:
        host_shm = f.read()
    def m(c):
        c["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1", "kernel.shmmax": "1234567", "net/ipv4/conf/lo/forwarding": "1"}
    p = env.run(["cat", "/proc/sys/net/ipv4/ip_forward", "/proc/sys/kernel/shmmax",
                 "/proc/sys/net/ipv4/conf/lo/forwarding"], mutate=m)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["1", "1234567", "1"]
    assert open("/proc/sys/net/ipv4/ip_forward").read() == host_fwd
    assert open("/proc/sys/kernel/shmmax").read() == host_shm


def test_sysctl_refused_without_its_namespace(env):
    def m(c):
        c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "ipc"]
        c["linux"]["sysctl"] = {"kernel.msgmax": "1000"}
    b = env.bundle(["true"], mutate=m)
    p = env.create(b, env.new_id(), check=False)
    assert p.returncode == 1 and "linux.sysctl.kernel.msgmax: not allowed in the host's ipc namespace" in p.stderr


def test_sysctl_refused_in_a_joined_host_namespace(env):
    # A namespace "joined" by path that is the host's own is the host's: its sysctls stay
    # refused (runc checks this for the network namespace; Berth for ipc and uts too).
    for kind, ns, key in [("network", "net", "net.ipv4.ip_forward"), ("ipc", "ipc", "kernel.shmmax"),
                          ("uts", "uts", "kernel.domainname")]:
        def m(c):
            c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != kind]
            c["linux"]["namespaces"].append({"type": kind, "path": f"/proc/{os.getpid()}/ns/{ns}"})
            c["linux"]["sysctl"] = {key: "1"}
        b = env.bundle(["true"], mutate=m)
        p = env.create(b, env.new_id(), check=False)
        assert p.returncode == 1 and f"linux.sysctl.{key}: " in p.stderr, p.stderr


def test_uts_sysctls_as_runc(env):
    # kernel.domainname in the container's uts namespace is allowed; kernel.hostname is
    # refused (the spec's hostname field sets it), and so is a domainname sysctl that
    # contradicts the domainname field.
    def m(c):
        c["linux"]["sysctl"] = {"kernel.domainname": "example.test"}
    p = env.run(["cat", "/proc/sys/kernel/domainname"], mutate=m)
    assert p.returncode == 0 and p.stdout == "example.test\n", p.stderr
    for extra, words in [({"kernel.hostname": "x"}, 'conflicts with the OCI "hostname" field'),
                         ({"kernel.domainname": "other.test"}, 'conflicts with the OCI "domainname" field')]:
        def m2(c):
            c["domainname"] = "example.test"
            c["linux"]["sysctl"] = extra
        b = env.bundle(["true"], mutate=m2)
        p = env.create(b, env.new_id(), check=False)
        assert p.returncode == 1 and words in p.stderr, p.stderr


def copy_rootfs(env, name):
    dst = os.path.join(env.tmp, name)
    shutil.copytree(env.rootfs, dst, symlinks=True)
    return dst


def test_cve_2021_30465_symlink_cannot_redirect_a_mount(env):
    # The image has /mnt pointing at a host directory (absolute and ..-escaping forms).
    host_target = os.path.join(env.tmp, "host-target")
    os.makedirs(host_target)
    rootfs = copy_rootfs(env, "evil-rootfs")
    os.symlink(host_target, os.path.join(rootfs, "mnt"))
    os.symlink("../../../../../../../../" + host_target.lstrip("/"), os.path.join(rootfs, "escape"))
    def m(c):
        c["root"]["path"] = rootfs
        c["mounts"] += [
            {"destination": "/mnt/inner", "type": "tmpfs", "source": "tmpfs"},
            {"destination": "/escape/other", "type": "tmpfs", "source": "tmpfs"},
        ]
    p = env.run(["sh", "-c", "touch /mnt/inner/x && echo in-container; "
                 "grep -E ' (/tmp/berth-test[^ ]*/host-target/(inner|other)) ' /proc/self/mountinfo | wc -l"], mutate=m)
    assert p.returncode == 0, p.stderr
    # The links were followed inside the root: the tmpfs mounts sit at <rootfs><host_target>/...
    assert p.stdout.split() == ["in-container", "2"]
    # Nothing was created or mounted in the host directory.
    assert os.listdir(host_target) == []
    with open("/proc/self/mountinfo") as f:
        assert host_target not in f.read()


def test_cve_2024_45310_racing_symlinks_never_create_outside_the_root(env):
    # A volume shared with another container, which keeps swapping a directory on the
    # mount's destination path for a symlink to a host directory while Berth makes the
    # destination: nothing may ever be created in the host directory.
    import threading
    outside = os.path.join(env.tmp, "outside")
    os.makedirs(outside)
    rootfs = copy_rootfs(env, "race-rootfs")
    vol = os.path.join(rootfs, "racevol")
    os.makedirs(vol)
    swap = os.path.join(vol, "a")
    stop = threading.Event()

    def flip():
        while not stop.is_set():
            try:
                os.makedirs(swap, exist_ok=True)
                shutil.rmtree(swap, ignore_errors=True)
                os.symlink(outside, swap + ".new")
                os.rename(swap + ".new", swap)
                os.unlink(swap)
            except OSError:
                pass
    t = threading.Thread(target=flip)
    t.start()
    try:
        def m(c):
            c["root"]["path"] = rootfs
            c["mounts"].append({"destination": "/racevol/a/b/c", "type": "tmpfs", "source": "tmpfs"})
        b = env.bundle(["true"], mutate=m)
        for _ in range(30):
            env.berth("run", "--bundle", b, env.new_id("race"), check=False)
    finally:
        stop.set()
        t.join()
    assert os.listdir(outside) == []
    with open("/proc/self/mountinfo") as f:
        assert outside not in f.read()


def test_cve_2023_27561_proc_must_be_procfs(env):
    # /proc in the image is a symlink to a directory: sysctl writes must not follow it.
    rootfs = copy_rootfs(env, "proc-link-rootfs")
    decoy = os.path.join(rootfs, "decoy")
    os.makedirs(os.path.join(decoy, "sys", "kernel"))
    os.rmdir(os.path.join(rootfs, "proc"))
    os.symlink("/decoy", os.path.join(rootfs, "proc"))
    def m(c):
        c["root"]["path"] = rootfs
        c["mounts"] = [x for x in c["mounts"] if x["type"] != "proc"]
        c["linux"]["sysctl"] = {"kernel.domainname": "evil"}
    b = env.bundle(["true"], mutate=m)
    p = env.create(b, env.new_id(), check=False)
    assert p.returncode == 1
    assert "/proc/sys is missing or not procfs" in p.stderr
    assert not os.path.exists(os.path.join(decoy, "sys", "kernel", "domainname"))


def test_cve_2025_31133_fake_dev_null_is_never_used_for_masking(env):
    # /dev comes from a host directory whose "null" is a regular file: masking with it
    # would bind a writable host file over /proc paths.
    fake_dev = os.path.join(env.tmp, "fake-dev")
    os.makedirs(fake_dev)
    with open(os.path.join(fake_dev, "null"), "w") as f:
        f.write("host data\n")
    def m(c):
        c["mounts"] = [x for x in c["mounts"] if not x["destination"].startswith("/dev")]
        c["mounts"].append({"destination": "/dev", "type": "bind", "source": fake_dev, "options": ["rbind"]})
        c["linux"]["maskedPaths"] = ["/proc/keys"]
    b = env.bundle(["true"], mutate=m)
    p = env.create(b, env.new_id(), check=False)
    assert p.returncode == 1
    assert "is not the real null device" in p.stderr
    assert open(os.path.join(fake_dev, "null")).read() == "host data\n"


def test_cve_2024_21626_cwd_through_a_leaked_fd(env):
    # Whatever fd number a cwd of /proc/self/fd/N names, it cannot lead outside.
    for n in range(3, 12):
        def m(c, n=n):
            c["process"]["cwd"] = f"/proc/self/fd/{n}"
        b = env.bundle(["sh", "-c", "pwd; ls .. | head -3"], mutate=m, name=f"cwd{n}")
        p = env.run(["sh", "-c", "pwd"], mutate=m, name=f"cwd{n}")
        if p.returncode == 0:
            # Only acceptable if it landed inside the container.
            assert p.stdout.startswith("/"), p.stdout
        else:
            assert "process.cwd" in p.stderr, p.stderr


def test_no_host_fd_reaches_the_container(env):
    host_dir = os.open(env.tmp, os.O_RDONLY)  # inheritable, not preserved
    try:
        b = env.bundle(["sh", "-c", "ls /proc/self/fd | wc -l"])
        p = env.berth("run", "--bundle", b, env.new_id(), check=False, pass_fds=(host_dir,))
    finally:
        os.close(host_dir)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "4"  # 0, 1, 2 and ls's own directory fd


def test_cve_2019_5736_runtime_binary_unreachable(env):
    with open(BERTH, "rb") as f:
        before = hashlib.sha256(f.read()).hexdigest()
    # A created container's init is still Berth's code: a second container in the same
    # pid namespace must not be able to open it through /proc/1/exe.
    a = env.bundle(["sleep", "60"], name="a")
    ida = env.new_id("a")
    env.create(a, ida)
    pid = env.state(ida)["pid"]
    def m(c):
        c["linux"]["namespaces"] = [{"type": "mount"}, {"type": "pid", "path": f"/proc/{pid}/ns/pid"}]
        c["hostname"] = ""
        c["process"]["capabilities"] = {k: ["CAP_DAC_OVERRIDE", "CAP_KILL"] for k in ("bounding", "effective", "permitted")}
    p = env.run(["sh", "-c", "readlink /proc/1/exe || echo no-readlink; "
                 "cat /proc/1/exe > /dev/null 2>&1 && echo readable || echo unreadable; "
                 "echo x >> /proc/1/exe 2>/dev/null && echo writable || echo unwritable; "
                 "readlink /proc/self/exe"], mutate=m, name="b")
    assert p.returncode == 0, p.stderr
    out = p.stdout.split()
    assert "no-readlink" in out and "unreadable" in out and "unwritable" in out
    assert out[-1] == "/bin/busybox"
    with open(BERTH, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == before


KEYRING_SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "payload", "session_keyring.c")


def keyring_probe(env):
    """The static probe, built into a copy of the suite's rootfs; returns that rootfs."""
    assert shutil.which("gcc"), "needs gcc (and libc6-dev) to build the static probe"
    root = os.path.join(env.tmp, "keyring-rootfs")
    subprocess.run(["cp", "-a", env.rootfs, root], check=True)
    subprocess.run(["gcc", "-static", "-O2", "-o", os.path.join(root, "session_keyring"), KEYRING_SRC], check=True)
    return root


def own_session_keyring():
    libc = ctypes.CDLL(None, use_errno=True)
    return "%x" % libc.syscall(250, 0, ctypes.c_long(-3), 0)  # keyctl(KEYCTL_GET_KEYRING_ID, session)


def test_no_container_process_keeps_its_callers_session_keyring(env):
    """A process holding its caller's session keyring possesses the host's keys. runc
    gives init a keyring named after the container and has every exec join that one;
    Berth's exec once stayed in its caller's."""
    root = keyring_probe(env)
    def m(c):
        c["root"]["path"] = root
    b = env.bundle(["sleep", "300"], mutate=m)
    cid = env.new_id()
    env.detach(b, cid)
    caller = own_session_keyring()
    first = env.berth("exec", cid, "/session_keyring").stdout.split()
    second = env.berth("exec", cid, "/session_keyring").stdout.split()
    assert first[0] != caller, "exec kept the caller's session keyring"
    assert first[1].endswith(";_ses." + cid), first   # runc's name
    assert second[0] == first[0]                       # every exec joins the same one
    p = env.run(["/session_keyring"], mutate=m, name="init")
    serial, desc = p.stdout.split()[:2]
    assert serial != caller and desc.split(";")[4].startswith("_ses."), p.stdout
    # --no-new-keyring: init and exec keep the caller's, as with runc.
    cid = env.new_id("nokr")
    env.detach(b, cid, "--no-new-keyring")
    assert env.berth("exec", cid, "/session_keyring").stdout.split()[0] == caller
