"""What runc tolerates and its callers rely on (issue 9, ../shared/contract.md): each case
as a caller sends it, checked from inside a real container."""
import json
import os
import socket
import subprocess
import threading
import time

from conftest import BERTH, CGROUP2, reap_all, wait_for


def test_missing_cwd_is_created(env):
    # Kubernetes' workingDir need not exist in the image.
    def m(c):
        c["process"]["cwd"] = "/work/dir/deep"
    p = env.run(["sh", "-c", "pwd; stat -c %a /work/dir"], mutate=m)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["/work/dir/deep", "755"]


def test_home_comes_from_passwd(env):
    def m(c):
        c["process"]["user"] = {"uid": 65534, "gid": 65534}
    p = env.run(["sh", "-c", "echo $HOME"], mutate=m)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "/"  # nobody's home in the test image
    p = env.run(["sh", "-c", "echo $HOME"])
    assert p.stdout.strip() == "/root"
    def unknown(c):
        c["process"]["user"] = {"uid": 4321, "gid": 4321}
    assert env.run(["sh", "-c", "echo $HOME"], mutate=unknown, name="u").stdout.strip() == "/"
    def given(c):
        c["process"]["env"].append("HOME=/given")
    assert env.run(["sh", "-c", "echo $HOME"], mutate=given, name="g").stdout.strip() == "/given"


def test_home_for_exec_too(env):
    b = env.bundle(["sleep", "60"])
    cid = env.new_id()
    env.detach(b, cid)
    assert env.berth("exec", cid, "sh", "-c", "echo $HOME").stdout.strip() == "/root"
    assert env.berth("exec", "--user", "65534:65534", cid, "sh", "-c", "echo $HOME").stdout.strip() == "/"


def test_a_hostile_passwd_cannot_hang_or_feed_the_start(env):
    # The image's /etc/passwd is a FIFO: reading it would block forever.
    from test_security import copy_rootfs
    rootfs = copy_rootfs(env, "fifo-passwd")
    os.unlink(os.path.join(rootfs, "etc", "passwd"))
    os.mkfifo(os.path.join(rootfs, "etc", "passwd"))
    def m(c):
        c["root"]["path"] = rootfs
    p = env.run(["sh", "-c", "echo $HOME"], mutate=m)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "/"


def test_kill_all_after_init_exited(env):
    # No pid namespace: init exits, its child lives on in the container's cgroup, and
    # containerd's pod stop sends `kill --all` then.
    def m(c):
        c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "pid"]
        c["mounts"] = [x for x in c["mounts"] if x["type"] != "proc"]
    b = env.bundle(["sh", "-c", "sleep 300 & echo $! > /tmp/child; sleep 0.2"], mutate=m)
    cid = env.new_id()
    env.detach(b, cid)
    cg = json.load(open(os.path.join(env.root, cid, "state.json")))["cgroup"]
    assert wait_for(lambda: env.state(cid)["status"] == "stopped", 5)
    pids = open(os.path.join(cg, "cgroup.procs")).read().split()
    assert len(pids) == 1
    env.berth("kill", "--all", cid, "9")
    assert wait_for(lambda: open(os.path.join(cg, "cgroup.procs")).read() == "", 5)
    reap_all()
    # Without --all a stopped container is still "not running".
    p = env.berth("kill", cid, "9", check=False)
    assert p.returncode == 1 and "container not running" in p.stderr
    env.berth("delete", cid)
    # And once its cgroup is gone, --all has nothing to do.


def test_listener_path_without_a_notify_rule_is_accepted(env):
    def m(c):
        c["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/nonexistent.sock",
                                 "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}
    p = env.run(["sh", "-c", "mkdir /tmp/x 2>/dev/null || echo refused"], mutate=m)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "refused"


def test_device_outside_dev_is_accepted(env):
    def m(c):
        c["linux"]["devices"] = [{"path": "/opt/null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o666}]
    p = env.run(["sh", "-c", "stat -c '%t:%T' /opt/null; echo x > /opt/null && echo written"], mutate=m)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["1:3", "written"]


DOCKER_ZEROS = {
    "memory": {"limit": 0, "reservation": 0, "kernel": 0, "kernelTCP": 0, "swap": 0},
    "cpu": {"shares": 0, "quota": 0, "period": 0, "realtimeRuntime": 0, "realtimePeriod": 0},
    "blockIO": {"weight": 0},
    "pids": {"limit": 0},
}


def test_zeros_mean_unset_in_create_and_update(env):
    # Docker's create carries blockIO.weight 0; its update (even `--restart always`)
    # carries zeros for every field it does not change. None of them is a limit.
    def m(c):
        c["linux"]["resources"] = {"blockIO": {"weight": 0}, "memory": {"limit": 0}, "cpu": {"shares": 0}}
    b = env.bundle(["sleep", "60"], mutate=m)
    cid = env.new_id()
    env.detach(b, cid)
    cg = json.load(open(os.path.join(env.root, cid, "state.json")))["cgroup"]
    before = {f: open(os.path.join(cg, f)).read() for f in os.listdir(cg)
              if f.split(".")[0] in ("memory", "cpu", "io", "pids") and f.endswith(("max", "weight", "low"))}
    p = env.berth("update", "--resources", "-", cid, input=json.dumps(DOCKER_ZEROS))
    assert p.returncode == 0, p.stderr
    after = {f: open(os.path.join(cg, f)).read() for f in before}
    assert after == before
    assert all(v.split()[:1] != ["0"] for f, v in after.items() if f == "cpu.max")


def test_exec_with_a_notify_rule_and_a_live_agent_does_not_hang(env):
    # The agent gets one connection per process that loads the filter: init, then exec.
    from test_seccomp import agent, profile, with_seccomp
    path = os.path.join(env.tmp, "agent.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(2)
    results = [{}, {}]
    def serve():
        for r in results:
            agent(server, r)
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    prof = profile([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}], listenerPath=path)
    b = env.bundle(["sh", "-c", "mkdir /tmp/a; sleep 60"], mutate=with_seccomp(prof))
    cid = env.new_id()
    try:
        env.detach(b, cid)
        p = env.berth("exec", cid, "sh", "-c", "mkdir /tmp/b 2>&1; echo done", timeout=20)
        t.join(10)
    finally:
        server.close()
    assert p.returncode == 0, p.stderr
    assert "Operation not supported" in p.stdout and "done" in p.stdout
    assert results[1]["fds"] == 1 and results[1]["state"]["pid"] > 0


def test_a_cgroup_that_already_has_processes_is_joined_with_a_warning(env):
    # runc 1.1 allows it (the containers then share the cgroup) and warns in these words.
    def m(c):
        c["linux"]["cgroupsPath"] = f"/{env.prefix}-shared"
    b = env.bundle(["sleep", "60"], mutate=m)
    first, second = env.new_id("one"), env.new_id("two")
    env.detach(b, first)
    p = env.detach(b, second)
    assert p.returncode == 0, p.stderr
    assert "container's cgroup is not empty: 1 process(es) found" in p.stderr
    cg = os.path.join(CGROUP2, f"{env.prefix}-shared")
    assert len(open(os.path.join(cg, "cgroup.procs")).read().split()) == 2


def test_bind_sources_the_user_namespace_cannot_reach(env):
    # A bind source under a 0700 directory of the host's root: the user namespace's root
    # (host uid 100000) cannot walk to it, but runc opens bind sources as host root and
    # passes them in, so the config works. (runc's "userns with 2 inaccessible mounts".)
    srcs = []
    for n in (1, 2):
        top = os.path.join(env.tmp, f"inaccessible-{n}")
        os.makedirs(os.path.join(top, "dir"))
        open(os.path.join(top, "dir", "foo.txt"), "w").write(f"file {n}\n")
        os.chmod(top, 0o700)
        srcs.append(os.path.join(top, "dir"))

    def m(c):
        c["linux"]["namespaces"].append({"type": "user"})
        c["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        c["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        # Existing mount points: the namespace's root could not make new ones in the image.
        c["mounts"] += [{"destination": d, "type": "bind", "source": s, "options": ["bind"]}
                        for d, s in (("/home", srcs[0]), ("/var", srcs[1]))]
    b = env.bundle(["sleep", "60"], mutate=m)
    cid = env.new_id()
    env.detach(b, cid)
    p = env.berth("exec", cid, "cat", "/home/foo.txt", "/var/foo.txt")
    assert p.stdout == "file 1\nfile 2\n"
    env.berth("delete", "--force", cid)


def test_flags_after_the_container_id(env):
    # runc's commands (urfave/cli) take flags after the id too, except exec and ps:
    # `runc update ID --cpu-period N`, `runc delete ID --force`.
    b = env.bundle(["sleep", "60"])
    cid = env.new_id()
    env.detach(b, cid)
    p = env.berth("state", cid)
    pid = json.loads(p.stdout)["pid"]
    env.berth("delete", cid, "--force")
    assert not os.path.exists(os.path.join(env.root, cid))
    assert wait_for(lambda: not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z")
    # exec keeps everything after the id for the command.
    env.detach(b, cid)
    p = env.berth("exec", cid, "echo", "--force")
    assert p.stdout == "--force\n"
    env.berth("delete", "--force", cid)
