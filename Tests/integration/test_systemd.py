"""The systemd cgroup driver (--systemd-cgroup): the container in a transient scope that
systemd creates over D-Bus, the limits as unit properties and in the files, checked from
inside the container and through systemctl. Needs systemd as pid 1: on pure cgroup v2
(`Scripts/vm --systemd -- Scripts/vm-guest-tests Tests/integration/test_systemd.py`) and
on a hybrid host (`Scripts/vm --systemd --hybrid -- ...`), where the properties are v1's
and Berth makes the directories systemd leaves alone. On a host without systemd, the
driver's refusal is checked instead."""
import json
import os
import shutil
import subprocess

import pytest

from conftest import BERTH, CGROUP2, CGROUP_V1, limit_file, reap_all, v1_hierarchies, wait_for

SYSTEMD_HOST = os.path.isdir("/run/systemd/system")
needs_systemd = pytest.mark.skipif(not SYSTEMD_HOST, reason="needs systemd as pid 1 (Scripts/vm --systemd [--hybrid])")


def unit_dirs(unit):
    """The unit's cgroup directories: one on cgroup v2; on v1, one per hierarchy and the
    one in the unified hierarchy of a hybrid host."""
    dirs = [f"{CGROUP2}/system.slice/{unit}"] if os.path.isdir(CGROUP2) else []
    if CGROUP_V1:
        dirs += [f"{mp}/system.slice/{unit}" for mp in v1_hierarchies().values()]
    return dirs


def cgroup_paths(pid):
    """The cgroup paths in /proc/PID/cgroup, one per hierarchy."""
    return {l.split(":", 2)[2] for l in open(f"/proc/{pid}/cgroup").read().splitlines()}


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
        c["mounts"].append({"destination": "/sys/fs/cgroup", "type": "cgroup" if CGROUP_V1 else "cgroup2", "source": "cgroup",
                            "options": ["ro", "nosuid", "nodev", "noexec"]})
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
    if SYSTEMD_HOST:
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
    if CGROUP_V1:
        # runc's legacy properties, and the device rules (systemd rewrites the devices
        # cgroup from them).
        assert unit_prop(unit, "MemoryLimit") == str(64 << 20)
        assert unit_prop(unit, "CPUShares") == "512"
        assert unit_prop(unit, "DevicePolicy") == "strict"
        assert "/dev/char/1:3 rwm" in unit_prop(unit, "DeviceAllow")
    else:
        assert unit_prop(unit, "MemoryMax") == str(64 << 20)
        assert unit_prop(unit, "MemoryLow") == str(32 << 20)
        assert unit_prop(unit, "CPUWeight") == "20"  # runc's conversion of 512 shares
    assert unit_prop(unit, "TasksMax") == "40"
    assert unit_prop(unit, "CPUQuotaPerSecUSec") == "500ms"
    assert unit_prop(unit, "Delegate") == "yes"
    assert unit_prop(unit, "Slice") == "system.slice"
    # From inside: the container's own cgroup (cgroup namespace) has the limits.
    r = env.berth("exec", cid, "cat", limit_file("memory.max"), limit_file("pids.max"), limit_file("cpu.max"),
                  limit_file("cpu.weight"))
    want = [str(64 << 20), "40", "50000", "512"] if CGROUP_V1 else [str(64 << 20), "40", "50000 100000", "20"]
    assert r.stdout.splitlines() == want
    pid = env.state(cid)["pid"]
    # In the scope in every hierarchy (on v1, Berth joins those systemd leaves alone).
    assert cgroup_paths(pid) == {f"/system.slice/{unit}"}, open(f"/proc/{pid}/cgroup").read()
    # exec'd processes land in the scope too.
    r = env.berth("exec", cid, "cat", "/proc/self/cgroup")
    assert {l.split(":", 2)[2] for l in r.stdout.splitlines()} == {"/"}, r.stdout
    dirs = unit_dirs(unit)
    assert dirs and all(os.path.isdir(d) for d in dirs), dirs
    env.berth("delete", "--force", cid)
    assert wait_for(lambda: not units_named(env.prefix), 10), units_named(env.prefix)
    assert not [d for d in dirs if os.path.exists(d)]


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
    assert unit_prop(unit, "MemoryLimit" if CGROUP_V1 else "MemoryMax") == str(128 << 20)
    assert unit_prop(unit, "TasksMax") == "30"
    assert unit_prop(unit, "CPUQuotaPerSecUSec") == "200ms"
    r = env.berth("exec", cid, "cat", limit_file("memory.max"), limit_file("pids.max"), limit_file("cpu.max"))
    assert r.stdout.splitlines() == [str(128 << 20), "30", "20000" if CGROUP_V1 else "20000 100000"]
    k = env.berth("exec", cid, "head", "-c0", "/kmsg-node", check=False)
    assert k.returncode != 0 and "not permitted" in k.stderr + k.stdout, k
    assert env.berth("exec", cid, "head", "-c1", "/dev/zero", check=False).returncode == 0
    env.berth("pause", cid)
    assert env.state(cid)["status"] == "paused"
    if CGROUP_V1:
        assert open(f"{v1_hierarchies()['freezer']}/system.slice/{unit}/freezer.state").read().strip() == "FROZEN"
    else:
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
def test_device_rules_survive_daemon_reload(env):
    # On cgroup v1 systemd writes the unit's devices cgroup from DevicePolicy/DeviceAllow
    # whenever it applies the unit again: after a daemon-reload, a unit created without
    # them would have "a *:* rwm" there, every host device open to the container. Berth
    # gives systemd the container's rules (runc's defaults here), as runc does.
    rootfs = os.path.join(env.tmp, "rootfs")
    shutil.copytree(env.rootfs, rootfs, symlinks=True)
    os.mknod(os.path.join(rootfs, "kmsg-node"), 0o666 | 0o020000, os.makedev(1, 11))

    def m(c):
        c["root"]["path"] = rootfs
        c["process"]["capabilities"] = {k: ["CAP_SYSLOG"] for k in ("bounding", "effective", "permitted")}
    b = systemd_bundle(env, ["sleep", "60"], {"memory": {"limit": 64 << 20}}, extra_mutate=m)
    cid = env.new_id()
    p = detach_sd(env, b, cid)
    assert p.returncode == 0, p.stderr
    unit = f"{env.prefix}-sd.scope"

    def check():
        k = env.berth("exec", cid, "head", "-c0", "/kmsg-node", check=False)
        assert k.returncode != 0 and "not permitted" in k.stderr + k.stdout, k
        assert env.berth("exec", cid, "sh", "-c", "echo x > /dev/null && head -c1 /dev/zero", check=False).returncode == 0
    check()
    subprocess.run(["systemctl", "daemon-reload"], check=True, capture_output=True)
    assert unit_prop(unit, "ActiveState") == "active"
    check()
    env.berth("update", "--memory", "96m", cid)
    check()
    if CGROUP_V1:
        listed = open(f"{v1_hierarchies()['devices']}/system.slice/{unit}/devices.list").read()
        assert "a *:* rwm" not in listed and "c 1:3 rwm" in listed, listed
    env.berth("delete", "--force", cid)
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
@pytest.mark.skipif(CGROUP_V1, reason="runc's systemd v2 driver only (pure cgroup v2)")
def test_cgroup_handed_to_the_containers_root(env):
    # As runc's systemd v2 driver: with a cgroup namespace of its own and a read-write
    # cgroup mount, the scope's directory and its delegation files belong to the host uid
    # of the container's root, which then manages its own subtree; with a read-only mount
    # they stay the host root's (unmapped inside: nobody).
    for opt, want in (("rw", ["0", "0"]), ("ro", ["65534", "65534"])):
        def m(c, opt=opt):
            c["linux"]["namespaces"].append({"type": "user"})
            if {"type": "cgroup"} not in c["linux"]["namespaces"]:
                c["linux"]["namespaces"].append({"type": "cgroup"})
            c["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
            c["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
            c["mounts"][-1]["options"][0] = opt
        b = systemd_bundle(env, ["sh", "-c", "stat -c %u /sys/fs/cgroup /sys/fs/cgroup/cgroup.procs"], path=False, extra_mutate=m)
        cid = env.new_id(opt)
        p = detach_sd(env, b, cid, "run")
        assert p.returncode == 0, p.stderr
        assert open(os.path.join(env.tmp, cid + ".out")).read().split() == want, opt


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


@pytest.fixture
def session_user(rootfs):
    """A user with its own systemd (user@UID.service, as a login starts it), its bus and
    a delegated cgroup subtree; subuid/subgid ranges for Podman. Made in the systemd VM
    and removed afterwards."""
    if not SYSTEMD_HOST or CGROUP_V1:
        pytest.skip("needs systemd as pid 1 on cgroup v2, where it delegates to users (Scripts/vm --systemd)")
    uid, name = 4343, "berthuser"
    saved = {f: open(f).read() if os.path.exists(f) else None for f in ("/etc/subuid", "/etc/subgid")}
    subprocess.run(["useradd", "-u", str(uid), "-m", "-s", "/bin/sh", name], check=True, capture_output=True)
    home = f"/home/{name}"
    try:
        for f in saved:
            with open(f, "a") as out:
                out.write(f"{name}:300000:65536\n")
        subprocess.run(["systemctl", "start", f"user@{uid}.service"], check=True, capture_output=True, timeout=120)
        berth = os.path.join(home, "berth")
        shutil.copy2(BERTH, berth)
        own = os.path.join(home, "rootfs")
        shutil.copytree(rootfs, own, symlinks=True)
        subprocess.run(["chown", "-R", "-h", f"{uid}:{uid}", own], check=True)
        xdg = f"/run/user/{uid}"
        env = {"PATH": os.environ["PATH"], "HOME": home, "USER": name, "XDG_RUNTIME_DIR": xdg,
               "DBUS_SESSION_BUS_ADDRESS": f"unix:path={xdg}/bus"}

        def run(shell, timeout=120):
            return subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--init-groups", "sh", "-c", shell],
                                  env=env, cwd=home, capture_output=True, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        yield {"uid": uid, "home": home, "berth": berth, "rootfs": own, "run": run,
               "manager": f"/sys/fs/cgroup/user.slice/user-{uid}.slice/user@{uid}.service"}
    finally:
        subprocess.run(["systemctl", "stop", f"user@{uid}.service"], capture_output=True, timeout=120)
        subprocess.run(["pkill", "-9", "-U", str(uid)], capture_output=True)
        subprocess.run(["userdel", "-r", "-f", name], capture_output=True)
        for f, text in saved.items():
            if text is None:
                os.remove(f)
            else:
                with open(f, "w") as out:
                    out.write(text)


@needs_systemd
def test_rootless_driver_uses_the_users_systemd(session_user):
    # runc's rootless systemd driver: the user's own systemd makes the scope, in user.slice
    # below its manager's cgroup, with the limits, over the user's bus.
    u = session_user
    run = u["run"]
    p = run(f"mkdir b && cd b && ln -s {u['rootfs']} rootfs && {u['berth']} spec --rootless")
    assert p.returncode == 0, p.stderr
    cfg_path = os.path.join(u["home"], "b", "config.json")
    c = json.load(open(cfg_path))
    c["process"]["terminal"] = False
    c["process"]["args"] = ["sleep", "60"]
    c["linux"]["resources"] = {"memory": {"limit": 64 << 20}, "pids": {"limit": 40}}
    with open(cfg_path, "w") as f:
        json.dump(c, f)
    p = run(f"cd b && {u['berth']} --systemd-cgroup run -d sd-rl >/dev/null 2>err; s=$?; cat err; exit $s")
    assert p.returncode == 0, p.stdout + p.stderr
    scope = f"{u['manager']}/user.slice/berth-sd-rl.scope"
    try:
        assert os.path.isdir(scope), os.listdir(u["manager"])
        assert open(scope + "/memory.max").read().strip() == str(64 << 20)
        assert open(scope + "/pids.max").read().strip() == "40"
        p = run(f"systemctl --user show -p ActiveState --value berth-sd-rl.scope")
        assert p.stdout.strip() == "active", p.stderr
        p = run(f"{u['berth']} exec sd-rl cat /sys/fs/cgroup/memory.max")
        assert p.returncode == 0 and p.stdout.strip() == str(64 << 20), p.stderr
        p = run(f"{u['berth']} update --memory 96m sd-rl")
        assert p.returncode == 0, p.stderr
        assert open(scope + "/memory.max").read().strip() == str(96 << 20)
    finally:
        p = run(f"{u['berth']} delete -f sd-rl")
    assert p.returncode == 0, p.stderr
    assert wait_for(lambda: not os.path.exists(scope), 10)


@needs_systemd
def test_rootless_podman_with_the_users_systemd(session_user):
    # Podman as the user, with its defaults on such a host: the systemd cgroup manager
    # (the user's), a user namespace from /etc/subuid, Berth run as root inside it.
    if not shutil.which("podman"):
        pytest.skip("podman is not installed")
    u = session_user
    podman = f"podman --runtime {u['berth']} --events-backend file --storage-driver vfs"
    p = u["run"](f"{podman} run --rm --network none --memory 64m --pids-limit 50 --rootfs {u['rootfs']} "
                 f"/bin/sh -c 'cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max; cat /proc/self/uid_map'")
    assert p.returncode == 0, p.stderr
    out = p.stdout.split()
    assert out[:2] == [str(64 << 20), "50"], p.stdout
    assert out[2:5] == ["0", str(u["uid"]), "1"], p.stdout
    p = u["run"](f"{podman} info --format '{{{{.Host.CgroupManager}}}}'")
    assert p.stdout.strip() == "systemd", p.stdout + p.stderr
