"""process.terminal with --console-socket, as containerd and Podman use it."""
import array
import os
import socket
import subprocess
import time

from conftest import BERTH, wait_for


def receive_master(server):
    """containerd's receiver: one message, exactly one fd, the pty name as payload."""
    conn, _ = server.accept()
    with conn:
        msg, fds, flags, _ = socket.recv_fds(conn, 4096, 2)
    assert len(fds) == 1, fds
    assert msg.startswith(b"/dev/pts/"), msg
    return msg.decode(), fds[0]


def read_until(fd, needle, timeout=10):
    out = b""
    end = time.time() + timeout
    os.set_blocking(fd, False)
    while time.time() < end and needle.encode() not in out:
        try:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            out += chunk
        except BlockingIOError:
            time.sleep(0.02)
        except OSError:
            break
    return out.decode(errors="replace")


def console_server(env):
    path = os.path.join(env.tmp, "console.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    return path, server


def test_console_socket_gives_a_tty(env):
    path, server = console_server(env)
    def m(c):
        c["process"]["terminal"] = True
        c["process"]["consoleSize"] = {"height": 33, "width": 101}
        c["process"]["user"] = {"uid": 1000, "gid": 1000}
    b = env.bundle(["sh", "-c", "test -t 0 && test -t 1 && echo is-a-tty; stty size; readlink /proc/self/fd/0; "
                    "ls -l /dev/console | cut -c1; stat -c %u /proc/self/fd/0; echo done; sleep 5"], mutate=m)
    cid = env.new_id()
    try:
        env.create(b, cid, "--console-socket", path)
        name, master = receive_master(server)   # accepted only after create has exited
        env.berth("start", cid)
        out = read_until(master, "done")
        os.close(master)
    finally:
        server.close()
    assert "is-a-tty" in out, out
    assert "33 101" in out
    assert name in out                      # stdio is the pty whose name was sent
    assert "\nc" in out.replace("\r", "")   # /dev/console is a character device (the pty)
    assert "1000" in out                    # owned by the process user


def test_exec_with_console_socket(env):
    b = env.bundle(["sleep", "60"])
    cid = env.new_id()
    env.detach(b, cid)
    path, server = console_server(env)
    try:
        p = subprocess.Popen([BERTH, "--root", env.root, "exec", "--tty", "--console-socket", path, "--detach", cid,
                              "sh", "-c", "test -t 0 && echo exec-tty; echo done; sleep 2"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert p.wait(timeout=20) == 0, p.stderr.read()
        name, master = receive_master(server)
        out = read_until(master, "done")
        os.close(master)
    finally:
        server.close()
    assert "exec-tty" in out, out


def test_console_errors_in_runc_words(env):
    def tty(c):
        c["process"]["terminal"] = True
    b = env.bundle(["true"], mutate=tty)
    p = env.create(b, env.new_id(), check=False)
    assert p.returncode == 1 and "cannot allocate tty if runc will detach without setting console socket" in p.stderr
    b2 = env.bundle(["true"], name="notty")
    p = env.create(b2, env.new_id(), "--console-socket", os.path.join(env.tmp, "nothing.sock"), check=False)
    assert p.returncode == 1 and "cannot use console socket if runc will not detach or allocate tty" in p.stderr
    path, server = console_server(env)
    server.close()
    os.unlink(path)
    p = env.create(b, env.new_id(), "--console-socket", path, check=False)
    assert p.returncode == 1 and "--console-socket: connect" in p.stderr


def run_in_pty(args, timeout=20):
    """Runs Berth with a pty as its terminal (as a person at a terminal would), returns
    what appeared on it and the exit status."""
    import pty
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(args[0], args)
    out = b""
    end = time.time() + timeout
    while time.time() < end:
        try:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            out += chunk
        except OSError:
            break
    _, st = os.waitpid(pid, 0)
    os.close(fd)
    return out.decode(errors="replace"), os.waitstatus_to_exitcode(st)


def test_foreground_run_relays_a_terminal(env):
    def m(c):
        c["process"]["terminal"] = True
    b = env.bundle(["sh", "-c", "test -t 0 && echo inside-tty; stty size; exit 4"], mutate=m)
    cid = env.new_id()
    out, status = run_in_pty([BERTH, "--root", env.root, "run", "--bundle", b, cid])
    assert status == 4, out
    assert "inside-tty" in out
    assert not os.path.exists(os.path.join(env.root, cid))


def test_foreground_exec_tty(env):
    b = env.bundle(["sleep", "60"])
    cid = env.new_id()
    env.detach(b, cid)
    out, status = run_in_pty([BERTH, "--root", env.root, "exec", "-t", cid, "sh", "-c", "test -t 1 && echo exec-relayed; exit 5"])
    assert status == 5 and "exec-relayed" in out, out
