"""exec: a new process inside a running container."""
import json
import os
import re
import signal
import subprocess

from conftest import BERTH, fds_at, wait_for


def running(env, mutate=None, args=("sleep", "60")):
    def m(c):
        c["hostname"] = "exec-box"
        c["process"]["capabilities"] = {k: ["CAP_KILL", "CAP_NET_BIND_SERVICE"] for k in ("bounding", "effective", "permitted")}
        if mutate:
            mutate(c)
    b = env.bundle(list(args), mutate=m)
    cid = env.new_id()
    env.detach(b, cid)
    return cid


def test_exec_shares_the_container(env):
    cid = running(env, args=("sh", "-c", "echo made-by-init > /tmp/mark; sleep 60"))
    assert wait_for(lambda: env.berth("exec", cid, "cat", "/tmp/mark", check=False).stdout == "made-by-init\n")
    p = env.berth("exec", cid, "sh", "-c", "echo $$; hostname; readlink /proc/1/exe; grep CapEff /proc/self/status")
    lines = p.stdout.splitlines()
    assert int(lines[0]) > 1                  # in the container's pid namespace, not its init
    assert lines[1] == "exec-box"
    assert lines[2] == "/bin/busybox"         # pid 1 there is the container's program
    assert lines[3].split()[1] == f"{(1 << 5) | (1 << 10):016x}"
    init = env.state(cid)["pid"]
    for ns in ("mnt", "pid", "net", "uts", "ipc", "cgroup"):
        inside = env.berth("exec", cid, "readlink", f"/proc/self/ns/{ns}").stdout.strip()
        assert inside == os.readlink(f"/proc/{init}/ns/{ns}")


def test_exec_flags(env):
    cid = running(env)
    p = env.berth("exec", "--user", "1000:1001", "-g", "7", "--env", "A=1", "-e", "PATH=/bin", "--cwd", "/tmp",
                  "--cap", "CAP_NET_RAW", "--no-new-privs", cid,
                  "sh", "-c", "id -u; id -g; id -G; echo $A $PATH; pwd; grep -E 'CapBnd|NoNewPrivs' /proc/self/status")
    out = p.stdout.split()
    assert out[:3] == ["1000", "1001", "1001"] or out[:2] == ["1000", "1001"]
    assert "7" in out
    assert "1" in out and "/bin" in out and "/tmp" in out
    bnd = int(out[out.index("CapBnd:") + 1], 16)
    assert bnd & (1 << 13)  # CAP_NET_RAW added
    assert out[out.index("NoNewPrivs:") + 1] == "1"


def test_exec_status_and_failures(env):
    cid = running(env)
    assert env.berth("exec", cid, "sh", "-c", "exit 9", check=False).returncode == 9
    p = env.berth("exec", cid, "no-such-program", check=False)
    assert p.returncode == 255 and 'executable file not found in $PATH' in p.stderr
    p = env.berth("exec", "nosuchcontainer", "true", check=False)
    assert p.returncode == 255 and "container does not exist" in p.stderr
    p = env.berth("exec", "--tty", "--detach", cid, "true", check=False)
    assert p.returncode == 255 and "cannot allocate tty if runc will detach without setting console socket" in p.stderr


def test_exec_killed_by_signal(env):
    cid = running(env)
    proc = subprocess.Popen([BERTH, "--root", env.root, "exec", cid, "sh", "-c", "echo up; sleep 60"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "up\n"
        proc.send_signal(signal.SIGTERM)   # forwarded to the exec'd process
        assert proc.wait(timeout=10) == 128 + 15
    finally:
        proc.kill()
        proc.wait()


def test_exec_detach_pid_file_and_cgroup(env):
    cid = running(env)
    pidfile = os.path.join(env.tmp, "exec.pid")
    # The detached process keeps Berth's stdio: give it none to hold.
    env.berth("exec", "--detach", "--pid-file", pidfile, cid, "sleep", "30",
              capture_output=False, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    text = open(pidfile).read()
    assert re.fullmatch(r"[0-9]+", text)
    pid = int(text)
    init = env.state(cid)["pid"]
    assert open(f"/proc/{pid}/cgroup").read() == open(f"/proc/{init}/cgroup").read()
    assert pid in json.loads(env.berth("ps", "--format", "json", cid).stdout)


def test_exec_process_file(env):
    cid = running(env)
    proc = {"user": {"uid": 5, "gid": 6}, "args": ["sh", "-c", "id -u; id -g; echo $X"], "env": ["PATH=/bin", "X=from-file"], "cwd": "/"}
    path = os.path.join(env.tmp, "process.json")
    with open(path, "w") as f:
        json.dump(proc, f)
    p = env.berth("exec", "--process", path, cid)
    assert p.stdout.split() == ["5", "6", "from-file"]


def test_exec_fds(env):
    cid = running(env)
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    leak = os.open("/dev/null", os.O_RDONLY)
    try:
        with fds_at({3: r1, 4: r2}):
            p = env.berth("exec", "--preserve-fds", "2", cid, "sh", "-c", "ls /proc/self/fd | sort -n | tr '\\n' ' '",
                          pass_fds=(3, 4, leak))
    finally:
        for fd in (r1, w1, r2, w2, leak):
            os.close(fd)
    # 0-2, exactly the two preserved fds, and ls's own directory fd: no host fd beyond.
    assert p.stdout.split()[:5] == ["0", "1", "2", "3", "4"] and len(p.stdout.split()) == 6, p.stdout


def test_exec_refused_when_not_running(env):
    cid = running(env)
    env.berth("pause", cid)
    p = env.berth("exec", cid, "true", check=False)
    assert p.returncode == 255 and "paused" in p.stderr
    env.berth("resume", cid)
    env.berth("kill", cid, "KILL")
    assert wait_for(lambda: env.state(cid)["status"] == "stopped")
    p = env.berth("exec", cid, "true", check=False)
    assert p.returncode == 255 and "stopped" in p.stderr


def test_exec_gets_the_seccomp_profile(env):
    def m(c):
        c["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW",
                                 "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}
    cid = running(env, mutate=m)
    p = env.berth("exec", cid, "sh", "-c", "mkdir /tmp/x 2>&1; grep Seccomp: /proc/self/status")
    assert "Operation not permitted" in p.stdout and "Seccomp:\t2" in p.stdout
