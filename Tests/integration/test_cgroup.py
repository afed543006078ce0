"""cgroups on either kind of host (this hybrid one, where Berth uses the v1 hierarchies and
joins the v2 one too, and the pure v2 VM): placement, freeze, ps, update, stats, the device
rules, and clear errors for controllers a v2 host lacks. The v1 specifics are in
test_cgroup_v1.py; the VM suite checks the v2 resource limits themselves."""
import json
import os
import shutil
import time

from conftest import CGROUP2, CGROUP_V1, wait_for


def controllers():
    with open(os.path.join(CGROUP2, "cgroup.controllers")) as f:
        return set(f.read().split())


def counter_bundle(env):
    def m(c):
        c["mounts"].append({"destination": "/out", "type": "bind", "source": env.tmp, "options": ["bind"]})
    return env.bundle(["sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /out/counter; sleep 0.02; done"], mutate=m)


def read_counter(env):
    try:
        return int(open(os.path.join(env.tmp, "counter")).read().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def test_cgroups_path_absolute_and_relative(env):
    for path in (f"/{env.prefix}-abs/inner", f"{env.prefix}-rel"):
        def m(c, path=path):
            c["linux"]["cgroupsPath"] = path
        b = env.bundle(["sleep", "60"], mutate=m)
        cid = env.new_id()
        env.create(b, cid)
        pid = env.state(cid)["pid"]
        cg = [l for l in open(f"/proc/{pid}/cgroup").read().splitlines() if l.startswith("0::")][0][3:]
        assert cg == "/" + path.lstrip("/")
        env.berth("delete", cid)
        assert not os.path.exists(CGROUP2 + cg)
        assert not os.path.exists(CGROUP2 + "/" + path.lstrip("/").split("/")[0])


def test_pause_and_resume_stop_and_restart_a_counter(env):
    cid = env.new_id()
    env.detach(counter_bundle(env), cid)
    assert wait_for(lambda: read_counter(env) > 3)
    env.berth("pause", cid)
    assert env.state(cid)["status"] == "paused"
    frozen_at = read_counter(env)
    time.sleep(0.3)
    assert read_counter(env) == frozen_at
    p = env.berth("pause", cid, check=False)
    assert p.returncode == 1 and "paused" in p.stderr
    env.berth("resume", cid)
    assert env.state(cid)["status"] == "running"
    assert wait_for(lambda: read_counter(env) > frozen_at + 3)
    p = env.berth("resume", cid, check=False)
    assert p.returncode == 1 and "container not paused" in p.stderr
    # A paused container can be killed and force-deleted.
    env.berth("pause", cid)
    env.berth("delete", "--force", cid)


def test_pause_of_stopped_container(env):
    b = env.bundle(["true"])
    cid = env.new_id()
    env.berth("run", "--keep", "--bundle", b, cid)
    p = env.berth("pause", cid, check=False)
    assert p.returncode == 1 and "container not running" in p.stderr


def test_ps_json_and_table(env):
    b = env.bundle(["sh", "-c", "sleep 60 & sleep 61 & wait"])
    cid = env.new_id()
    env.detach(b, cid)
    assert wait_for(lambda: len(json.loads(env.berth("ps", "--format", "json", cid).stdout)) == 3)
    pids = json.loads(env.berth("ps", "--format", "json", cid).stdout)
    assert env.state(cid)["pid"] in pids
    table = env.berth("ps", cid).stdout.splitlines()
    assert "PID" in table[0].split()
    assert len(table) == 4 and any("sleep 61" in l for l in table), table
    table = env.berth("ps", cid, "-o", "pid,comm").stdout.split()
    assert table.count("sleep") == 2


def test_device_filter_denies_a_node_in_the_image(env):
    rootfs = os.path.join(env.tmp, "rootfs")
    shutil.copytree(env.rootfs, rootfs, symlinks=True)
    os.mknod(os.path.join(rootfs, "kmsg-node"), 0o666 | 0o020000, os.makedev(1, 11))
    def m(rules):
        def f(c):
            c["root"]["path"] = rootfs
            c["linux"]["resources"] = {"devices": rules}
            # Reading /dev/kmsg also needs CAP_SYSLOG (dmesg_restrict): only the filter may refuse.
            c["process"]["capabilities"] = {k: ["CAP_SYSLOG"] for k in ("bounding", "effective", "permitted")}
        return f
    script = "head -c0 /kmsg-node 2>/dev/null && echo kmsg-open || echo kmsg-denied; head -c1 /dev/zero | wc -c"
    p = env.run(["sh", "-c", script], mutate=m([{"allow": False, "access": "rwm"}]), name="deny")
    assert p.stdout.split() == ["kmsg-denied", "1"], p.stderr
    p = env.run(["sh", "-c", script], mutate=m([{"allow": False, "access": "rwm"},
                                                 {"allow": True, "type": "c", "major": 1, "minor": 11, "access": "r"}]), name="allow")
    assert p.stdout.split() == ["kmsg-open", "1"], p.stderr
    # No rules: runc's default list only (its emulator starts from "deny all"), never
    # every host device: the old "allow all" default let a container open any node.
    p = env.run(["sh", "-c", script], mutate=m([]), name="none")
    assert p.stdout.split() == ["kmsg-denied", "1"], p.stderr


def test_missing_controller_is_a_clear_error(env):
    # On a v1 host the limits go to the v1 hierarchies (test_cgroup_v1.py).
    missing = [] if CGROUP_V1 else [c for c in ("memory", "pids", "cpu") if c not in controllers()]
    if not missing:
        return  # a pure v2 host: the VM suite covers the limits
    res = {"memory": {"memory": {"limit": 67108864}}, "pids": {"pids": {"limit": 50}},
           "cpu": {"cpu": {"quota": 50000, "period": 100000}}}
    field = {"memory": "memory.limit", "pids": "pids.limit", "cpu": "cpu.quota"}
    for c in missing:
        def m(cfg, c=c):
            cfg["linux"]["resources"] = res[c]
        b = env.bundle(["true"], mutate=m, name=c)
        cid = env.new_id()
        p = env.create(b, cid, check=False)
        assert p.returncode == 1
        assert f"config.json: linux.resources.{field[c]}: the cgroup v2 {c} controller is not available on this host" in p.stderr
        assert len(p.stderr.strip().splitlines()) == 1
        assert not os.path.exists(os.path.join(env.root, cid))
        assert not os.path.exists(os.path.join(CGROUP2, "berth", cid))


def test_hugetlb_limit_and_update(env):
    if "hugetlb" not in controllers():
        return
    def m(c):
        c["linux"]["resources"] = {"hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}]}
    b = env.bundle(["sh", "-c", "cat /sys/fs/cgroup/hugetlb.2MB.max; sleep 60"], mutate=m)
    # A cgroup2 mount inside shows the container's own cgroup (cgroup namespace).
    def m2(c):
        m(c)
        c["mounts"].append({"destination": "/sys/fs/cgroup", "type": "cgroup2", "source": "cgroup"})
    b = env.bundle(["sh", "-c", "cat /sys/fs/cgroup/hugetlb.2MB.max; sleep 60"], mutate=m2)
    cid = env.new_id()
    env.detach(b, cid)
    assert wait_for(lambda: env.output(cid).strip() == "4194304")
    res = os.path.join(env.tmp, "res.json")
    with open(res, "w") as f:
        json.dump({"hugepageLimits": [{"pageSize": "2MB", "limit": 8388608}]}, f)
    env.berth("update", "--resources", res, cid)
    cg = CGROUP2 + [l for l in open(f"/proc/{env.state(cid)['pid']}/cgroup").read().splitlines() if l.startswith("0::")][0][3:]
    assert open(cg + "/hugetlb.2MB.max").read().strip() == "8388608"
    stats = json.loads(env.berth("events", "--stats", cid).stdout)
    assert stats["type"] == "stats" and stats["id"] == cid
    assert stats["data"]["hugetlb"]["2MB"]["max"] == 8388608
    assert stats["data"]["cpu"]["usage"]["total"] >= 0


def test_update_errors(env):
    b = env.bundle(["sleep", "60"])
    cid = env.new_id()
    env.detach(b, cid)
    if "memory" not in controllers() and not CGROUP_V1:
        p = env.berth("update", "--memory", "64m", cid, check=False)
        assert p.returncode == 1 and "memory controller is not available" in p.stderr
    p = env.berth("update", "--memory", "lots", cid, check=False)
    assert p.returncode == 1 and "--memory: invalid size" in p.stderr
    if not CGROUP_V1:
        p = env.berth("update", "--resources", "-", cid, check=False, input='{"memory": {"swappiness": 10}}')
        assert p.returncode == 1 and "memory.swappiness: only exists on cgroup v1" in p.stderr


def test_events_stream_ends_with_the_container(env):
    b = env.bundle(["sleep", "0.5"])
    cid = env.new_id()
    env.detach(b, cid)
    p = env.berth("events", "--interval", "100ms", cid, timeout=20)
    lines = [json.loads(l) for l in p.stdout.splitlines()]
    assert len(lines) >= 2 and all(l["type"] == "stats" and l["id"] == cid for l in lines)
