"""The systemd cgroup driver (--systemd-cgroup): the container in a transient scope that
systemd creates over D-Bus, the limits as unit properties and in the files, checked from
inside the container and through systemctl. Needs systemd as pid 1 on a pure cgroup v2
host: `Scripts/vm --systemd -- Scripts/vm-guest-tests Tests/integration/test_systemd.py`.
On a host without systemd, the driver's refusal is checked instead."""
import json
import os
import shutil
import subprocess

import pytest

from conftest import SYSTEMD, reap_all, wait_for

needs_systemd = pytest.mark.skipif(not SYSTEMD, reason="needs systemd as pid 1 on cgroup v2 (Scripts/vm --systemd)")


def unit_prop(unit, prop):
    return subprocess.run(["systemctl", "show", "-p", prop, "--value", unit], capture_output=True, text=True).stdout.strip()


def units_named(prefix):
    out = subprocess.run(["systemctl", "list-units", "--all", "--plain", "--no-legend", prefix + "*"],
                         capture_output=True, text=True).stdout
    return [l.split()[0] for l in out.splitlines() if l.strip()]


def systemd_bundle(env, args, resources=None, path=True, extra_mutate=None):
    def m(c):
        if path:
            c["linux"]["cgroupsPath"] = f"system.slice:{env.prefix}:sd"
        c["linux"]["resources"] = resources or {}
        c["mounts"].append({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["ro", "nosuid", "nodev", "noexec"]})
        c["mounts"].append({"destination": "/sys/fs/cgroup", "type": "cgroup2", "source": "cgroup", "options": ["ro", "nosuid", "nodev", "noexec"]})
        if extra_mutate:
            extra_mutate(c)
    return env.bundle(args, mutate=m)


def detach_sd(env, bundle, cid, *cmd):
    """`run -d` (or `create`) with the driver, the global flag first as callers pass it.
    The container's stdio is Berth's: files, so nothing waits on a pipe init holds."""
    cmd = cmd or ("run", "-d")
    out = open(os.path.join(env.tmp, cid + ".out"), "w")
    err = open(os.path.join(env.tmp, cid + ".err"), "w+")
    try:
        p = subprocess.run(env.berth_cmd("--systemd-cgroup", *cmd, "--bundle", bundle, cid),
                           stdin=subprocess.DEVNULL, stdout=out, stderr=err, text=True, timeout=60)
        err.seek(0)
        p.stderr = err.read()
    finally:
        out.close()
        err.close()
    return p


def test_refused_clearly_without_systemd(env):
    if SYSTEMD:
        pytest.skip("systemd runs here")
    b = env.bundle(["true"])
    cid = env.new_id()
    p = detach_sd(env, b, cid, "create")
    assert p.returncode == 1
    assert p.stderr.strip().endswith("systemd not running on this host, cannot use systemd cgroups manager"), p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    assert not os.path.exists(os.path.join(env.root, cid))


@needs_systemd
def test_scope_with_limits_inside_and_in_systemd(env):
    res = {"memory": {"limit": 64 << 20, "reservation": 32 << 20}, "pids": {"limit": 40},
           "cpu": {"shares": 512, "quota": 50000, "period": 100000}}
    b = systemd_bundle(env, ["sleep", "60"], res)
    cid = env.new_id()
    p = detach_sd(env, b, cid)
    assert p.returncode == 0, p.stderr
    unit = f"{env.prefix}-sd.scope"
    assert unit_prop(unit, "ActiveState") == "active"
    assert unit_prop(unit, "MemoryMax") == str(64 << 20)
    assert unit_prop(unit, "MemoryLow") == str(32 << 20)
    assert unit_prop(unit, "TasksMax") == "40"
    assert unit_prop(unit, "CPUWeight") == "20"  # runc's conversion of 512 shares
    assert unit_prop(unit, "CPUQuotaPerSecUSec") == "500ms"
    assert unit_prop(unit, "Delegate") == "yes"
    assert unit_prop(unit, "Slice") == "system.slice"
    # From inside: the container's own cgroup (cgroup namespace) has the limits.
    r = env.berth("exec", cid, "sh", "-c",
                  "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max /sys/fs/cgroup/cpu.max /sys/fs/cgroup/cpu.weight")
    lines = r.stdout.splitlines()
    assert lines[0] == str(64 << 20) and lines[1] == "40" and lines[2] == "50000 100000" and lines[3] == "20", lines
    pid = env.state(cid)["pid"]
    assert open(f"/proc/{pid}/cgroup").read().strip() == f"0::/system.slice/{unit}"
    # exec'd processes land in the scope too.
    r = env.berth("exec", cid, "cat", "/proc/self/cgroup")
    assert r.stdout.strip() == "0::/"
    env.berth("delete", "--force", cid)
    assert wait_for(lambda: not units_named(env.prefix), 10), units_named(env.prefix)
    assert not os.path.exists(f"/sys/fs/cgroup/system.slice/{unit}")


@needs_systemd
def test_update_pause_kill_all_and_device_filter(env):
    # Every device allowed but 1:11 (a node in the image): the filter must keep working
    # after systemd re-applies the unit's properties (update).
    rootfs = os.path.join(env.tmp, "rootfs")
    shutil.copytree(env.rootfs, rootfs, symlinks=True)
    os.mknod(os.path.join(rootfs, "kmsg-node"), 0o666 | 0o020000, os.makedev(1, 11))
    res = {"memory": {"limit": 64 << 20}, "devices": [{"allow": True, "access": "rwm"},
                                                       {"allow": False, "type": "c", "major": 1, "minor": 11, "access": "rwm"}]}

    def m(c):
        c["root"]["path"] = rootfs
        # Reading /dev/kmsg also needs CAP_SYSLOG (dmesg_restrict): only the filter may refuse.
        c["process"]["capabilities"] = {k: ["CAP_SYSLOG"] for k in ("bounding", "effective", "permitted")}
    b = systemd_bundle(env, ["sleep", "60"], res, extra_mutate=m)
    cid = env.new_id()
    p = detach_sd(env, b, cid)
    assert p.returncode == 0, p.stderr
    unit = f"{env.prefix}-sd.scope"
    k = env.berth("exec", cid, "head", "-c0", "/kmsg-node", check=False)
    assert k.returncode != 0 and "not permitted" in k.stderr + k.stdout, k
    assert env.berth("exec", cid, "head", "-c1", "/dev/zero", check=False).returncode == 0
    env.berth("update", "--memory", "128m", "--pids-limit", "30", "--cpu-quota", "20000", cid)
    assert unit_prop(unit, "MemoryMax") == str(128 << 20)
    assert unit_prop(unit, "TasksMax") == "30"
    assert unit_prop(unit, "CPUQuotaPerSecUSec") == "200ms"
    r = env.berth("exec", cid, "cat", "/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/pids.max", "/sys/fs/cgroup/cpu.max")
    assert r.stdout.splitlines() == [str(128 << 20), "30", "20000 100000"]
    k = env.berth("exec", cid, "head", "-c0", "/kmsg-node", check=False)
    assert k.returncode != 0 and "not permitted" in k.stderr + k.stdout, k
    env.berth("pause", cid)
    assert env.state(cid)["status"] == "paused"
    assert open(f"/sys/fs/cgroup/system.slice/{unit}/cgroup.freeze").read().strip() == "1"
    env.berth("resume", cid)
    assert env.state(cid)["status"] == "running"
    env.berth("exec", "-d", cid, "sleep", "50", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, capture_output=False)
    ps = json.loads(env.berth("ps", "--format", "json", cid).stdout)
    assert len(ps) == 2
    env.berth("kill", "--all", cid, "KILL")
    # The exec'd sleep is ours to reap (we are its subreaper, as a shim would be); init,
    # pid 1 of its namespace, finishes exiting only then.
    assert wait_for(lambda: reap_all() or env.state(cid)["status"] == "stopped", 10)
    env.berth("delete", cid)
    assert wait_for(lambda: not units_named(env.prefix), 10), units_named(env.prefix)


@needs_systemd
def test_default_path_and_events(env):
    b = systemd_bundle(env, ["sleep", "60"], {"pids": {"limit": 20}}, path=False)
    cid = env.new_id()
    assert detach_sd(env, b, cid).returncode == 0
    unit = f"berth-{cid}.scope"
    assert unit_prop(unit, "ActiveState") == "active"
    assert unit_prop(unit, "Slice") == "system.slice"
    s = json.loads(env.berth("events", "--stats", cid).stdout)
    assert s["data"]["pids"] == {"current": 1, "limit": 20}
    env.berth("delete", "--force", cid)
    assert wait_for(lambda: unit_prop(unit, "LoadState") in ("not-found", ""), 10)


@needs_systemd
def test_unit_that_exists_fails_cleanly(env):
    b = systemd_bundle(env, ["sleep", "60"])
    first, second = env.new_id(), env.new_id()
    assert detach_sd(env, b, first).returncode == 0
    p = detach_sd(env, b, second, "create")
    assert p.returncode == 1
    # runc's warning about the shared cgroup, then one error line naming the unit.
    msg = p.stderr.strip().splitlines()
    assert msg[0] == "warning: container's cgroup is not empty: 1 process(es) found", msg
    assert len(msg) == 2 and msg[1].startswith(f'unable to start unit "{env.prefix}-sd.scope": '), msg
    assert not os.path.exists(os.path.join(env.root, second))
    # The first container is untouched.
    assert env.state(first)["status"] == "running"
    assert unit_prop(f"{env.prefix}-sd.scope", "ActiveState") == "active"


@needs_systemd
def test_failed_create_leaves_no_unit(env):
    b = systemd_bundle(env, ["/no/such/program"], {"memory": {"limit": 64 << 20}})
    cid = env.new_id()
    p = detach_sd(env, b, cid, "create")
    assert p.returncode == 1
    assert wait_for(lambda: not units_named(env.prefix), 10), units_named(env.prefix)
    bad = systemd_bundle(env, ["true"], extra_mutate=lambda c: c["linux"].__setitem__("cgroupsPath", "nocolons"))
    p = detach_sd(env, bad, env.new_id(), "create")
    assert p.returncode == 1 and "slice:prefix:name" in p.stderr


@needs_systemd
def test_over_the_system_bus(env):
    # Where systemd's private socket cannot be reached (not root, or covered, as here in a
    # mount namespace of the test's own), Berth goes through the system bus: Hello, a match
    # for JobRemoved and Subscribe (without it systemd sends the job's end to no one on the
    # bus, and create would wait for it forever).
    b = systemd_bundle(env, ["sleep", "60"], {"pids": {"limit": 30}})
    cid = env.new_id()

    def berth_on_bus(*args):
        cmd = " ".join(["mount --bind /dev/null /run/systemd/private && exec"] + [f"'{a}'" for a in env.berth_cmd(*args)])
        # The container's stdio is Berth's: files, so nothing waits on a pipe init holds.
        with open(os.path.join(env.tmp, cid + ".out"), "w") as out, open(os.path.join(env.tmp, cid + ".err"), "w+") as err:
            p = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", cmd], stdin=subprocess.DEVNULL,
                               stdout=out, stderr=err, timeout=60)
            err.seek(0)
            return p.returncode, err.read()
    rc, err = berth_on_bus("--systemd-cgroup", "run", "-d", "--bundle", b, cid)
    assert rc == 0, err
    unit = f"{env.prefix}-sd.scope"
    assert unit_prop(unit, "ActiveState") == "active"
    assert unit_prop(unit, "TasksMax") == "30"
    rc, err = berth_on_bus("delete", "--force", cid)
    assert rc == 0, err
    assert wait_for(lambda: not units_named(env.prefix), 10), units_named(env.prefix)
