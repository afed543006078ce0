"""The command line as runc's callers use it: flags, errors, log file, spec, features."""
import json
import os
import shutil
import subprocess

import pytest

from conftest import BERTH, CGROUP_V1, v1_hierarchies


def test_version():
    p = subprocess.run([BERTH, "--version"], capture_output=True, text=True)
    lines = p.stdout.splitlines()
    assert p.returncode == 0
    assert lines[0].startswith("berth version ")
    assert lines[1].startswith("commit: ")
    assert lines[2] == "spec: 1.3.0"
    assert subprocess.run([BERTH, "-v"], capture_output=True, text=True).stdout == p.stdout


def test_go_flag_dialect(env):
    b = env.bundle(["sh", "-c", "exit 3"])
    # Single-dash long flags, --flag=value, and --flag=false booleans.
    p = env.berth("run", f"-bundle={b}", "-detach=false", "-no-subreaper", env.new_id(), check=False)
    assert p.returncode == 3
    p = env.berth("--root=" + env.root, "run", "-b", b, env.new_id(), check=False, root=False)
    assert p.returncode == 3


def test_unknown_flag_and_missing_args(env):
    p = env.berth("run", "--no-such-flag", "x", check=False)
    assert p.returncode == 1 and "flag provided but not defined: -no-such-flag" in p.stderr
    p = env.berth("start", check=False)
    assert p.returncode == 1 and "requires exactly 1 argument" in p.stderr


def test_invalid_ids(env):
    for bad in ["a/b", "..", ".", "white space", ""]:
        p = env.berth("state", bad, check=False)
        assert p.returncode == 1 and "invalid container ID format" in p.stderr


def test_kill_signal_forms(env):
    b = env.bundle(["sleep", "60"])
    for form in ["9", "KILL", "SIGKILL", "sigkill", "kill"]:
        cid = env.new_id()
        env.create(b, cid)
        env.berth("kill", cid, form)
        p = env.berth("state", cid)
        assert json.loads(p.stdout)["status"] in ("created", "stopped")
        env.berth("delete", "-f", cid)
    p = env.berth("kill", "whatever", "SIGNOPE", check=False)
    assert p.returncode == 1


def test_log_file_created_and_json_error_line(env):
    log = os.path.join(env.tmp, "log.json")
    # Created even when nothing goes wrong.
    env.berth("--log", log, "--log-format", "json", "list")
    assert os.path.exists(log) and open(log).read() == ""
    # One failed call writes exactly one error line.
    p = env.berth("--log", log, "--log-format", "json", "state", "missing", check=False)
    assert p.returncode == 1
    lines = open(log).read().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["level"] == "error"
    assert "container does not exist" in entry["msg"]
    assert entry["time"].endswith("Z")
    assert "container does not exist" in p.stderr


def test_text_log_format(env):
    log = os.path.join(env.tmp, "log.txt")
    env.berth("--log", log, "state", "missing", check=False)
    text = open(log).read()
    assert 'level=error msg="container does not exist"' in text


def bad_config(env, mutate):
    b = env.bundle(["true"], mutate=mutate)
    cid = env.new_id()
    p = env.create(b, cid, check=False)
    assert p.returncode == 1
    assert not os.path.exists(os.path.join(env.root, cid))
    assert len(p.stderr.strip().splitlines()) == 1
    return p.stderr.strip()


def test_bad_configs_name_the_field(env):
    def ns(c):
        c["linux"]["namespaces"][2]["type"] = "pidd"
    assert bad_config(env, ns) == 'config.json: linux.namespaces[2].type: unknown namespace type "pidd"'

    def uid(c):
        c["process"]["user"]["uid"] = -1
    assert bad_config(env, uid) == "config.json: process.user.uid: -1 is not an unsigned 32-bit integer"

    def mtype(c):
        c["mounts"][1]["type"] = "nosuchfs"
    assert "config.json: mounts[1].type: unknown mount type \"nosuchfs\"" in bad_config(env, mtype)

    def rel(c):
        c["process"]["cwd"] = "relative"
    assert "process.cwd: must be an absolute path" in bad_config(env, rel)

    def rlimit(c):
        c["process"]["rlimits"] = [{"type": "RLIMIT_NOPE", "soft": 1, "hard": 1}]
    assert bad_config(env, rlimit) == 'config.json: process.rlimits[0].type: unknown rlimit "RLIMIT_NOPE"'

    def sysctl(c):
        c["linux"]["sysctl"] = {"kernel.pid_max": "1000"}
    assert bad_config(env, sysctl) == "config.json: linux.sysctl.kernel.pid_max: not isolated by any namespace: it would change the host"

    def network(c):
        c["linux"]["resources"] = {"network": {"classID": 1}}
    if CGROUP_V1:
        if "net_cls" not in ",".join(v1_hierarchies()).split(","):
            assert bad_config(env, network) == "config.json: linux.resources.network.classID: the cgroup v1 net_cls hierarchy is not mounted on this host"
    else:
        assert bad_config(env, network) == "config.json: linux.resources.network: only exists on cgroup v1; berth manages cgroup v2"

    # runc refuses a number among the arguments too ("cannot unmarshal number ... of type
    # string"), and so does crun 1.8; nothing is converted.
    def argnum(c):
        c["process"]["args"] = ["/bin/echo", 1]
    assert bad_config(env, argnum) == "config.json: process.args[1]: expected a string, found a number"

    def dup(c):
        c["linux"]["namespaces"].append({"type": "pid"})
    assert "appears twice" in bad_config(env, dup)

    def noroot(c):
        c["root"]["path"] = "/nonexistent/rootfs"
    assert "config.json: root.path: /nonexistent/rootfs" in bad_config(env, noroot)

    def bindsrc(c):
        c["mounts"].append({"destination": "/x", "type": "bind", "source": "/no/such/dir"})
    assert "mounts[4].source: /no/such/dir: no such file or directory" in bad_config(env, bindsrc)

    def nsjoin(c):
        c["linux"]["namespaces"][1] = {"type": "network", "path": "/proc/999999999/ns/net"}
    assert "linux.namespaces[1].path: /proc/999999999/ns/net: no such file or directory" in bad_config(env, nsjoin)

    def nousermaps(c):
        c["linux"]["namespaces"].append({"type": "user"})
    assert "linux.uidMappings: a new user namespace needs uid mappings" in bad_config(env, nousermaps)


def test_malformed_json(env):
    b = os.path.join(env.tmp, "broken")
    os.makedirs(b)
    with open(os.path.join(b, "config.json"), "w") as f:
        f.write('{"ociVersion": "1.0.0",\n  "process": {"args": ["x"],\n')
    cid = env.new_id()
    p = env.create(b, cid, check=False)
    assert p.returncode == 1
    assert p.stderr.strip() == "config.json: invalid JSON: line 3 column 1: unexpected end of input in an object"
    assert not os.path.exists(os.path.join(env.root, cid))


def test_missing_bundle_and_config(env):
    cid = env.new_id()
    p = env.create(os.path.join(env.tmp, "nope"), cid, check=False)
    assert p.returncode == 1 and "bundle" in p.stderr and "nope" in p.stderr
    empty = os.path.join(env.tmp, "empty")
    os.makedirs(empty)
    p = env.create(empty, cid, check=False)
    assert p.returncode == 1 and "config.json" in p.stderr and "no such file or directory" in p.stderr


def test_console_socket_refused_clearly(env):
    b = env.bundle(["true"])
    p = env.create(b, env.new_id(), "--console-socket", "/tmp/x.sock", check=False)
    assert p.returncode == 1 and "cannot use console socket if runc will not detach or allocate tty" in p.stderr


def test_checkpoint_help_is_unsupported(env):
    p = env.berth("checkpoint", "--help", check=False)
    assert p.returncode != 0


def test_spec_writes_a_working_config(env, rootfs):
    b = os.path.join(env.tmp, "specbundle")
    os.makedirs(b)
    env.berth("spec", "--bundle", b, root=False)
    with open(os.path.join(b, "config.json")) as f:
        cfg = json.load(f)
    assert cfg["ociVersion"] == "1.3.0"
    p = env.berth("spec", "--bundle", b, check=False, root=False)
    assert p.returncode == 1 and "exists" in p.stderr
    assert cfg["process"]["terminal"] is True
    cfg["process"]["terminal"] = False  # no pty here: plain stdout
    cfg["root"]["path"] = rootfs
    # runc's "cgroup" mount: cgroup2 on a v2 host, the v1 hierarchies on a v1 one.
    cfg["process"]["args"] = ["sh", "-c", "hostname; test -e /sys/fs/cgroup/cgroup.controllers -o -e /sys/fs/cgroup/pids/tasks"
                              " && echo cg; grep CapAmb /proc/self/status"]
    with open(os.path.join(b, "config.json"), "w") as f:
        json.dump(cfg, f)
    p = env.berth("run", "--bundle", b, env.new_id(), check=False)
    assert p.returncode == 0, p.stderr
    # runc's ambient capabilities cannot be raised (not inheritable): skipped, as runc does.
    assert p.stdout == "berth\ncg\nCapAmb:\t0000000000000000\n"


def test_spec_writes_what_runc_spec_writes(env):
    # Test suites and tools build every bundle from `runc spec`: the same defaults matter.
    runc = shutil.which("runc")
    if not runc:
        pytest.skip("runc is not installed")
    specs = {}
    for name, binary in (("berth", BERTH), ("runc", runc)):
        d = os.path.join(env.tmp, name)
        os.makedirs(d)
        subprocess.run([binary, "spec", "--bundle", d], check=True)
        specs[name] = json.load(open(os.path.join(d, "config.json")))
    b, r = specs["berth"], specs["runc"]
    for key in ("terminal", "args", "user", "env", "cwd", "capabilities", "rlimits", "noNewPrivileges"):
        assert b["process"][key] == r["process"][key], key
    for key in ("namespaces", "maskedPaths", "readonlyPaths", "resources"):
        assert b["linux"][key] == r["linux"][key], key
    assert b["root"] == r["root"]
    assert [(m["destination"], m["type"]) for m in b["mounts"]] == [(m["destination"], m["type"]) for m in r["mounts"]]


def test_spec_rootless_is_valid(env, rootfs):
    b = os.path.join(env.tmp, "rootless")
    os.makedirs(b)
    env.berth("spec", "--rootless", "--bundle", b, root=False)
    cfg = json.load(open(os.path.join(b, "config.json")))
    assert {"type": "user"} in cfg["linux"]["namespaces"]
    assert cfg["linux"]["uidMappings"][0]["hostID"] == os.geteuid()
    # What `runc spec --rootless` writes, but for the hostname and the spec version.
    if not shutil.which("runc"):
        pytest.skip("runc is not installed")
    r = os.path.join(env.tmp, "runc-rootless")
    os.makedirs(r)
    subprocess.run(["runc", "spec", "--rootless", "--bundle", r], check=True)
    ref = json.load(open(os.path.join(r, "config.json")))
    for c in (cfg, ref):
        c.pop("hostname"), c.pop("ociVersion")
    assert cfg == ref


def test_features(env):
    p = env.berth("features", root=False)
    f = json.loads(p.stdout)
    assert f["ociVersionMin"] == "1.0.0" and f["ociVersionMax"] == "1.3.0"
    assert f["linux"]["mountExtensions"]["idmap"]["enabled"] is False
    # Each driver has its tests: test_cgroup_v1.py (host), test_cgroup.py (VM), test_systemd.py.
    assert {k: f["linux"]["cgroup"][k] for k in ("v1", "v2", "systemd", "systemdUser")} == \
        {"v1": True, "v2": True, "systemd": True, "systemdUser": True}
    assert set(f["linux"]["namespaces"]) == {"pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time"}
    assert "rbind" in f["mountOptions"] and "nosymfollow" in f["mountOptions"]
    assert p.stdout.startswith('{\n    "ociVersionMin"')


def test_debug_lines_go_to_the_log(env):
    log = os.path.join(env.tmp, "debug.json")
    b = env.bundle(["true"])
    p = env.berth("--debug", "--log", log, "--log-format", "json", "run", "--bundle", b, env.new_id())
    entries = [json.loads(l) for l in open(log).read().splitlines()]
    assert entries and all(e["level"] == "debug" for e in entries)
    assert any("waiting before execve" in e["msg"] for e in entries)
    assert p.stderr == ""


def test_a_state_root_shared_with_runc(env):
    # Docker 20.10 keeps every runtime's state in one root: runc's containers there are
    # named as runc's, never offered to `berth delete --force`, and never touched.
    assert shutil.which("runc"), "needs runc (Scripts/test installs it)"
    b = env.bundle(["sleep", "60"])
    cid = env.new_id("runc")
    subprocess.run(["runc", "--root", env.root, "run", "-d", "--bundle", b, cid], check=True, timeout=30,
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        pid = json.loads(subprocess.run(["runc", "--root", env.root, "state", cid], capture_output=True,
                                        text=True, check=True).stdout)["pid"]
        p = env.berth("list")
        assert cid not in p.stdout and "belongs to another runtime" in p.stderr and "delete --force" not in p.stderr, p.stderr
        p = env.berth("delete", "--force", cid, check=False)
        assert p.returncode == 1 and "belongs to another runtime" in p.stderr, p.stderr
        assert os.path.exists(f"/proc/{pid}") and os.path.isdir(os.path.join(env.root, cid))
    finally:
        subprocess.run(["runc", "--root", env.root, "delete", "--force", cid], timeout=30, capture_output=True)
