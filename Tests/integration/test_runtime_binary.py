"""CVE-2019-5736 with CAP_SYS_PTRACE (issue 8, D1): no process that a container can see
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
    def __init__(self, env, scanner, seconds):
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
