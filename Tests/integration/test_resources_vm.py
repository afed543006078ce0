"""Resource limits seen working: they need the cgroup v2 controllers that only the VM
(Scripts/vm) has on these machines; on the host these tests are skipped."""
import json
import os
import subprocess
import time

import pytest

from conftest import BERTH, CGROUP2, CGROUP_V1, wait_for

CONTROLLERS = set(open(os.path.join(CGROUP2, "cgroup.controllers")).read().split())
needs = lambda *c: pytest.mark.skipif(not set(c) <= CONTROLLERS,
                                      reason=f"needs the {', '.join(c)} controllers (run Scripts/vm)")


def cgroup_of(env, cid):
    pid = env.state(cid)["pid"]
    rel = [l for l in open(f"/proc/{pid}/cgroup").read().splitlines() if l.startswith("0::")][0][3:]
    return CGROUP2 + rel


def read(path):
    with open(path) as f:
        return f.read().strip()


def shm(c, size="256m"):
    c["mounts"].append({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": [f"size={size}"]})


@needs("memory")
def test_memory_hog_is_oom_killed_and_reported(env):
    def m(c):
        shm(c)
        c["linux"]["resources"] = {"memory": {"limit": 32 << 20, "swap": 32 << 20}}
        c["mounts"].append({"destination": "/ctl", "type": "bind", "source": env.tmp, "options": ["bind"]})
    # Waits for the go file, then writes 100 MiB into tmpfs: memory charged to the cgroup.
    b = env.bundle(["sh", "-c", "while [ ! -e /ctl/go ]; do sleep 0.05; done; "
                    "dd if=/dev/zero of=/dev/shm/fill bs=1M count=100 2>/dev/null; echo dd=$?; sleep 60"], mutate=m)
    cid = env.new_id()
    env.detach(b, cid)
    cg = cgroup_of(env, cid)
    assert read(cg + "/memory.max") == str(32 << 20)
    assert read(cg + "/memory.swap.max") == "0"
    events = subprocess.Popen([BERTH, "--root", env.root, "events", "--interval", "200ms", cid],
                              stdout=subprocess.PIPE, text=True)
    try:
        open(os.path.join(env.tmp, "go"), "w").close()
        assert wait_for(lambda: "dd=137" in env.output(cid), timeout=30), env.output(cid)
        assert wait_for(lambda: "oom_kill 1" in read(cg + "/memory.events"), timeout=10)
        stats = json.loads(env.berth("events", "--stats", cid).stdout)
        assert stats["data"]["memory"]["usage"]["failcnt"] >= 1
        env.berth("kill", "--all", cid, "KILL")
        lines = events.communicate(timeout=30)[0].splitlines()
    finally:
        events.kill()
        events.wait()
    assert {"type": "oom", "id": cid} in [json.loads(l) for l in lines]


@needs("memory")
def test_update_raises_the_limit_and_the_hog_lives(env):
    def m(c):
        shm(c)
        c["linux"]["resources"] = {"memory": {"limit": 32 << 20, "swap": 32 << 20}}
        c["mounts"].append({"destination": "/ctl", "type": "bind", "source": env.tmp, "options": ["bind"]})
    b = env.bundle(["sh", "-c", "while [ ! -e /ctl/go ]; do sleep 0.05; done; "
                    "dd if=/dev/zero of=/dev/shm/fill bs=1M count=64 2>/dev/null; echo dd=$?; sleep 60"], mutate=m)
    cid = env.new_id()
    env.detach(b, cid)
    env.berth("update", "--memory", "128m", "--memory-swap", "128m", cid)
    cg = cgroup_of(env, cid)
    assert read(cg + "/memory.max") == str(128 << 20)
    open(os.path.join(env.tmp, "go"), "w").close()
    assert wait_for(lambda: "dd=" in env.output(cid), timeout=30)
    assert "dd=0" in env.output(cid)


@needs("pids")
def test_fork_bomb_stops_at_pids_max(env):
    def m(c):
        c["linux"]["resources"] = {"pids": {"limit": 20}}
    # busybox sh gives up when a fork fails: the bomb runs in a subshell.
    b = env.bundle(["sh", "-c", "(i=0; while [ $i -lt 60 ]; do sleep 60 & i=$((i+1)); done) 2>/dev/null; echo spawned; sleep 60"], mutate=m)
    cid = env.new_id()
    env.detach(b, cid)
    cg = cgroup_of(env, cid)
    assert read(cg + "/pids.max") == "20"
    assert wait_for(lambda: "spawned" in env.output(cid), timeout=30)
    assert int(read(cg + "/pids.current")) <= 20
    assert int(read(cg + "/pids.events").split()[1]) > 0  # "max N": forks were refused
    stats = json.loads(env.berth("events", "--stats", cid).stdout)
    assert stats["data"]["pids"]["limit"] == 20 and stats["data"]["pids"]["current"] <= 20


@needs("cpu")
def test_cpu_max_throttles(env):
    def m(c):
        c["linux"]["resources"] = {"cpu": {"quota": 10000, "period": 100000, "shares": 512}}
    b = env.bundle(["sh", "-c", "timeout 2 sh -c 'while :; do :; done'; echo spun; sleep 60"], mutate=m)
    cid = env.new_id()
    env.detach(b, cid)
    cg = cgroup_of(env, cid)
    assert read(cg + "/cpu.max") == "10000 100000"
    assert read(cg + "/cpu.weight") == "20"
    assert wait_for(lambda: "spun" in env.output(cid), timeout=60)
    stats = json.loads(env.berth("events", "--stats", cid).stdout)
    assert stats["data"]["cpu"]["throttling"]["throttled_periods"] > 0


@needs("cpuset", "io", "memory")
def test_other_knobs_reach_their_files(env):
    def m(c):
        c["linux"]["resources"] = {
            "memory": {"reservation": 16 << 20},
            "cpu": {"cpus": "0", "mems": "0", "burst": 1000},
            "blockIO": {"weight": 500},
            "unified": {"memory.high": "104857600"},
        }
        c["linux"]["resources"]["cpu"]["quota"] = 50000
    b = env.bundle(["sleep", "60"], mutate=m)
    cid = env.new_id()
    env.detach(b, cid)
    cg = cgroup_of(env, cid)
    assert read(cg + "/memory.low") == str(16 << 20)
    assert read(cg + "/memory.high") == "104857600"
    assert read(cg + "/cpuset.cpus") == "0"
    assert read(cg + "/cpu.max.burst") == "1000"
    assert read(cg + "/io.weight").startswith("default 4950")


@pytest.mark.skipif(CGROUP_V1, reason="a v1 host applies it (test_cgroup_v1.py)")
def test_disable_oom_killer_is_refused_on_v2(env):
    def m(c):
        c["linux"]["resources"] = {"memory": {"limit": 64 << 20, "disableOOMKiller": True}}
    b = env.bundle(["true"], mutate=m)
    p = env.create(b, env.new_id(), check=False)
    assert p.returncode == 1 and "linux.resources.memory.disableOOMKiller: only exists on cgroup v1" in p.stderr


@needs("memory", "pids")
def test_controllers_delegated_and_exec_follows_init_into_a_sub_cgroup(env):
    # As runc on pure v2: every root controller is enabled down to the container's cgroup,
    # so it can make and use sub-cgroups; once it enables a domain controller for them, its
    # own cgroup takes no process, and exec joins init's cgroup instead (runc's "cgroup v2
    # + init process in non-root cgroup").
    b = env.bundle(["sleep", "60"])
    cid = env.new_id()
    env.detach(b, cid)
    cg = cgroup_of(env, cid)
    assert set(read(os.path.join(CGROUP2, "cgroup.controllers")).split()) <= set(read(cg + "/cgroup.controllers").split())
    pid = env.state(cid)["pid"]
    os.mkdir(cg + "/sub")
    try:
        with open(cg + "/sub/cgroup.procs", "w") as f:
            f.write(str(pid))
        with open(cg + "/cgroup.subtree_control", "w") as f:
            f.write("+memory")
        p = env.berth("exec", cid, "cat", "/proc/self/cgroup")
        assert p.stdout.strip().endswith("/sub"), p.stdout
    finally:
        env.berth("delete", "--force", cid)
        if os.path.isdir(cg + "/sub"):
            os.rmdir(cg + "/sub")


@needs("memory")
def test_a_unified_file_the_kernel_lacks_fails_in_the_systems_words(env):
    # runc's and crun's errors carry the system's words for ENOENT; tools match them.
    def m(c):
        c["linux"]["resources"] = {"unified": {"memory.DOESNTEXIST": "1"}}
    p = env.run(["true"], mutate=m)
    assert p.returncode == 1
    assert "linux.resources.unified.memory.DOESNTEXIST" in p.stderr and \
        "memory.DOESNTEXIST: no such file or directory" in p.stderr, p.stderr
