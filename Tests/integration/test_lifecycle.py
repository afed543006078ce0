"""The lifecycle as runc's callers drive it: create, start, state, kill, delete, run."""
import json
import os
import re
import signal
import subprocess
import time

from conftest import BERTH, alive, wait_for


def ppid_of(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def proc_state(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


def test_create_start_state_kill_delete(env):
    b = env.bundle(["sh", "-c", "echo started; exec sleep 60"])
    cid = env.new_id()
    pidfile = os.path.join(env.tmp, "init.pid")
    env.create(b, cid, "--pid-file", pidfile)

    # The pid file: digits only, no newline, and it names init.
    with open(pidfile) as f:
        text = f.read()
    assert re.fullmatch(r"[0-9]+", text)
    pid = int(text)
    st = env.state(cid)
    assert st["status"] == "created" and st["pid"] == pid

    # init outlived `create` and was re-parented to us (a subreaper), already in its cgroup.
    assert ppid_of(pid) == os.getpid()
    with open(f"/proc/{pid}/cgroup") as f:
        assert cid in f.read()
    # The program did not run yet: nothing was printed.
    assert env.output(cid) == ""

    env.berth("start", cid)
    assert wait_for(lambda: "started" in env.output(cid))
    assert env.state(cid)["status"] == "running"
    p = env.berth("start", cid, check=False)
    assert p.returncode == 1 and "cannot start an already running container" in p.stderr

    p = env.berth("delete", cid, check=False)
    assert p.returncode == 1 and "not stopped" in p.stderr and "running" in p.stderr

    env.berth("kill", cid, "KILL")
    assert wait_for(lambda: env.state(cid)["status"] == "stopped")
    st = env.state(cid)
    assert st["pid"] == 0
    p = env.berth("kill", cid, "TERM", check=False)
    assert p.returncode == 1 and "container not running" in p.stderr
    p = env.berth("start", cid, check=False)
    assert p.returncode == 1 and "cannot start a container that has stopped" in p.stderr

    env.berth("delete", cid)
    p = env.berth("state", cid, check=False)
    assert p.returncode == 1 and "container does not exist" in p.stderr
    assert not os.path.exists(os.path.join(env.root, cid))


def test_zombie_init_counts_as_stopped(env):
    b = env.bundle(["true"])
    cid = env.new_id()
    env.create(b, cid)
    pid = env.state(cid)["pid"]
    # Stop reaping for a moment: init exits and stays a zombie (as under a pid 1 that
    # does not reap).
    env.berth("start", cid)
    assert wait_for(lambda: proc_state(pid) == "Z")
    assert env.state(cid)["status"] == "stopped"
    env.berth("delete", cid)


def test_state_json_format(env):
    def m(c):
        c["annotations"] = {"org.example.key": "value <&>"}
    b = env.bundle(["sleep", "60"], mutate=m)
    cid = env.new_id()
    env.create(b, cid)
    raw = env.berth("state", cid).stdout
    keys = re.findall(r'^  "([^"]+)":', raw, re.M)
    assert keys == ["ociVersion", "id", "pid", "status", "bundle", "rootfs", "created", "annotations", "owner"]
    st = json.loads(raw)
    assert st["ociVersion"] == "1.3.0"
    assert st["bundle"] == b
    assert st["rootfs"] == env.rootfs
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z", st["created"])
    assert st["annotations"] == {"org.example.key": "value <&>"}
    assert "\\u003c\\u0026\\u003e" in raw  # Go's escaping of <, &, >
    # Without annotations the key is left out.
    b2 = env.bundle(["sleep", "60"], name="b2")
    cid2 = env.new_id()
    env.create(b2, cid2)
    assert "annotations" not in json.loads(env.berth("state", cid2).stdout)


def test_run_exit_status_and_cleanup(env):
    p = env.run(["sh", "-c", "echo out; echo err >&2; exit 7"])
    assert p.returncode == 7
    assert p.stdout == "out\n" and p.stderr == "err\n"
    # run deletes the container afterwards.
    assert os.listdir(env.root) == []


def test_run_keep(env):
    b = env.bundle(["true"])
    cid = env.new_id()
    p = env.berth("run", "--keep", "--bundle", b, cid, check=False)
    assert p.returncode == 0
    assert env.state(cid)["status"] == "stopped"
    env.berth("delete", cid)


def test_run_killed_exits_128_plus_signal(env):
    b = env.bundle(["sleep", "60"])
    cid = env.new_id()
    proc = subprocess.Popen([BERTH, "--root", env.root, "run", "--bundle", b, cid],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert wait_for(lambda: os.path.exists(os.path.join(env.root, cid, "state.json"))
                        and env.state(cid)["status"] == "running")
        env.berth("kill", cid, "9")
        assert proc.wait(timeout=10) == 137
    finally:
        proc.kill()
        proc.wait()


def test_run_forwards_signals(env):
    b = env.bundle(["sh", "-c", "trap 'echo got-term; exit 42' TERM; echo ready; while true; do sleep 0.1; done"])
    cid = env.new_id()
    proc = subprocess.Popen([BERTH, "--root", env.root, "run", "--bundle", b, cid],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 42
        assert proc.stdout.read() == "got-term\n"
    finally:
        proc.kill()
        proc.wait()


def test_kill_all_without_pid_namespace(env):
    # Without its own pid namespace, killing init leaves its children: --all reaches them
    # through the cgroup.
    def m(c):
        c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "pid"]
        c["mounts"] = [x for x in c["mounts"] if x["type"] != "proc"]
    b = env.bundle(["sh", "-c", "sleep 60 & sleep 60 & wait"], mutate=m)
    cid = env.new_id()
    env.detach(b, cid)
    st = env.state(cid)
    pid = st["pid"]
    cg = [l for l in open(f"/proc/{pid}/cgroup").read().splitlines() if l.startswith("0::")][0][3:]
    from conftest import CGROUP2
    procs = lambda: open(f"{CGROUP2}{cg}/cgroup.procs").read().split()
    assert wait_for(lambda: len(procs()) == 3)
    env.berth("kill", "--all", cid, "KILL")
    assert wait_for(lambda: procs() == [])
    assert wait_for(lambda: env.state(cid)["status"] == "stopped")
    env.berth("delete", cid)


def test_delete_force_running(env):
    b = env.bundle(["sleep", "60"])
    cid = env.new_id()
    env.detach(b, cid)
    pid = env.state(cid)["pid"]
    env.berth("delete", "--force", cid)
    assert wait_for(lambda: proc_state(pid) in (None, "Z"))
    assert not os.path.exists(os.path.join(env.root, cid))


def test_delete_created_without_force(env):
    b = env.bundle(["sleep", "60"])
    cid = env.new_id()
    env.create(b, cid)
    pid = env.state(cid)["pid"]
    env.berth("delete", cid)
    assert wait_for(lambda: proc_state(pid) in (None, "Z"))


def test_duplicate_id(env):
    b = env.bundle(["sleep", "60"])
    cid = env.new_id()
    env.create(b, cid)
    p = env.create(b, cid, check=False)
    assert p.returncode == 1 and "container with given ID already exists" in p.stderr
    # The first container is untouched.
    assert env.state(cid)["status"] == "created"


def test_executable_not_found_is_reported_by_create(env):
    b = env.bundle(["no-such-program"])
    cid = env.new_id()
    p = env.create(b, cid, check=False)
    assert p.returncode == 1
    assert 'exec: "no-such-program": executable file not found in $PATH' in p.stderr
    assert not os.path.exists(os.path.join(env.root, cid))


def test_kernel_refused_mount_reports_step_path_errno(env):
    def m(c):
        c["mounts"].append({"destination": "/weird", "type": "tmpfs", "source": "tmpfs", "options": ["size=lots"]})
    b = env.bundle(["true"], mutate=m)
    cid = env.new_id()
    p = env.create(b, cid, check=False)
    assert p.returncode == 1
    assert "mount tmpfs on /weird (mounts[4]): invalid argument" in p.stderr
    assert not os.path.exists(os.path.join(env.root, cid))


def test_list_formats(env):
    b = env.bundle(["sleep", "60"])
    ids = [env.new_id(), env.new_id()]
    for cid in ids:
        env.create(b, cid)
    env.berth("start", ids[1])
    out = env.berth("list").stdout.splitlines()
    assert out[0].split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    assert re.fullmatch(r"ID {10,}PID {9,}STATUS {6,}BUNDLE {3,}CREATED {3,}OWNER", out[0])
    rows = {l.split()[0]: l.split() for l in out[1:]}
    assert rows[ids[0]][2] == "created" and rows[ids[1]][2] == "running"
    assert env.berth("list", "-q").stdout.split() == sorted(ids)
    js = json.loads(env.berth("list", "--format", "json").stdout)
    assert sorted(s["id"] for s in js) == sorted(ids)
    assert {s["status"] for s in js} == {"created", "running"}


def test_init_dies_with_a_killed_creator(env):
    # A caller that dies half-way: `create` is SIGKILLed at points spread over its run.
    # Whatever it reached, `delete --force` must leave nothing behind (the env fixture
    # checks: no state directory, cgroup, mount or process).
    b = env.bundle(["sleep", "60"])
    for delay in (0.0002, 0.0005, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.006, 0.008, 0.012):
        cid = env.new_id()
        proc = subprocess.Popen([BERTH, "--root", env.root, "create", "--bundle", b, cid],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.kill()
        proc.wait()
        subprocess.run([BERTH, "--root", env.root, "delete", "--force", cid], capture_output=True)
        assert not os.path.exists(os.path.join(env.root, cid))


def test_kill_created_container_with_sigterm(env):
    # init waits as pid 1 of its namespace; a plain SIGTERM must still end it.
    b = env.bundle(["sleep", "60"])
    cid = env.new_id()
    env.create(b, cid)
    env.berth("kill", cid)
    assert wait_for(lambda: env.state(cid)["status"] == "stopped")
    env.berth("delete", cid)


def test_joined_user_and_pid_namespaces(env):
    # Kubernetes-style: a second container joins the first one's user, pid, network,
    # ipc and uts namespaces, with a mount namespace of its own.
    def first(c):
        c["linux"]["namespaces"].append({"type": "user"})
        c["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        c["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        c["hostname"] = "pod"
    a = env.bundle(["sleep", "60"], name="a", mutate=first)
    ida = env.new_id("a")
    env.detach(a, ida)
    pid = env.state(ida)["pid"]
    ns = {t: os.readlink(f"/proc/{pid}/ns/{f}") for t, f in
          [("user", "user"), ("pid", "pid"), ("network", "net"), ("ipc", "ipc"), ("uts", "uts")]}

    def second(c):
        c["hostname"] = ""
        c["linux"]["namespaces"] = [{"type": "mount"}] + [
            {"type": t, "path": f"/proc/{pid}/ns/{f}"} for t, f in
            [("user", "user"), ("pid", "pid"), ("network", "net"), ("ipc", "ipc"), ("uts", "uts")]]
        c["mounts"] = [m for m in c["mounts"] if m["destination"] != "/dev/pts"]
    p = env.run(["sh", "-c", "for n in user pid net ipc uts; do readlink /proc/self/ns/$n; done; "
                 "hostname; cat /proc/self/uid_map; echo $$; ps -o comm | grep -c sleep"],
                mutate=second, name="b")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[:5] == [ns["user"], ns["pid"], ns["network"], ns["ipc"], ns["uts"]]
    assert lines[5] == "pod"
    assert lines[6].split() == ["0", "100000", "65536"]
    assert lines[7] != "1"          # pid 1 of that namespace is the first container's init
    assert lines[8] == "1"          # and its sleep is visible


def test_delete_force_spares_another_container_in_the_same_cgroup(env):
    # Two configs with one cgroupsPath (both runtimes warn): deleting B must leave A and
    # its processes running, as runc does; B has a pid namespace of its own, so its
    # init's death is all it takes.
    def m(c):
        c["linux"]["cgroupsPath"] = f"/{env.prefix}-shared"
    b = env.bundle(["sh", "-c", "sleep 300 & exec sleep 300"], mutate=m)
    a, other = env.new_id("a"), env.new_id("b")
    env.detach(b, a)
    env.detach(b, other)
    a_ns = os.readlink(f"/proc/{env.state(a)['pid']}/ns/pid")
    # ps lists the whole cgroup: A's are those in A's pid namespace.
    a_pids = [p for p in json.loads(env.berth("ps", "--format", "json", a).stdout)
              if os.readlink(f"/proc/{p}/ns/pid") == a_ns]
    assert len(a_pids) == 2, a_pids
    b_init = env.state(other)["pid"]
    env.berth("delete", "--force", other)
    assert wait_for(lambda: not alive(b_init))
    assert all(alive(p) for p in a_pids), a_pids
    assert env.state(a)["status"] == "running"
    env.berth("delete", "--force", a)
    assert wait_for(lambda: not any(alive(p) for p in a_pids))


def test_delete_force_of_a_paused_container_leaves_nothing(env):
    # On a v1 host the freezer holds SIGKILL back: delete --force thaws, and every
    # process (init's child too) is gone at once.
    cid = env.new_id()
    env.detach(env.bundle(["sh", "-c", "sleep 300 & exec sleep 300"]), cid)
    pids = json.loads(env.berth("ps", "--format", "json", cid).stdout)
    assert len(pids) == 2
    env.berth("pause", cid)
    start = time.time()
    env.berth("delete", "--force", cid)
    assert time.time() - start < 10
    assert wait_for(lambda: not any(alive(p) for p in pids)), pids
