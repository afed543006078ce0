"""What a container looks like from inside: namespaces, mounts, process settings."""
import os
import re
import stat
import subprocess
import tempfile

from conftest import fds_at, wait_for


def test_process_is_pid_1_and_sees_only_its_processes(env):
    p = env.run(["sh", "-c", "echo $$; ls /proc | grep -E '^[0-9]+$' | wc -l"])
    assert p.returncode == 0, p.stderr
    pid, count = p.stdout.split()
    assert pid == "1"
    # sh, ls, grep and wc at most: no host process is visible.
    assert int(count) <= 4


def test_hostname_and_domainname(env):
    def m(c):
        c["hostname"] = "box-one"
        c["domainname"] = "example.test"
    p = env.run(["sh", "-c", "hostname; cat /proc/sys/kernel/domainname"], mutate=m)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["box-one", "example.test"]
    assert os.uname().nodename != "box-one"


def test_user_group_umask_cwd_env(env):
    def m(c):
        c["process"]["user"] = {"uid": 1234, "gid": 2345, "additionalGids": [3456, 4567], "umask": 0o027}
        c["process"]["cwd"] = "/tmp"
        c["process"]["env"].append("GREETING=hello there")
    p = env.run(["sh", "-c", "id -u; id -g; id -G; umask; pwd; echo \"$GREETING\"; touch f; stat -c %a f"], mutate=m)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "1234"
    assert lines[1] == "2345"
    assert sorted(lines[2].split()) == ["2345", "3456", "4567"]
    assert lines[3] == "0027"
    assert lines[4] == "/tmp"
    assert lines[5] == "hello there"
    assert lines[6] == "640"


def test_mounts_as_configured(env):
    host_dir = os.path.join(env.tmp, "shared")
    os.makedirs(host_dir)
    with open(os.path.join(host_dir, "hello.txt"), "w") as f:
        f.write("from the host\n")
    host_file = os.path.join(env.tmp, "single-file")
    with open(host_file, "w") as f:
        f.write("just a file\n")

    def m(c):
        c["mounts"] += [
            {"destination": "/data/ro", "type": "bind", "source": host_dir, "options": ["rbind", "ro", "nosuid"]},
            {"destination": "/data/rw", "type": "none", "source": host_dir, "options": ["bind"]},
            {"destination": "/etc/single", "type": "bind", "source": host_file, "options": ["ro"]},
            {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m", "mode=700", "noexec"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "nodev", "noexec"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["ro", "nosuid", "nodev", "noexec"]},
        ]
    script = (
        "cat /data/ro/hello.txt; "
        "touch /data/ro/nope 2>/dev/null && echo ro-writable || echo ro-refused; "
        "echo written > /data/rw/out.txt && echo rw-ok; "
        "cat /etc/single; "
        "stat -c %a /scratch; "
        "grep -E ' /(scratch|data/ro|dev/mqueue|sys) ' /proc/self/mountinfo"
    )
    p = env.run(["sh", "-c", script], mutate=m)
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "from the host" in out
    assert "ro-refused" in out
    assert "rw-ok" in out
    assert "just a file" in out
    assert "\n700\n" in out
    with open(os.path.join(host_dir, "out.txt")) as f:
        assert f.read() == "written\n"
    assert not os.path.exists(os.path.join(host_dir, "nope"))
    mi = {l.split()[4]: l for l in out.splitlines() if l.count(" - ") == 1}
    assert re.search(r"\bro\b", mi["/data/ro"].split(" - ")[0]) and "nosuid" in mi["/data/ro"]
    assert "noexec" in mi["/scratch"] and "tmpfs" in mi["/scratch"]
    assert "mqueue" in mi["/dev/mqueue"]
    assert "sysfs" in mi["/sys"] and " ro," in mi["/sys"] + ","


def test_readonly_root_and_default_devices(env):
    p = env.run(["sh", "-c",
                 "touch /x 2>/dev/null && echo writable || echo readonly; "
                 "stat -c '%n %t:%T %a' /dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty; "
                 "for l in /dev/fd /dev/stdin /dev/ptmx; do readlink $l; done; echo data > /dev/null && echo null-ok"])
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "readonly" in out
    for line in ["/dev/null 1:3 666", "/dev/zero 1:5 666", "/dev/full 1:7 666",
                 "/dev/random 1:8 666", "/dev/urandom 1:9 666", "/dev/tty 5:0 666"]:
        assert line in out
    assert "/proc/self/fd\n/proc/self/fd/0\npts/ptmx" in out
    assert "null-ok" in out


def test_linux_devices(env):
    def m(c):
        c["linux"]["devices"] = [
            {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o600, "uid": 7, "gid": 8},
            {"path": "/dev/sub/myfifo", "type": "p", "fileMode": 0o640},
        ]
    p = env.run(["stat", "-c", "%n %F %t:%T %a %u %g", "/dev/fuse", "/dev/sub/myfifo"], mutate=m)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "/dev/fuse character special file a:e5 600 7 8"
    assert lines[1].startswith("/dev/sub/myfifo fifo") and " 640 " in lines[1]


def test_host_dev_null_untouched(env):
    before = os.stat("/dev/null")
    def m(c):
        c["process"]["user"] = {"uid": 1000, "gid": 1000}
    p = env.run(["sh", "-c", "echo hi > /dev/null; echo ok"], mutate=m)
    assert p.returncode == 0 and p.stdout == "ok\n", p.stderr
    after = os.stat("/dev/null")
    assert (after.st_uid, after.st_gid, after.st_mode) == (before.st_uid, before.st_gid, before.st_mode)


def test_no_pivot(env):
    p = env.run(["sh", "-c", "cat /proc/self/mountinfo | wc -l; ls /"], extra=["--no-pivot"])
    assert p.returncode == 0, p.stderr
    assert "proc" in p.stdout.split()


def test_no_pivot_leaves_no_full_proc_to_mount_from(env):
    # (runc's default masked paths cover the container's own /proc, which then does not
    # count as full; the host's would.) With --no-pivot the host's mounts stay in the container's mount namespace under the
    # chroot. A full procfs among them would let a process in a new user namespace mount
    # a bare /proc (no masked paths) and write /proc/sysrq-trigger: Berth detaches them
    # first, as runc does (runc's "--no-pivot must not expose bare /proc").
    def m(c):
        c["process"]["capabilities"] = {k: ["CAP_SETFCAP"] for k in ("bounding", "effective", "permitted")}
        c["linux"]["maskedPaths"] = ["/proc/kcore", "/proc/keys", "/proc/timer_list"]
    p = env.run(["unshare", "-mrpf", "sh", "-c", "mount -t proc none /proc && echo mounted-bare-proc"],
                mutate=m, extra=["--no-pivot"])
    assert "mounted-bare-proc" not in p.stdout
    assert p.returncode != 0 and "ermission denied" in p.stderr, p.stderr


def test_joined_namespaces_are_shared(env):
    # A first container with its own network, uts and ipc namespaces...
    a = env.bundle(["sleep", "60"], name="a", mutate=lambda c: c.update(hostname="first-box"))
    ida = env.new_id("a")
    env.detach(a, ida)
    pid = env.state(ida)["pid"]
    host_net = os.readlink(f"/proc/{pid}/ns/net")
    host_ipc = os.readlink(f"/proc/{pid}/ns/ipc")

    # ...and a second that joins them by path, with its own pid and mount namespaces.
    def m(c):
        c["hostname"] = ""
        c["linux"]["namespaces"] = [
            {"type": "pid"}, {"type": "mount"},
            {"type": "network", "path": f"/proc/{pid}/ns/net"},
            {"type": "uts", "path": f"/proc/{pid}/ns/uts"},
            {"type": "ipc", "path": f"/proc/{pid}/ns/ipc"},
        ]
    p = env.run(["sh", "-c", "hostname; readlink /proc/self/ns/net; readlink /proc/self/ns/ipc; echo $$"], mutate=m, name="b")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines == ["first-box", host_net, host_ipc, "1"]


def user_namespace(c, uid, gid):
    """A user namespace of 65536 ids, the container's 0 at host ids uid and gid."""
    c["linux"]["namespaces"].append({"type": "user"})
    c["linux"]["uidMappings"] = [{"containerID": 0, "hostID": uid, "size": 65536}]
    c["linux"]["gidMappings"] = [{"containerID": 0, "hostID": gid, "size": 65536}]


def test_user_namespace_maps_ids(env):
    out_dir = os.path.join(env.tmp, "out")
    os.makedirs(out_dir)
    os.chmod(out_dir, 0o777)

    def m(c):
        user_namespace(c, 100000, 200000)
        # An existing directory: the image belongs to the host's root, which the
        # namespace's root cannot write to, so a new mount point could not be made.
        c["mounts"].append({"destination": "/home", "type": "bind", "source": out_dir, "options": ["bind"]})
    p = env.run(["sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map; id -u; touch /home/made-inside"], mutate=m)
    assert p.returncode == 0, p.stderr
    lines = [l.split() for l in p.stdout.splitlines()]
    assert lines[0] == ["0", "100000", "65536"]
    assert lines[1] == ["0", "200000", "65536"]
    assert lines[2] == ["0"]
    st = os.stat(os.path.join(out_dir, "made-inside"))
    assert (st.st_uid, st.st_gid) == (100000, 200000)


def test_cwd_only_the_user_may_enter(env):
    # A volume chowned to the container's user, mode 700, as cwd: the namespace's root has
    # no DAC override on it (its owner 1000 is mapped, but root may not bypass the mode of
    # an inode whose group the namespace does not map), so the cwd must be entered as the
    # user, after the switch, as runc does.
    vol = os.path.join(env.tmp, "vol")
    os.makedirs(vol)
    os.chown(vol, 101000, 0)
    os.chmod(vol, 0o700)

    def m(c):
        user_namespace(c, 100000, 100000)
        c["mounts"].append({"destination": "/home", "type": "bind", "source": vol, "options": ["bind"]})
        c["process"]["user"] = {"uid": 1000, "gid": 1000}
        c["process"]["cwd"] = "/home"
    p = env.run(["sh", "-c", "pwd; id -u; touch here"], mutate=m)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["/home", "1000"]
    assert os.stat(os.path.join(vol, "here")).st_uid == 101000


def test_time_namespace_offsets(env):
    def m(c):
        c["linux"]["namespaces"].append({"type": "time"})
        c["linux"]["timeOffsets"] = {"boottime": {"secs": 86400 * 1000, "nanosecs": 0}}
    p = env.run(["cat", "/proc/uptime"], mutate=m)
    assert p.returncode == 0, p.stderr
    inside = float(p.stdout.split()[0])
    with open("/proc/uptime") as f:
        host = float(f.read().split()[0])
    assert 86400 * 1000 - 1 <= inside - host < 86400 * 1000 + 60


def test_preserve_fds_and_no_leaks(env):
    r, w = os.pipe()
    extra = os.open("/dev/null", os.O_RDONLY)  # an fd that must not reach the container
    try:
        with fds_at({3: r}):
            b = env.bundle(["sh", "-c", "ls /proc/self/fd | sort -n | tr '\\n' ' '; readlink /proc/self/fd/3"])
            cid = env.new_id()
            p = env.berth("run", "--preserve-fds", "1", "--bundle", b, cid, check=False, pass_fds=(3, extra))
    finally:
        for fd in (r, w, extra):
            os.close(fd)
    assert p.returncode == 0, p.stderr
    fds, link = p.stdout.rsplit(" ", 1)[0], p.stdout.split()[-1]
    # 0, 1, 2, the preserved 3, and ls's own directory fd.
    assert fds.split()[:4] == ["0", "1", "2", "3"]
    assert len(fds.split()) == 5
    assert link.startswith("pipe:")


def test_rootfs_propagation_private(env):
    def m(c):
        c["linux"]["rootfsPropagation"] = "private"
    p = env.run(["grep", "-E", "^[0-9]+ [0-9]+ [^ ]+ [^ ]+ / ", "/proc/self/mountinfo"], mutate=m)
    assert p.returncode == 0, p.stderr
    assert "shared:" not in p.stdout and "master:" not in p.stdout



def test_socket_activation_fds_pass(env):
    # LISTEN_FDS/LISTEN_PID meant for Berth: fd 3 reaches the container, which sees
    # LISTEN_PID=1. A shell wrapper sets LISTEN_PID to its own pid before exec'ing Berth.
    from conftest import BERTH
    r, w = os.pipe()
    try:
        with fds_at({3: r}):
            b = env.bundle(["sh", "-c", "echo $LISTEN_FDS $LISTEN_PID; readlink /proc/self/fd/3"])
            cid = env.new_id()
            p = subprocess.run(["sh", "-c", f'LISTEN_PID=$$ LISTEN_FDS=1 exec {BERTH} --root {env.root} run --bundle {b} {cid}'],
                               capture_output=True, text=True, pass_fds=(3,), timeout=30)
    finally:
        os.close(r)
        os.close(w)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.split()
    assert lines[:2] == ["1", "1"] and lines[2].startswith("pipe:")


def test_tmpcopyup_and_readonly_tmpfs(env):
    # What the tmpfs covers (here a bind of a host directory) is copied into it, with
    # owners and modes, as runc's "tmpcopyup" (Podman puts it on every --tmpfs).
    src = os.path.join(env.tmp, "covered")
    os.makedirs(os.path.join(src, "sub", "deeper"))
    os.chmod(os.path.join(src, "sub"), 0o777)
    with open(os.path.join(src, "sub", "deeper", "file"), "w") as f:
        f.write("deep content\n")
    suid = os.path.join(src, "suid")
    with open(suid, "w") as f:
        f.write("#!/bin/sh\n")
    os.chown(suid, 1234, 5678)
    os.chmod(suid, 0o4750)
    # Symlinks are copied as links, never followed: one to a host file that does not
    # exist in the container, one to / (a followed copy would copy the whole root).
    secret = os.path.join(env.tmp, "host-secret")
    with open(secret, "w") as f:
        f.write("host only\n")
    os.symlink(secret, os.path.join(src, "escape"))
    os.symlink("/", os.path.join(src, "root-link"))
    os.mkfifo(os.path.join(src, "fifo"), 0o640)

    def m(c):
        c["mounts"] += [
            {"destination": "/covered", "type": "bind", "source": src, "options": ["rbind", "ro"]},
            {"destination": "/covered", "type": "tmpfs", "source": "tmpfs", "options": ["tmpcopyup"]},
            {"destination": "/frozen", "type": "tmpfs", "source": "tmpfs", "options": ["ro", "tmpcopyup", "size=1m"]},
            {"destination": "/frozen/inner", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]},
        ]
    script = (
        "cd /covered; stat -c '%n %a %u %g %F' sub suid fifo; cat sub/deeper/file; "
        "readlink escape; readlink root-link; cat escape 2>/dev/null || echo escape-dangling; "
        "echo new > /covered/sub/new && echo tmpfs-writable; "
        "for d in /covered /frozen /frozen/inner; do grep \" $d \" /proc/self/mounts | tail -n1 | cut -d' ' -f2-4 | cut -d, -f1; done; "
        "touch /frozen/x 2>/dev/null || echo frozen-ro"
    )
    p = env.run(["sh", "-c", script], mutate=m)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [
        "sub 777 0 0 directory", "suid 4750 1234 5678 regular file", "fifo 640 0 0 fifo",
        "deep content", secret, "/", "escape-dangling", "tmpfs-writable",
        "/covered tmpfs rw", "/frozen tmpfs ro", "/frozen/inner tmpfs rw", "frozen-ro",
    ]
    # The host's directory is untouched.
    assert sorted(os.listdir(src)) == ["escape", "fifo", "root-link", "sub", "suid"]
    assert not os.path.exists(os.path.join(src, "sub", "new"))


def test_readonly_dev(env):
    # A read-only /dev: mounted read-write first, so that devices, /dev/pts and the
    # console can be made in it, then turned read-only (runc's "ro /dev mount").
    def m(c):
        for mount in c["mounts"]:
            if mount["destination"] == "/dev":
                mount["options"].append("ro")
    p = env.run(["sh", "-c", "grep '^tmpfs /dev ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1; "
                 "echo ok > /dev/null && echo null-works; touch /dev/x 2>/dev/null || echo dev-ro; ls /dev/pts/ptmx"],
                mutate=m)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["ro", "null-works", "dev-ro", "/dev/pts/ptmx"]


def test_joined_mount_namespace_gets_the_root_and_mounts(env):
    # As runc: with a mount namespace joined by path, the root and the mounts are set up
    # in that namespace (here a private copy of the host's, held by a sleeping process).
    holder = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sleep", "60"])
    try:
        assert wait_for(lambda: os.readlink(f"/proc/{holder.pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt"), 5)

        def m(c):
            c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "mount"]
            c["linux"]["namespaces"].append({"type": "mount", "path": f"/proc/{holder.pid}/ns/mnt"})
            c["mounts"].append({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]})
        p = env.run(["sh", "-c", "grep -c ' /scratch tmpfs ' /proc/mounts; cat /etc/hostname 2>/dev/null; ls /bin/busybox"],
                    mutate=m)
        assert p.returncode == 0, p.stderr
        assert p.stdout.split()[0] == "1" and p.stdout.split()[-1] == "/bin/busybox", p.stdout
        # The host's mount namespace saw none of it.
        assert " /scratch " not in open("/proc/self/mounts").read()
    finally:
        holder.kill()
        holder.wait()


def test_no_mount_namespace_chroots_into_the_rootfs(env):
    # runc accepts a config without a mount namespace and chroots into root.path. Its
    # mounts would land in the host's mount namespace (runc makes them there): refused by
    # name, and nothing is left behind.
    marker = os.path.join(env.tmp, "host-marker")
    open(marker, "w").write("on the host\n")

    def m(c):
        c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] not in ("mount", "cgroup")]
        c["mounts"] = []
    p = env.run(["/bin/sh", "-c", f"cat {marker} 2>/dev/null || echo not here; ls /bin/busybox"], mutate=m)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["not", "here", "/bin/busybox"], p.stdout

    def with_mounts(c):
        c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] not in ("mount", "cgroup")]
    before = open("/proc/self/mountinfo").read().count("\n")
    p = env.run(["true"], mutate=with_mounts)
    assert p.returncode == 1
    assert p.stderr.startswith("config.json: mounts: without a mount namespace"), p.stderr
    assert open("/proc/self/mountinfo").read().count("\n") == before


def test_rshared_volume_propagates_mounts_back_to_the_host(env):
    # Kubernetes' Bidirectional volumes: containerd sets rootfsPropagation "rshared" and
    # binds the (shared) host directory with "rbind,rshared"; a mount made inside must
    # appear on the host, as with runc. Nothing Berth mounts itself may reach the host.
    vol = os.path.join(env.tmp, "bidirectional")
    os.makedirs(os.path.join(vol, "sub"))
    subprocess.run(["mount", "--bind", vol, vol], check=True)
    try:
        subprocess.run(["mount", "--make-shared", vol], check=True)
        before = open("/proc/self/mountinfo").read().count("\n")

        def m(c):
            c["linux"]["rootfsPropagation"] = "rshared"
            c["process"]["capabilities"] = {k: ["CAP_SYS_ADMIN"] for k in ("bounding", "effective", "permitted")}
            c["mounts"].append({"destination": "/vol", "type": "bind", "source": vol, "options": ["rbind", "rshared"]})
        p = env.run(["sh", "-c", "mount -t tmpfs -o size=1m made-inside /vol/sub && echo inside > /vol/sub/f"], mutate=m)
        assert p.returncode == 0, p.stderr
        # The tmpfs made in the container is on the host, with the file written in it.
        sub = os.path.join(vol, "sub")
        assert any(l.split()[4] == sub for l in open("/proc/self/mountinfo")), "no propagation to the host"
        assert open(os.path.join(sub, "f")).read() == "inside\n"
        subprocess.run(["umount", sub], check=True)
        # Only that one mount came back: nothing of the container's own setup.
        assert open("/proc/self/mountinfo").read().count("\n") == before
    finally:
        subprocess.run(["umount", "-R", vol], capture_output=True)


def test_loopback_is_up_in_a_new_network_namespace(env):
    # As runc: Podman pods with --network none reach each other over 127.0.0.1.
    # The client retries until the listener is up (a loaded machine may start it late).
    p = env.run(["sh", "-c", "ip -o link show lo; nc -l -p 7000 -w 5 & "
                 "for i in 1 2 3 4 5 6 7 8 9 10; do echo hi | nc -w 1 127.0.0.1 7000 && break; sleep 0.3; done"])
    assert p.returncode == 0, p.stderr
    assert ",UP" in p.stdout.splitlines()[0], p.stdout
    assert "hi" in p.stdout, p.stdout


def test_a_tmpfs_on_a_missing_directory_is_world_writable(env):
    # runc copies the covered directory's mode only when it was in the image; a tmpfs on
    # a directory made for it keeps tmpfs' 1777 (Docker --tmpfs /scratch for a non-root
    # user). /etc exists in the image with 755.
    name = "scratch-" + env.prefix
    def m(c):
        c["root"]["readonly"] = False
        c["mounts"] += [{"destination": "/" + name, "type": "tmpfs", "source": "tmpfs"},
                        {"destination": "/etc", "type": "tmpfs", "source": "tmpfs"}]
        c["process"]["user"] = {"uid": 1000, "gid": 1000}
    try:
        p = env.run(["sh", "-c", f"stat -c '%a' /{name} /etc; touch /{name}/f && echo wrote"], mutate=m)
    finally:
        os.rmdir(os.path.join(env.rootfs, name))
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["1777", "755", "wrote"], p.stdout


def test_an_rlimit_error_names_the_limit(env):
    # Above fs.nr_open even CAP_SYS_RESOURCE cannot set it: refused on every host.
    def m(c):
        c["process"]["rlimits"] = [{"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
                                   {"type": "RLIMIT_NOFILE", "soft": 1 << 40, "hard": 1 << 40}]
    p = env.run(["true"], mutate=m)
    assert p.returncode == 1
    assert "process.rlimits[1] (RLIMIT_NOFILE): operation not permitted" in p.stderr, p.stderr


def test_a_bind_source_that_is_an_absolute_symlink_with_a_user_namespace(env):
    # runc resolves a bind source on the host, symlinks included; in a user namespace
    # Berth opens the sources for init, and an absolute link must not lead out of init's
    # mount namespace (mount(2) then refuses it).
    real = os.path.join(env.tmp, "real")
    os.makedirs(real)
    open(os.path.join(real, "f"), "w").write("through the link\n")
    link = os.path.join(env.tmp, "link")
    os.symlink(real, link)

    def m(c):
        user_namespace(c, 100000, 100000)
        c["mounts"].append({"destination": "/home", "type": "bind", "source": link, "options": ["rbind"]})
    p = env.run(["cat", "/home/f"], mutate=m)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "through the link\n"
