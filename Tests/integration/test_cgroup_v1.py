"""cgroup v1 (this hybrid host; skipped on a pure v2 one): limits written to the v1
hierarchies as runc writes them, seen from inside the container through its "cgroup" mount
and from the host's v1 files; update, freezer, device rules, exec --cgroup, stats and OOM
events; and refusals that leave nothing behind."""
import json
import os
import subprocess
import threading
import time

import pytest

from conftest import CGROUP2, CGROUP_V1, reap_all, v1_hierarchies, wait_for

pytestmark = pytest.mark.skipif(not CGROUP_V1, reason="needs a cgroup v1 or hybrid host")

H = v1_hierarchies() if CGROUP_V1 else {}


def mnt(subsystem):
    """The host mount point of the hierarchy holding `subsystem`."""
    for key, path in H.items():
        if subsystem in key.split(","):
            return path
    return None


def need(*subsystems):
    missing = [s for s in subsystems if mnt(s) is None]
    if missing:
        pytest.skip(f"no v1 {', '.join(missing)} hierarchy here")


def read(path):
    with open(path) as f:
        return f.read().strip()


def cgroup_mount(c, ro=True):
    c["mounts"].append({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                        "options": ["nosuid", "noexec", "nodev", "relatime"] + (["ro"] if ro else [])})


def with_path(env, c, name="cg"):
    path = f"/{env.prefix}-{name}"
    c["linux"]["cgroupsPath"] = path
    return path


def test_limits_inside_and_on_the_host(env):
    need("memory", "pids", "cpu", "cpuset")
    path = None

    def m(c):
        nonlocal path
        path = with_path(env, c)
        c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "cgroup"]
        cgroup_mount(c)
        c["linux"]["resources"] = {
            "memory": {"limit": 64 << 20, "reservation": 32 << 20, "swap": 96 << 20, "swappiness": 10},
            "pids": {"limit": 42},
            "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0"},
            "blockIO": {"weight": 0},  # Docker's "unset"
        }
    script = ("cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory/memory.soft_limit_in_bytes "
              "/sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/cpu/cpu.shares /sys/fs/cgroup/cpu/cpu.cfs_quota_us "
              "/sys/fs/cgroup/cpuset/cpuset.cpus; "
              "touch /sys/fs/cgroup/pids/x 2>/dev/null && echo writable || echo read-only; "
              "ls /sys/fs/cgroup/memory | grep -c '^berth$\\|^process_api$\\|^" + env.prefix + "'; "
              "grep -c ' - cgroup cgroup ' /proc/self/mountinfo; sleep 60")
    b = env.bundle(["sh", "-c", script], mutate=m)
    cid = env.new_id()
    env.detach(b, cid)
    assert wait_for(lambda: len(env.output(cid).split()) >= 9), env.output(cid)
    out = env.output(cid).split()
    assert out[:6] == [str(64 << 20), str(32 << 20), "42", "512", "50000", "0"]
    # The mount is read-only and holds the container's own cgroups, no host siblings.
    assert out[6] == "read-only" and out[7] == "0"
    assert int(out[8]) == len(H)
    # The host's files say the same, and init sits in every hierarchy and in the v2 one.
    assert read(f"{mnt('memory')}{path}/memory.memsw.limit_in_bytes") == str(96 << 20)
    assert read(f"{mnt('memory')}{path}/memory.swappiness") == "10"
    assert read(f"{mnt('cpu')}{path}/cpu.cfs_period_us") == "100000"
    pid = env.state(cid)["pid"]
    lines = open(f"/proc/{pid}/cgroup").read().splitlines()
    assert all(l.endswith(":" + path) for l in lines if l.split(":")[1] in ",".join(H).split(",") + [""]), lines


def test_cgroup_namespace_mounts_the_hierarchies(env):
    need("memory", "pids")

    def m(c):
        with_path(env, c, "ns")
        cgroup_mount(c, ro=False)
        c["linux"]["resources"] = {"pids": {"limit": 17}}
    b = env.bundle(["sh", "-c", "cat /proc/self/cgroup; cat /sys/fs/cgroup/pids/pids.max; "
                    "grep ' /sys/fs/cgroup/pids ' /proc/self/mountinfo"], mutate=m)
    p = env.berth("run", "--bundle", b, env.new_id(), check=False)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    cg = [l for l in lines if ":" in l and l.split(":")[0].isdigit()]
    assert cg and all(l.endswith(":/") for l in cg), lines
    assert "17" in lines
    assert any(" - cgroup cgroup " in l and "pids" in l for l in lines), lines


def test_update_swap_ordering_and_dockers_zeros(env):
    need("memory", "pids", "cpu")
    path = None

    def m(c):
        nonlocal path
        path = with_path(env, c)
        c["linux"]["resources"] = {"memory": {"limit": 32 << 20, "swap": 48 << 20}, "pids": {"limit": 20},
                                   "cpu": {"quota": 20000, "period": 100000}}
    b = env.bundle(["sleep", "60"], mutate=m)
    cid = env.new_id()
    env.detach(b, cid)
    mem = f"{mnt('memory')}{path}"
    # Growing both: memory+swap must go first, else the kernel refuses the memory limit.
    env.berth("update", "--memory", "128m", "--memory-swap", "256m", cid)
    assert read(mem + "/memory.limit_in_bytes") == str(128 << 20)
    assert read(mem + "/memory.memsw.limit_in_bytes") == str(256 << 20)
    # Shrinking both: memory first.
    env.berth("update", "--memory", "40m", "--memory-swap", "50m", cid)
    assert read(mem + "/memory.limit_in_bytes") == str(40 << 20)
    assert read(mem + "/memory.memsw.limit_in_bytes") == str(50 << 20)
    # -1 for memory alone: both unlimited.
    env.berth("update", "--memory", "-1", cid)
    assert int(read(mem + "/memory.limit_in_bytes")) > 1 << 60
    assert int(read(mem + "/memory.memsw.limit_in_bytes")) > 1 << 60
    # A period alone keeps the quota (runc writes only what it is given on v1).
    env.berth("update", cid, "--cpu-period", "50000")
    assert read(f"{mnt('cpu')}{path}/cpu.cfs_period_us") == "50000"
    assert read(f"{mnt('cpu')}{path}/cpu.cfs_quota_us") == "20000"
    # Docker's update sends zeros for everything it does not change: nothing moves.
    zeros = {"memory": {"limit": 0, "reservation": 0, "kernel": 0}, "cpu": {"shares": 0, "quota": 0, "period": 0},
             "blockIO": {"weight": 0}, "pids": {"limit": 0}}
    env.berth("update", "--resources", "-", cid, input=json.dumps(zeros))
    assert read(f"{mnt('pids')}{path}/pids.max") == "20"
    assert read(f"{mnt('cpu')}{path}/cpu.cfs_quota_us") == "20000"
    # runc's words when the kernel refuses a limit below what the container uses.
    p = env.berth("update", "--memory", "4096", cid, check=False)
    assert p.returncode == 1 and "unable to set memory limit to 4096 (current usage: " in p.stderr, p.stderr


def test_refusals_leave_nothing(env):
    cases = [({"unified": {"memory.max": "1"}}, "invalid configuration: cannot use unified on cgroup v1"),
             ({"memory": {"limit": 64 << 20, "swappiness": 200}}, "invalid memory swappiness value: 200 (valid range is 0-100)")]
    if mnt("net_cls") is None:
        cases.append(({"network": {"classID": 7}}, "linux.resources.network.classID: the cgroup v1 net_cls hierarchy is not mounted"))
    for res, words in cases:
        def m(c, res=res):
            c["linux"]["resources"] = res
        b = env.bundle(["true"], mutate=m, name="refused")
        cid = env.new_id()
        p = env.create(b, cid, check=False)
        assert p.returncode == 1 and words in p.stderr, p.stderr
        assert len(p.stderr.strip().splitlines()) == 1
        assert not os.path.exists(os.path.join(env.root, cid))
        for root in H.values():
            assert not os.path.exists(f"{root}/berth/{cid}")


def test_freezer_pause_resume_and_delete_of_a_paused_container(env):
    need("freezer")
    path = None

    def m(c):
        nonlocal path
        path = with_path(env, c)
        c["mounts"].append({"destination": "/out", "type": "bind", "source": env.tmp, "options": ["bind"]})
    b = env.bundle(["sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /out/counter; sleep 0.02; done"], mutate=m)
    cid = env.new_id()
    env.detach(b, cid)
    counter = lambda: int(open(os.path.join(env.tmp, "counter")).read().strip() or 0) if os.path.exists(os.path.join(env.tmp, "counter")) else 0
    assert wait_for(lambda: counter() > 3)
    env.berth("pause", cid)
    assert read(f"{mnt('freezer')}{path}/freezer.state") == "FROZEN"
    assert env.state(cid)["status"] == "paused"
    at = counter()
    time.sleep(0.3)
    assert counter() == at
    env.berth("resume", cid)
    assert read(f"{mnt('freezer')}{path}/freezer.state") == "THAWED"
    assert wait_for(lambda: counter() > at + 3)
    # kill --all of a paused container reaches it (frozen, signalled, thawed, as runc).
    env.berth("pause", cid)
    start = time.time()
    env.berth("delete", "--force", cid)
    assert time.time() - start < 5
    assert not os.path.exists(f"{mnt('freezer')}{path}")


def test_pre_existing_frozen_cgroup_is_refused_and_left_frozen(env):
    need("freezer")
    path = f"/{env.prefix}-frozen"
    d = mnt("freezer") + path
    os.mkdir(d)
    try:
        with open(d + "/freezer.state", "w") as f:
            f.write("FROZEN")
        def m(c):
            c["linux"]["cgroupsPath"] = path
        b = env.bundle(["true"], mutate=m)
        for _ in range(2):
            cid = env.new_id()
            p = env.create(b, cid, check=False)
            assert p.returncode == 1 and "container's cgroup unexpectedly frozen" in p.stderr, p.stderr
            assert not os.path.exists(os.path.join(env.root, cid))
        assert read(d + "/freezer.state") == "FROZEN"
    finally:
        with open(d + "/freezer.state", "w") as f:
            f.write("THAWED")
        for root in H.values():
            if os.path.isdir(root + path):
                os.rmdir(root + path)
        if os.path.isdir(CGROUP2 + path):
            os.rmdir(CGROUP2 + path)


def test_device_rules_minimal_transitions(env):
    need("devices")
    path = None

    def m(c):
        nonlocal path
        path = with_path(env, c)
        c["linux"]["resources"] = {"devices": [{"allow": False, "access": "rwm"},
                                               {"allow": False, "type": "c", "major": 1, "minor": 11, "access": "rwa"}]}
        c["linux"]["devices"] = [{"path": "/dev/kmsg", "type": "c", "major": 1, "minor": 11}]
        c["process"]["capabilities"] = {k: ["CAP_SYSLOG"] for k in ("bounding", "effective", "permitted")}
    b = env.bundle(["sleep", "60"], mutate=m)
    cid = env.new_id()
    env.detach(b, cid)
    devs = f"{mnt('devices')}{path}/devices.list"
    rules = read(devs).splitlines()
    assert "a *:* rwm" not in rules and "c 1:3 rwm" in rules and "c 10:200 rwm" in rules
    assert not any(r.startswith("c 1:11 ") for r in rules) and not any(r.startswith("c 5:1 ") for r in rules)
    p = env.berth("exec", cid, "sh", "-c", "head -c1 /dev/kmsg >/dev/null 2>&1 && echo open || echo denied", check=False)
    assert p.stdout.strip() == "denied"
    # One more device: only that rule is written (an update without devices writes none).
    env.berth("update", "--pids-limit", "30", cid)
    assert read(devs).splitlines() == rules
    more = {"devices": [{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 1, "minor": 11, "access": "r"}]}
    env.berth("update", "--resources", "-", cid, input=json.dumps(more))
    assert sorted(read(devs).splitlines()) == sorted(rules + ["c 1:11 r"])
    p = env.berth("exec", cid, "sh", "-c", "head -c0 /dev/kmsg && echo open || echo denied", check=False)
    assert p.stdout.strip() == "open", p.stderr


def test_no_device_rules_means_runcs_defaults(env):
    need("devices")
    path = None

    def m(c):
        nonlocal path
        path = with_path(env, c)
    b = env.bundle(["sleep", "60"], mutate=m)
    cid = env.new_id()
    env.detach(b, cid)
    rules = read(f"{mnt('devices')}{path}/devices.list").splitlines()
    assert "a *:* rwm" not in rules and "c 1:3 rwm" in rules and "b *:* m" in rules


def test_exec_cgroup_forms(env):
    need("memory", "cpu", "cpuacct")
    path = None

    def m(c):
        nonlocal path
        path = with_path(env, c)
        c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "cgroup"]
        cgroup_mount(c, ro=False)
    b = env.bundle(["sleep", "60"], mutate=m)
    cid = env.new_id()
    env.detach(b, cid)
    p = env.berth("exec", "--cgroup", "..", cid, "true", check=False)
    assert p.returncode != 0 and " .. is not a sub cgroup path" in p.stderr
    p = env.berth("exec", "--cgroup", "nonexistent", cid, "true", check=False)
    assert p.returncode != 0 and " adding pid " in p.stderr and "/nonexistent/cgroup.procs: no such file " in p.stderr, p.stderr
    p = env.berth("exec", "--cgroup", "cpu:nonexistent", cid, "true", check=False)
    assert p.returncode != 0 and "/nonexistent/cgroup.procs: no such file " in p.stderr
    p = env.berth("exec", "--cgroup", "whaaat:/", cid, "true", check=False)
    assert p.returncode != 0 and "unknown controller " in p.stderr
    for extra in ([], ["--cgroup", "/"]):
        p = env.berth("exec", *extra, cid, "cat", "/proc/self/cgroup")
        assert all(l.endswith(":" + path) for l in p.stdout.splitlines()), p.stdout
    cpu = "cpu,cpuacct" if "cpu,cpuacct" in H else "cpu"
    env.berth("exec", cid, "sh", "-euc", f"mkdir -p /sys/fs/cgroup/memory/submem /sys/fs/cgroup/{cpu}/subcpu "
              + ("" if cpu == "cpu,cpuacct" else "/sys/fs/cgroup/cpuacct/subcpu"))
    p = env.berth("exec", "--cgroup", "memory:submem", "--cgroup", "cpu,cpuacct:subcpu", cid, "cat", "/proc/self/cgroup")
    assert f":memory:{path}/submem" in p.stdout and f"{path}/subcpu" in p.stdout, p.stdout
    # delete removes the sub-cgroups made inside.
    env.berth("delete", "--force", cid)
    assert not os.path.exists(f"{mnt('memory')}{path}")


def test_stats_and_oom_event(env):
    need("memory", "pids", "cpuacct")
    if not os.path.exists(mnt("memory") + "/memory.memsw.limit_in_bytes"):
        pytest.skip("no swap accounting")

    def m(c):
        with_path(env, c)
        c["linux"]["resources"] = {"memory": {"limit": 32 << 20, "swap": 32 << 20}, "pids": {"limit": 50}}
        c["mounts"].append({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["size=256m"]})
    b = env.bundle(["sleep", "60"], mutate=m)
    cid = env.new_id()
    env.detach(b, cid)
    s = json.loads(env.berth("events", "--stats", cid).stdout)
    assert s["type"] == "stats" and s["data"]["memory"]["usage"]["limit"] == 32 << 20
    assert s["data"]["pids"] == {"current": 1, "limit": 50}
    assert s["data"]["cpu"]["usage"]["total"] > 0
    ev = subprocess.Popen(env.berth_cmd("events", "--interval", "100ms", cid), stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.3)
        env.berth("exec", "-d", cid, "dd", "if=/dev/zero", "of=/dev/shm/fill", "bs=1M", "count=100")
        deadline = time.time() + 15
        seen = False
        while time.time() < deadline and not seen:
            line = ev.stdout.readline()
            seen = '"type":"oom"' in line
        assert seen
    finally:
        env.berth("delete", "--force", cid)
        # The init (pid 1 of its namespace) only finishes exiting once the exec'd dd,
        # re-parented to us, is reaped, as a shim would. The stream goes on writing
        # stats until it sees the container stopped: drain it.
        threading.Thread(target=ev.stdout.read, daemon=True).start()
        deadline = time.time() + 10
        while ev.poll() is None and time.time() < deadline:
            reap_all()
            time.sleep(0.1)
        ev.wait(timeout=5)


def test_relative_cgroups_path_is_below_our_own(env):
    need("memory")

    def m(c):
        c["linux"]["cgroupsPath"] = f"{env.prefix}-rel"
    b = env.bundle(["sleep", "60"], mutate=m)
    cid = env.new_id()
    env.detach(b, cid)
    own = [l.split(":", 2)[2] for l in open("/proc/self/cgroup").read().splitlines() if l.split(":")[1] == "memory"][0]
    pid = env.state(cid)["pid"]
    theirs = [l.split(":", 2)[2] for l in open(f"/proc/{pid}/cgroup").read().splitlines() if l.split(":")[1] == "memory"][0]
    assert theirs == os.path.join(own, f"{env.prefix}-rel")
