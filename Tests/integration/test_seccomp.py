"""linux.seccomp, seen from inside real containers."""
import array
import ctypes
import json
import os
import shutil
import socket
import subprocess
import struct
import threading

import pytest

from conftest import wait_for


def profile(rules, default="SCMP_ACT_ALLOW", **extra):
    p = {"defaultAction": default, "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
         "syscalls": rules}
    p.update(extra)
    return p


def with_seccomp(prof, nnp=True, user=None):
    def m(c):
        c["linux"]["seccomp"] = prof
        c["process"]["noNewPrivileges"] = nnp
        if user:
            c["process"]["user"] = user
    return m


def test_errno_action_and_allowed_syscalls(env):
    prof = profile([{"names": ["mkdir", "mkdirat", "no_such_syscall_xyz"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}])
    p = env.run(["sh", "-c", "mkdir /tmp/d 2>&1; touch /tmp/f && echo touched; grep Seccomp: /proc/self/status"],
                mutate=with_seccomp(prof))
    assert p.returncode == 0, p.stderr
    assert "Permission denied" in p.stdout  # EACCES, the configured errnoRet
    assert "touched" in p.stdout
    assert "Seccomp:\t2" in p.stdout


def test_default_errno_ret(env):
    # Everything not listed fails with defaultErrnoRet; the list is what busybox sh + echo need.
    allow = ["execve", "brk", "arch_prctl", "set_tid_address", "set_robust_list", "rt_sigaction",
             "rt_sigprocmask", "rt_sigreturn", "getpid", "getppid", "getuid", "geteuid", "getgid", "getegid",
             "write", "writev", "exit", "exit_group", "uname", "prlimit64", "mmap", "munmap", "mprotect",
             "read", "close", "fcntl", "ioctl", "newfstatat", "fstat", "stat", "lstat", "access", "getcwd",
             "readlink", "sigaltstack", "futex", "rseq", "getrandom", "wait4", "clone", "fork", "vfork"]
    prof = profile([{"names": allow, "action": "SCMP_ACT_ALLOW"}], default="SCMP_ACT_ERRNO", defaultErrnoRet=95)
    p = env.run(["sh", "-c", "echo alive; : > /tmp/x"], mutate=with_seccomp(prof))
    assert "alive" in p.stdout, p.stderr
    assert "can't create /tmp/x: Operation not supported" in p.stderr  # errno 95


def test_argument_conditions(env):
    rules = [
        # kill(pid, SIGUSR1) is refused, other signals pass.
        {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
         "args": [{"index": 1, "value": 10, "op": "SCMP_CMP_EQ"}]},
        # umask with all of 0o070 set is refused (masked equality).
        {"names": ["umask"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
         "args": [{"index": 0, "value": 0o070, "valueTwo": 0o070, "op": "SCMP_CMP_MASKED_EQ"}]},
    ]
    p = env.run(["sh", "-c", "trap '' USR1; kill -USR1 $$ && echo usr1-sent || echo usr1-refused; "
                 "kill -0 $$ && echo sig0-sent"], mutate=with_seccomp(profile(rules)))
    assert p.returncode == 0, p.stderr
    assert "usr1-refused" in p.stdout and "sig0-sent" in p.stdout


def test_kill_action(env):
    prof = profile([{"names": ["uname"], "action": "SCMP_ACT_KILL_PROCESS"}])
    # busybox runs uname inside the shell process: the shell itself dies of SIGSYS.
    p = env.run(["sh", "-c", "uname; echo after"], mutate=with_seccomp(prof))
    assert p.returncode == 128 + 31, (p.stdout, p.stderr)
    assert "after" not in p.stdout


def test_blocked_getcwd_does_not_break_start(env):
    # The cwd check and every other setup syscall happen before the filter is loaded.
    prof = profile([{"names": ["getcwd", "newfstatat", "stat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}])
    def m(c):
        with_seccomp(prof)(c)
        c["process"]["cwd"] = "/tmp"
    p = env.run(["/bin/echo", "started"], mutate=m)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "started\n"


def test_without_no_new_privs_as_non_root(env):
    # Loading needs CAP_SYS_ADMIN then; Berth keeps it until the load and drops it after.
    prof = profile([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
                   flags=["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"])
    p = env.run(["sh", "-c", "grep -E 'CapEff|CapPrm|NoNewPrivs|Seccomp:' /proc/self/status; mkdir /tmp/d 2>&1"],
                mutate=with_seccomp(prof, nnp=False, user={"uid": 1000, "gid": 1000}))
    assert p.returncode != 0 or "not permitted" in p.stdout, p.stderr
    out = p.stdout
    assert "CapEff:\t0000000000000000" in out and "CapPrm:\t0000000000000000" in out
    assert "NoNewPrivs:\t0" in out and "Seccomp:\t2" in out
    assert "Operation not permitted" in out


def test_bad_profiles_are_refused(env):
    for prof, want in [
        ({"defaultAction": "SCMP_ACT_MAYBE"}, 'linux.seccomp.defaultAction: unknown action "SCMP_ACT_MAYBE"'),
        (profile([{"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 7, "value": 1, "op": "SCMP_CMP_EQ"}]}]),
         "linux.seccomp.syscalls[0].args[0].index: must be 0 to 5"),
        (profile([{"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_SIMILAR"}]}]),
         'linux.seccomp.syscalls[0].args[0].op: unknown operator "SCMP_CMP_SIMILAR"'),
        (profile([{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]),
         "linux.seccomp.listenerPath: an absolute socket path is required with SCMP_ACT_NOTIFY"),
        (profile([], architectures=["SCMP_ARCH_VAX"]), 'linux.seccomp.architectures[0]: unknown architecture "SCMP_ARCH_VAX"'),
        (profile([{"names": ["read", "write"], "action": "SCMP_ACT_NOTIFY"}], listenerPath="/run/agent.sock"),
         "linux.seccomp.syscalls[0].names: SCMP_ACT_NOTIFY cannot be used for the write syscall"),
    ]:
        b = env.bundle(["true"], mutate=with_seccomp(prof))
        p = env.create(b, env.new_id(), check=False)
        assert p.returncode == 1 and want in p.stderr, p.stderr


# ---- SCMP_ACT_NOTIFY: a small agent receives the listener and answers mkdir ----------

SECCOMP_IOCTL_NOTIF_RECV = 0xC0502100
SECCOMP_IOCTL_NOTIF_SEND = 0xC0182101
ENOTSUP = 95


def agent(server, result):
    libc = ctypes.CDLL(None, use_errno=True)
    conn, _ = server.accept()
    msg, fds, _, _ = socket.recv_fds(conn, 65536, 1)
    result["state"] = json.loads(msg)
    result["fds"] = len(fds)
    listener = fds[0]
    notif = ctypes.create_string_buffer(80)
    answered = 0
    while answered < 1:
        ctypes.memset(notif, 0, 80)
        if libc.ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, notif) != 0:
            break
        nid, pid = struct.unpack_from("=QI", notif.raw, 0)
        nr = struct.unpack_from("=i", notif.raw, 16)[0]
        result.setdefault("syscalls", []).append(nr)
        resp = struct.pack("=QqiI", nid, 0, -ENOTSUP, 0)
        libc.ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, ctypes.create_string_buffer(resp, 24))
        answered += 1
    os.close(listener)
    conn.close()


def test_notify_listener_gets_the_fd_and_answers(env):
    path = os.path.join(env.tmp, "agent.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    result = {}
    t = threading.Thread(target=agent, args=(server, result), daemon=True)
    t.start()
    prof = profile([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}],
                   listenerPath=path, listenerMetadata="hello-agent",
                   flags=["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"])
    def m(c):
        with_seccomp(prof)(c)
        c["annotations"] = {"k": "v"}
    try:
        p = env.run(["sh", "-c", "mkdir /tmp/d 2>&1; echo done"], mutate=m)
        t.join(10)
    finally:
        server.close()
    assert p.returncode == 0, p.stderr
    assert "Operation not supported" in p.stdout  # the agent's answer
    assert result["fds"] == 1
    st = result["state"]
    assert st["fds"] == ["seccompFd"] and st["metadata"] == "hello-agent"
    assert st["pid"] > 0 and st["state"]["pid"] == st["pid"]
    assert st["state"]["annotations"] == {"k": "v"}
    assert result["syscalls"] == [83] or result["syscalls"] == [258]  # mkdir or mkdirat


import pytest


@pytest.mark.parametrize("op,value,refused", [
    ("SCMP_CMP_EQ", 10, {"USR1"}), ("SCMP_CMP_NE", 10, {"USR2"}), ("SCMP_CMP_LT", 11, {"USR1"}),
    ("SCMP_CMP_LE", 10, {"USR1"}), ("SCMP_CMP_GT", 11, {"USR2"}), ("SCMP_CMP_GE", 12, {"USR2"}),
])
def test_every_operator(env, op, value, refused):
    # A rule on kill(2)'s signal argument; USR1 is 10, USR2 is 12.
    rules = [{"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
              "args": [{"index": 1, "value": value, "op": op}]}]
    p = env.run(["sh", "-c", "trap '' USR1 USR2; for s in USR1 USR2; do kill -$s $$ 2>/dev/null && echo $s-ok || echo $s-refused; done"],
                mutate=with_seccomp(profile(rules)))
    assert p.returncode == 0, p.stderr
    got = {l.split("-")[0] for l in p.stdout.split() if l.endswith("-refused")}
    assert got == refused, p.stdout


@pytest.mark.parametrize("action,expect_status,expect_out", [
    ("SCMP_ACT_TRAP", 128 + 31, None),          # SIGSYS
    ("SCMP_ACT_KILL_THREAD", 128 + 31, None),   # the only thread: the process dies
    ("SCMP_ACT_KILL", 128 + 31, None),
    ("SCMP_ACT_LOG", 0, "after"),               # allowed, logged by the kernel
    ("SCMP_ACT_TRACE", 0, "after"),             # no tracer: the syscall fails with ENOSYS
])
def test_other_actions(env, action, expect_status, expect_out):
    prof = profile([{"names": ["uname"], "action": action}])
    p = env.run(["sh", "-c", "uname >/dev/null 2>&1; echo after"], mutate=with_seccomp(prof))
    assert p.returncode == expect_status, (p.stdout, p.stderr)
    if expect_out:
        assert expect_out in p.stdout


def test_two_comparisons_of_one_argument_match_either(env):
    # libseccomp refuses them in one rule; like runc, Berth makes one rule per comparison.
    rules = [{"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
              "args": [{"index": 1, "value": 10, "op": "SCMP_CMP_EQ"}, {"index": 1, "value": 12, "op": "SCMP_CMP_EQ"}]}]
    p = env.run(["sh", "-c", "trap '' USR1 USR2; for s in USR1 USR2 0; do kill -$s $$ 2>/dev/null && echo $s-ok || echo $s-refused; done"],
                mutate=with_seccomp(profile(rules)))
    assert p.stdout.split() == ["USR1-refused", "USR2-refused", "0-ok"], p.stderr


def test_tsync_flag(env):
    prof = profile([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
                   flags=["SECCOMP_FILTER_FLAG_TSYNC"])
    p = env.run(["sh", "-c", "mkdir /tmp/d 2>&1 || true"], mutate=with_seccomp(prof))
    assert p.returncode == 0 and "Operation not permitted" in p.stdout, p.stderr


def test_unknown_syscall_names_are_skipped_with_a_log_line(env):
    log = os.path.join(env.tmp, "debug.log")
    prof = profile([{"names": ["mkdir", "no_such_syscall_xyz"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}])
    b = env.bundle(["true"], mutate=with_seccomp(prof))
    p = env.berth("--debug", "--log", log, "run", "--bundle", b, env.new_id(), check=False)
    assert p.returncode == 0, p.stderr
    assert "seccomp: unknown syscalls skipped: no_such_syscall_xyz" in open(log).read()


def test_duplicate_rules_are_accepted(env):
    # Podman's default profile repeats identical conditional rules (for socket).
    rule = {"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 2, "value": 9, "op": "SCMP_CMP_NE"}]}
    prof = profile([rule, dict(rule)], default="SCMP_ACT_ALLOW")
    prof["syscalls"].append({"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1})
    p = env.run(["sh", "-c", "mkdir /tmp/d 2>&1 || true"], mutate=with_seccomp(prof))
    assert p.returncode == 0 and "Operation not permitted" in p.stdout, p.stderr


@pytest.fixture(scope="module")
def syscall_probe(tmp_path_factory):
    assert shutil.which("gcc"), "needs gcc (and libc6-dev) to build the static probe"
    d = tmp_path_factory.mktemp("probe")
    os.chmod(d, 0o755)
    subprocess.run(["gcc", "-static", "-O2", "-o", str(d / "syscall_probe"),
                    os.path.join(os.path.dirname(os.path.abspath(__file__)), "payload", "syscall_probe.c")], check=True)
    return str(d)


def probe(env, probe_dir, prof, numbers):
    def m(c):
        c["linux"]["seccomp"] = prof
        c["process"]["noNewPrivileges"] = True  # the filter is loaded last, after every capset
        c["mounts"].append({"destination": "/probe", "type": "bind", "source": probe_dir, "options": ["rbind", "ro"]})
    p = env.run(["/probe/syscall_probe"] + [str(n) for n in numbers], mutate=m)
    assert p.returncode == 0, p.stderr
    return {int(a): int(b) for a, b in (l.split() for l in p.stdout.splitlines())}


# What a static glibc program needs to start, print and exit (x86-64 numbers are listed
# by name; the largest of them is rseq, 334).
PROBE_NEEDS = ["execve", "brk", "arch_prctl", "set_tid_address", "set_robust_list", "rseq", "prlimit64",
               "readlinkat", "readlink", "getrandom", "mprotect", "mmap", "munmap", "newfstatat", "fstat",
               "write", "exit", "exit_group", "uname", "getpid"]
ENOSYS, EPERM = 38, 1
NR_UNSHARE, NR_CLOSE_RANGE, NR_KCMP = 272, 436, 312


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="syscall numbers are x86-64's")
def test_syscalls_newer_than_the_profile_get_enosys(env, syscall_probe):
    # A default-deny profile written before close_range existed: close_range (436) and an
    # unassigned number (1000) are above every syscall it names and get ENOSYS, so that
    # programs fall back as on an older kernel; unshare (272), below, gets the default
    # action. runc does the same (runc's "seccomp -ENOSYS handling" test).
    prof = profile([{"names": PROBE_NEEDS, "action": "SCMP_ACT_ALLOW"}], default="SCMP_ACT_ERRNO")
    got = probe(env, syscall_probe, prof, [NR_UNSHARE, NR_CLOSE_RANGE, 1000])
    assert got == {NR_UNSHARE: EPERM, NR_CLOSE_RANGE: ENOSYS, 1000: ENOSYS}
    # Any rule counts towards the largest number, whatever its action: naming close_range
    # (as an errno rule) moves the line above it.
    prof = profile([{"names": PROBE_NEEDS, "action": "SCMP_ACT_ALLOW"},
                    {"names": ["close_range"], "action": "SCMP_ACT_ERRNO", "errnoRet": 95}], default="SCMP_ACT_ERRNO")
    got = probe(env, syscall_probe, prof, [NR_CLOSE_RANGE, 435, 1000])
    assert got == {NR_CLOSE_RANGE: 95, 435: EPERM, 1000: ENOSYS}
    # Not when the default lets syscalls through, nor when it is ENOSYS already: KILL
    # rules stay as written, and the kernel answers ENOSYS for unknown numbers itself.
    prof = profile([{"names": ["kcmp"], "action": "SCMP_ACT_ERRNO", "errnoRet": 95}])
    got = probe(env, syscall_probe, prof, [NR_KCMP, 1000])
    assert got == {NR_KCMP: 95, 1000: ENOSYS}
    prof = profile([{"names": PROBE_NEEDS, "action": "SCMP_ACT_ALLOW"}], default="SCMP_ACT_ERRNO", defaultErrnoRet=ENOSYS)
    got = probe(env, syscall_probe, prof, [NR_UNSHARE, 1000])
    assert got == {NR_UNSHARE: ENOSYS, 1000: ENOSYS}
