"""OCI hooks: each at its moment, with the state on stdin, in the namespace the spec says."""
import json
import os
import shutil
import socket
import stat

from conftest import wait_for


def script(path, body):
    with open(path, "w") as f:
        f.write("#!/bin/sh\n" + body)
    os.chmod(path, 0o755)
    return path


def test_every_hook_runs_at_its_moment(env):
    log_dir = os.path.join(env.tmp, "hooklog")
    os.makedirs(log_dir)
    os.chmod(log_dir, 0o777)
    log = os.path.join(log_dir, "log")
    # Host-side hook: records its name, args, env, hostname, whether the state dir exists,
    # and the state from stdin.
    host_hook = script(os.path.join(env.tmp, "hook.sh"),
                       f'state=$(cat); echo "$1 $2 $HOOKVAR $(hostname) $state" >> {log}\n')
    # startContainer runs inside the container: its path resolves in the container's root.
    rootfs = os.path.join(env.tmp, "rootfs")
    shutil.copytree(env.rootfs, rootfs, symlinks=True)
    script(os.path.join(rootfs, "start-hook.sh"),
           'state=$(cat); echo "$1 $2 $HOOKVAR $(hostname) $state" >> /hooklog/log\n')

    def hook(kind, path=host_hook):
        return {"path": path, "args": [path, kind, "x"], "env": [f"HOOKVAR=v-{kind}"], "timeout": 10}

    def m(c):
        c["root"]["path"] = rootfs
        c["hostname"] = "hooked"
        c["annotations"] = {"a": "b"}
        c["mounts"].append({"destination": "/hooklog", "type": "bind", "source": log_dir, "options": ["bind"]})
        c["hooks"] = {k: [hook(k)] for k in ("prestart", "createRuntime", "createContainer", "poststart", "poststop")}
        c["hooks"]["startContainer"] = [hook("startContainer", "/start-hook.sh")]

    b = env.bundle(["sleep", "60"], mutate=m)
    cid = env.new_id()
    env.create(b, cid)
    pid = env.state(cid)["pid"]
    lines = open(log).read().splitlines()
    assert [l.split()[0] for l in lines] == ["prestart", "createRuntime", "createContainer"]
    env.berth("start", cid)
    env.berth("kill", cid, "KILL")
    assert wait_for(lambda: env.state(cid)["status"] == "stopped")
    env.berth("delete", cid)
    lines = open(log).read().splitlines()
    assert [l.split()[0] for l in lines] == ["prestart", "createRuntime", "createContainer",
                                              "startContainer", "poststart", "poststop"]
    host = os.uname().nodename
    # runtime-spec: "creating" is lifecycle step 2 alone; the create hooks (steps 5-7)
    # come after it (runc says "creating" here, crun and runtime-tools "created").
    want_status = {"prestart": "created", "createRuntime": "created", "createContainer": "created",
                   "startContainer": "created", "poststart": "running", "poststop": "stopped"}
    for line in lines:
        kind, arg, var, hostname, state = line.split(" ", 4)
        st = json.loads(state)
        assert arg == "x" and var == f"v-{kind}"
        assert st["id"] == cid and st["pid"] == pid and st["bundle"] == b and st["annotations"] == {"a": "b"}
        assert st["status"] == want_status[kind], line
        # Container-namespace hooks see the container's hostname; the others the host's.
        in_container = kind in ("createContainer", "startContainer")
        assert hostname == ("hooked" if in_container else host), line


def test_failing_create_hook_destroys_the_container(env):
    bad = script(os.path.join(env.tmp, "bad.sh"), "echo something broke >&2; exit 3\n")
    def m(c):
        c["hooks"] = {"createRuntime": [{"path": bad}]}
    b = env.bundle(["sleep", "60"], mutate=m)
    cid = env.new_id()
    p = env.create(b, cid, check=False)
    assert p.returncode == 1
    assert f"createRuntime hook 0 ({bad}): exit status 3: output: something broke" in p.stderr
    assert not os.path.exists(os.path.join(env.root, cid))


def test_hook_timeout(env):
    slow = script(os.path.join(env.tmp, "slow.sh"), "sleep 30\n")
    def m(c):
        c["hooks"] = {"prestart": [{"path": slow, "timeout": 1}]}
    b = env.bundle(["true"], mutate=m)
    cid = env.new_id()
    p = env.create(b, cid, check=False)
    assert p.returncode == 1 and "prestart hook 0" in p.stderr and "timed out after 1s" in p.stderr
    assert not os.path.exists(os.path.join(env.root, cid))


def test_failing_poststart_hook_only_warns_and_the_rest_run(env):
    # runtime-spec: a failing poststart hook is logged as a warning; the remaining hooks
    # and the lifecycle go on (runc fails `start` and deletes the container; crun follows
    # the spec).
    bad = script(os.path.join(env.tmp, "bad.sh"), "exit 1\n")
    mark = os.path.join(env.tmp, "second-ran")
    good = script(os.path.join(env.tmp, "good.sh"), f"cat >{mark}\n")
    def m(c):
        c["hooks"] = {"poststart": [{"path": bad}, {"path": good}]}
    b = env.bundle(["sleep", "60"], mutate=m)
    cid = env.new_id()
    env.create(b, cid)
    p = env.berth("start", cid, check=False)
    assert p.returncode == 0, p.stderr
    assert "poststart hook 0" in p.stderr and "exit status 1" in p.stderr
    assert json.loads(open(mark).read())["status"] == "running"
    assert env.state(cid)["status"] == "running"


def test_failing_start_container_hook_stops_the_container(env):
    def m(c):
        c["hooks"] = {"startContainer": [{"path": "/bin/false"}]}
    b = env.bundle(["sleep", "60"], mutate=m)
    cid = env.new_id()
    env.create(b, cid)
    pid = env.state(cid)["pid"]
    p = env.berth("start", cid, check=False)
    assert p.returncode == 1 and "startContainer" in p.stderr
    assert not os.path.exists(os.path.join(env.root, cid))
    assert wait_for(lambda: not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z")


def test_failing_poststop_hook_only_warns_and_the_rest_run(env):
    bad = script(os.path.join(env.tmp, "bad.sh"), "exit 1\n")
    mark = os.path.join(env.tmp, "second-ran")
    good = script(os.path.join(env.tmp, "good.sh"), f"touch {mark}\n")
    def m(c):
        c["hooks"] = {"poststop": [{"path": bad}, {"path": good}]}
    b = env.bundle(["true"], mutate=m)
    p = env.berth("run", "--bundle", b, env.new_id(), check=False)
    assert p.returncode == 0
    assert "warning: poststop hook 0" in p.stderr
    assert os.path.exists(mark), "the poststop hook after the failing one did not run"


def test_a_hook_without_env_inherits_the_runtimes_environment(env):
    # As runc (and crun's test-hook-env-inherit): no `env` means the runtime's own
    # environment; `env: []` means an empty one. startContainer runs from init, whose
    # environment is the container process's by then, as runc's.
    out = os.path.join(env.tmp, "env-out")
    os.makedirs(out)
    os.chmod(out, 0o777)
    show = script(os.path.join(env.tmp, "show.sh"), f'echo "$1 ${{HOOKTEST:-unset}}" >> {out}/log\n')
    rootfs = os.path.join(env.tmp, "rootfs")
    shutil.copytree(env.rootfs, rootfs, symlinks=True)
    script(os.path.join(rootfs, "show.sh"), 'echo "$1 ${BERTH_TEST:+container}" >> /out/log\n')
    def m(c):
        c["root"]["path"] = rootfs
        c["mounts"].append({"destination": "/out", "type": "bind", "source": out, "options": ["bind"]})
        c["hooks"] = {"createRuntime": [{"path": show, "args": [show, "inherit"]},
                                        {"path": show, "args": [show, "empty"], "env": []}],
                      "startContainer": [{"path": "/show.sh", "args": ["/show.sh", "start"]}],
                      "poststop": [{"path": show, "args": [show, "poststop"]}]}
    b = env.bundle(["true"], mutate=m)
    p = env.berth("run", "--bundle", b, env.new_id(), check=False, env=dict(os.environ, HOOKTEST="from-berth"))
    assert p.returncode == 0, p.stderr
    assert open(f"{out}/log").read().splitlines() == [
        "inherit from-berth", "empty unset", "start container", "poststop from-berth"]


def test_bad_hook_config(env):
    def m(c):
        c["hooks"] = {"prestart": [{"path": "relative/hook"}]}
    b = env.bundle(["true"], mutate=m)
    p = env.create(b, env.new_id(), check=False)
    assert p.returncode == 1 and 'hooks.prestart[0].path: must be an absolute path, got "relative/hook"' in p.stderr


def test_sigpipe_is_default_in_the_container(env):
    # Berth ignores SIGPIPE itself; the container must not inherit that.
    p = env.run(["grep", "^SigIgn", "/proc/self/status"])
    assert p.returncode == 0 and p.stdout.split()[1] == "0000000000000000", p.stdout


def test_start_container_hook_runs_as_the_container_process(env):
    # startContainer hooks run from init after `start`: with the container's user,
    # capabilities and seccomp filter (runc's "startContainer hook" test). Forked from the
    # host side they would run as root with every capability and no filter.
    log_dir = os.path.join(env.tmp, "log")
    os.makedirs(log_dir)
    os.chmod(log_dir, 0o777)

    def m(c):
        c["process"]["user"] = {"uid": 1000, "gid": 1000}
        c["process"]["noNewPrivileges"] = True
        c["mounts"].append({"destination": "/hooklog", "type": "bind", "source": log_dir, "options": ["bind"]})
        c["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW",
                                 "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_KILL"}]}
        c["hooks"] = {"startContainer": [{"path": "/bin/sh", "args": ["sh", "-c",
                      "id -u > /hooklog/uid; grep -E '^(CapEff|Seccomp|NoNewPrivs):' /proc/self/status > /hooklog/status"]}]}
    b = env.bundle(["sleep", "60"], mutate=m)
    cid = env.new_id()
    env.create(b, cid)
    env.berth("start", cid)
    assert open(os.path.join(log_dir, "uid")).read() == "1000\n"
    status = dict(l.split(":\t") for l in open(os.path.join(log_dir, "status")).read().splitlines())
    assert status == {"CapEff": "0000000000000000", "Seccomp": "2", "NoNewPrivs": "1"}, status
    assert env.state(cid)["status"] == "running"
    env.berth("delete", "--force", cid)

    # A hook the filter kills fails the start, with runc's words; the container is gone.
    def m2(c):
        m(c)
        c["hooks"]["startContainer"] = [{"path": "/bin/sh", "args": ["sh", "-c", "echo trying; mkdir /hooklog/d"]}]
    b = env.bundle(["sleep", "60"], mutate=m2, name="killed")
    cid = env.new_id()
    env.create(b, cid)
    p = env.berth("start", cid, check=False)
    assert p.returncode == 1
    assert "error running hook #0 (startContainer: /bin/sh): signal: bad system call" in p.stderr, p.stderr
    assert "output: trying" in p.stderr
    assert not os.path.exists(os.path.join(env.root, cid))
    assert not os.path.exists(os.path.join(log_dir, "d"))
