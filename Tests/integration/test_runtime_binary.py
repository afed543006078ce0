"""CVE-2019-5736 with CAP_SYS_PTRACE: no process that a container can see
may have a /proc/PID/exe that reopens as a writable host file.

A static scanner (payload/exe_scanner.c) runs inside a container that holds
CAP_SYS_PTRACE, collects O_PATH handles on every foreign /proc/PID/exe while Berth works
in its pid namespace (an `exec` loop; a second container created into the same pid
namespace), then, once Berth has finished, tries to reopen them for writing. Berth runs
from a scratch copy of its binary here, so a failing test cannot damage the build.
"""
import os
import shutil
import subprocess
import time

import pytest

from conftest import BERTH, wait_for

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "payload", "exe_scanner.c")


@pytest.fixture(scope="module")
def scanner(tmp_path_factory):
    # Scripts/test installs gcc: without the attacker this test would prove nothing.
    assert shutil.which("gcc"), "needs gcc (and libc6-dev) to build the static scanner"
    out = tmp_path_factory.mktemp("scanner") / "exe_scanner"
    subprocess.run(["gcc", "-static", "-O2", "-o", str(out), SRC], check=True)
    return str(out)


class Attack:
    def __init__(self, env, scanner, seconds, pidns=None):
        self.env = env
        self.work = os.path.join(env.tmp, "scan")
        os.makedirs(self.work)
        os.chmod(self.work, 0o755)
        shutil.copy(scanner, os.path.join(self.work, "exe_scanner"))
        self.berth = os.path.join(env.tmp, "berth-copy")
        shutil.copy(BERTH, self.berth)
        with open(self.berth, "rb") as f:
            self.original = f.read()
        def m(c):
            c["process"]["capabilities"] = {k: ["CAP_SYS_PTRACE", "CAP_DAC_OVERRIDE"]
                                            for k in ("bounding", "effective", "permitted")}
            c["mounts"].append({"destination": "/scan", "type": "bind", "source": self.work,
                                "options": ["rbind", "rw"]})
            if pidns:  # the scanner joins this pid namespace, as a pod's containers do
                c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "pid"]
                c["linux"]["namespaces"].append({"type": "pid", "path": pidns})
        b = env.bundle(["/scan/exe_scanner", str(seconds), "/scan/done"], mutate=m, name="scanner")
        self.cid = env.new_id("scan")
        self.out = os.path.join(env.tmp, "scan.out")
        with open(self.out, "w") as o:
            subprocess.run([self.berth, "--root", env.root, "run", "-d", "--bundle", b, self.cid],
                           stdin=subprocess.DEVNULL, stdout=o, stderr=subprocess.STDOUT, check=True, timeout=30)
        assert wait_for(lambda: "scanning" in open(self.out).read(), 10), open(self.out).read()
        self.pid = self.env.state(self.cid)["pid"]

    def run(self, *args, check=True):
        # stdio in files: a created init holds its stdio until it ends.
        with open(os.path.join(self.env.tmp, "berth.err"), "w+") as err:
            p = subprocess.run([self.berth, "--root", self.env.root] + list(args), stdout=subprocess.PIPE
                               if args[0] == "state" else subprocess.DEVNULL, stderr=err, text=True,
                               timeout=30, stdin=subprocess.DEVNULL)
            err.seek(0)
            p.stderr = err.read()
        if check:
            assert p.returncode == 0, (args, p.stderr)
        return p

    def result(self):
        open(os.path.join(self.work, "done"), "w").close()
        assert wait_for(lambda: "held" in open(self.out).read(), 30), open(self.out).read()
        text = open(self.out).read()
        last = text.strip().splitlines()[-1].split()
        held, writable = int(last[1]), int(last[3])
        with open(self.berth, "rb") as f:
            intact = f.read() == self.original
        return held, writable, intact, text


def test_exec_never_exposes_a_writable_runtime_binary(env, scanner):
    a = Attack(env, scanner, 3)
    end = time.time() + 3
    n = 0
    while time.time() < end:
        a.run("exec", a.cid, "/bin/true")
        n += 1
    held, writable, intact, text = a.result()
    # The scanner must have caught Berth at work, or the test proves nothing.
    assert held > 0, f"the scanner saw no runtime process during {n} execs: {text}"
    assert writable == 0, text
    assert intact


def test_create_into_a_joined_pid_namespace_never_exposes_a_writable_runtime_binary(env, scanner):
    a = Attack(env, scanner, 2)
    def m(c):
        c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "pid"]
        c["linux"]["namespaces"].append({"type": "pid", "path": f"/proc/{a.pid}/ns/pid"})
    b = env.bundle(["true"], mutate=m, name="joiner")
    for i in range(3):
        cid = env.new_id("joiner")
        a.run("create", "--bundle", b, cid)
        time.sleep(0.3)  # init waits for `start` in the scanner's pid namespace
        a.run("start", cid)
        assert wait_for(lambda: a.run("state", cid).stdout.count('"stopped"') == 1, 5)
        a.run("delete", cid)
    time.sleep(max(0, 2.2 - 0.3 * 3))
    held, writable, intact, text = a.result()
    assert held > 0, f"the scanner saw no runtime process: {text}"
    assert writable == 0, text
    assert intact


def test_a_waiting_init_in_its_own_pid_namespace_never_exposes_a_writable_runtime_binary(env, scanner):
    """Container A is created (its init waits in Berth's code, in a new pid namespace of
    its own); the attacker joins that pid namespace by path, holds /proc/1/exe, and
    reopens it for writing once A has started."""
    victim = env.new_id("victim")
    b = env.bundle(["sleep", "30"], name="victim")
    berth = os.path.join(env.tmp, "berth-victim")
    shutil.copy(BERTH, berth)
    subprocess.run([berth, "--root", env.root, "create", "--bundle", b, victim], stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, timeout=30)
    init = env.state(victim)["pid"]
    a = Attack(env, scanner, 1, pidns=f"/proc/{init}/ns/pid")
    time.sleep(1.2)  # the scanner holds pid 1's exe: the waiting init
    subprocess.run([berth, "--root", env.root, "start", victim], check=True, timeout=30)
    held, writable, intact, text = a.result()
    assert held > 0, f"the scanner never saw the waiting init: {text}"
    assert writable == 0, text


def fd_links(pid):
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out[int(fd)] = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            pass
    return out


def foreign_fds(links, allowed):
    """fds other than stdio, the sync socket and what `allowed` names."""
    return {fd: t for fd, t in links.items()
            if fd > 2 and not t.startswith("socket:[") and t not in allowed}


class HostFd:
    """An fd on a host directory, left open (inheritable) in the caller, as a careless
    caller might: nothing of it may reach the container's processes."""

    def __init__(self, env):
        self.path = env.tmp
        self.fd = os.open(env.tmp, os.O_RDONLY | os.O_DIRECTORY)
        os.set_inheritable(self.fd, True)

    def close(self):
        os.close(self.fd)


def test_a_waiting_init_holds_no_host_fd_but_the_exec_fifo(env):
    """CVE-2024-21626 class: a created container's init can be reached (its pid namespace
    joined, with CAP_SYS_PTRACE), so /proc/<init>/fd may show nothing of the host but
    stdio and the exec fifo: not its cgroup directory, nor a namespace it joined, nor
    the caller's fds."""
    first = env.new_id("first")
    env.create(env.bundle(["true"], name="first"), first)
    pid1 = env.state(first)["pid"]
    second = env.new_id("second")
    def join(c):  # stage mode: namespaces joined by path
        c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "network"]
        c["linux"]["namespaces"].append({"type": "network", "path": f"/proc/{pid1}/ns/net"})
    host = HostFd(env)
    try:
        # stdio not a pipe: the created init holds it until it ends
        with open(os.path.join(env.tmp, "second.err"), "w+") as err:
            p = subprocess.run(env.berth_cmd("create", "--bundle", env.bundle(["true"], name="second", mutate=join),
                                             second), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=err, timeout=30, pass_fds=(host.fd,))
            err.seek(0)
            assert p.returncode == 0, err.read()
    finally:
        host.close()
    for cid in (first, second):
        pid = env.state(cid)["pid"]
        fifo = os.path.join(env.root, cid, "exec.fifo")
        assert fifo in fd_links(pid).values(), fd_links(pid)
        assert foreign_fds(fd_links(pid), {fifo}) == {}, (cid, fd_links(pid))


def test_an_exec_process_holds_no_host_fd_before_execve(env):
    """The process `exec` forks into a running container runs Berth's code there until
    execve; strace holds it at execve for a while, and its fds are read then."""
    assert shutil.which("strace"), "needs strace (Scripts/test installs it)"
    cid = env.new_id()
    env.detach(env.bundle(["sleep", "30"]), cid)
    host = HostFd(env)
    try:
        # Only execve is delayed: Berth's own re-execution from a read-only view is execveat.
        tracer = subprocess.Popen(["strace", "-f", "-qq", "-o", "/dev/null", "-e", "trace=execve",
                                   "-e", "inject=execve:delay_enter=3000000"] + env.berth_cmd("exec", cid, "true"),
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  pass_fds=(host.fd,))
    finally:
        host.close()
    try:
        def waiting():
            for pid in os.listdir("/proc"):
                try:
                    # held by strace at execve's entry (syscall 59 on x86-64)
                    if pid.isdigit() and open(f"/proc/{pid}/comm").read().strip() == "berth/init" \
                            and open(f"/proc/{pid}/syscall").read().split()[0] == "59":
                        return int(pid)
                except OSError:
                    pass
            return None
        assert wait_for(lambda: waiting() is not None, 10), "no exec'd process waiting before execve"
        links = fd_links(waiting())
        assert foreign_fds(links, set()) == {}, links
    finally:
        tracer.wait(timeout=30)
    assert tracer.returncode == 0, tracer.stderr.read()
