"""Linux security modules: process.apparmorProfile and exec --apparmor, process.selinuxLabel,
linux.mountLabel and exec --process-label, seen from inside real containers.

AppArmor runs where the kernel has it enabled and apparmor_parser can load a profile: the
VM (Debian's kernel enables it; Scripts/vm-guest mounts securityfs). This host's kernel
runs no security module, and there a profile fails as runc's fails (before anything of
the container is made). SELinux runs in the VM booted with it (Scripts/vm --selinux:
permissive, Debian's policy plus refpolicy's container module).
"""
import json
import os
import subprocess
import time

import pytest

from conftest import APPARMOR, BERTH, SELINUX
from test_security import keyring_probe

SECRET = "/berth-apparmor-secret"


needs_apparmor = pytest.mark.skipif(not APPARMOR, reason="needs AppArmor enabled, securityfs and apparmor_parser (the VM)")
no_apparmor = pytest.mark.skipif(os.path.exists("/sys/module/apparmor/parameters/enabled"),
                                 reason="a host whose kernel has no AppArmor")


@pytest.fixture
def profile(tmp_path):
    """A profile that allows everything but reading SECRET, loaded for the test only."""
    name = "berth-test-" + tmp_path.name[-12:].replace("_", "-")
    src = tmp_path / "profile"
    src.write_text(
        "profile %s flags=(attach_disconnected,mediate_deleted) {\n"
        "  file,\n  capability,\n  network,\n  signal,\n  ptrace,\n  unix,\n  mount,\n  umount,\n"
        "  pivot_root,\n  deny %s r,\n}\n" % (name, SECRET))
    subprocess.run(["apparmor_parser", "-r", "-W", str(src)], check=True, capture_output=True)
    yield name
    subprocess.run(["apparmor_parser", "-R", str(src)], capture_output=True)


@pytest.fixture
def secret_rootfs(env, tmp_path):
    """The suite's rootfs with one more file, readable by anyone unless a profile denies it."""
    root = tmp_path / "rootfs"
    subprocess.run(["cp", "-a", env.rootfs, str(root)], check=True)
    (root / SECRET.lstrip("/")).write_text("secret\n")
    os.chmod(root / SECRET.lstrip("/"), 0o644)
    return str(root)


def with_profile(name, rootfs, caps=()):
    def mutate(c):
        c["root"]["path"] = rootfs
        if name is not None:
            c["process"]["apparmorProfile"] = name
        if caps:
            c["process"]["capabilities"] = {k: list(caps) for k in ("bounding", "effective", "permitted")}
    return mutate


@needs_apparmor
def test_the_profile_is_in_force_from_the_first_instruction(env, profile, secret_rootfs):
    p = env.run(["sh", "-c", f"cat /proc/self/attr/current; cat {SECRET}; echo rc=$?"],
                mutate=with_profile(profile, secret_rootfs))
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == f"{profile} (enforce)", p.stdout
    assert "secret" not in p.stdout and "rc=1" in p.stdout, p.stdout
    assert "Permission denied" in p.stderr
    # unconfined, as Docker writes for --privileged
    p = env.run(["cat", "/proc/self/attr/current", SECRET], mutate=with_profile("unconfined", secret_rootfs))
    assert p.returncode == 0 and p.stdout.splitlines() == ["unconfined", "secret"], (p.stdout, p.stderr)


@needs_apparmor
def test_exec_takes_the_containers_profile_or_its_own(env, profile, secret_rootfs):
    b = env.bundle(["sleep", "300"], mutate=with_profile(profile, secret_rootfs))
    cid = env.new_id()
    env.detach(b, cid)
    p = env.berth("exec", cid, "cat", "/proc/self/attr/current")
    assert p.stdout.strip() == f"{profile} (enforce)"
    p = env.berth("exec", cid, "cat", SECRET, check=False)
    assert p.returncode != 0 and "secret" not in p.stdout
    p = env.berth("exec", "--apparmor", "unconfined", cid, "cat", "/proc/self/attr/current", SECRET)
    assert p.stdout.splitlines() == ["unconfined", "secret"]


@needs_apparmor
def test_exec_into_a_container_that_covered_its_proc_stays_confined(env, profile, secret_rootfs):
    """CVE-2019-16884 class: the container (CAP_SYS_ADMIN, unconfined) mounts a tmpfs over
    its /proc holding plain files where the attr files were. Writing the exec's profile
    through the container's /proc would land in that tmpfs and leave the exec'd program
    unconfined. It must read the secret neither way: confined, or not run at all."""
    fake = ("mount -t tmpfs none /proc && mkdir -p /proc/self/attr/apparmor && "
            ": > /proc/self/attr/apparmor/exec && : > /proc/self/attr/exec && echo ready && sleep 300")
    b = env.bundle(["sh", "-c", fake], mutate=with_profile(None, secret_rootfs, caps=("CAP_SYS_ADMIN",)))
    cid = env.new_id()
    env.detach(b, cid)
    for _ in range(100):
        if "ready" in env.output(cid):
            break
        time.sleep(0.1)
    assert "ready" in env.output(cid), open(os.path.join(env.tmp, cid + ".err")).read()
    p = env.berth("exec", "--apparmor", profile, cid, "cat", SECRET, check=False)
    assert "secret" not in p.stdout, "the exec'd program ran unconfined"
    assert p.returncode != 0


@needs_apparmor
def test_a_profile_that_is_not_loaded_fails_and_leaves_nothing(env, secret_rootfs):
    p = env.run(["true"], mutate=with_profile("berth-no-such-profile", secret_rootfs))
    assert p.returncode == 1
    assert 'unable to apply apparmor profile "berth-no-such-profile" (process.apparmorProfile)' in p.stderr, p.stderr
    assert "no such file or directory" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


@no_apparmor
def test_a_profile_on_a_host_without_apparmor_is_refused_by_name(env):
    def mutate(c):
        c["process"]["apparmorProfile"] = "unconfined"
    b = env.bundle(["true"], mutate=mutate)
    cid = env.new_id()
    p = env.berth("run", "--bundle", b, cid, check=False)
    assert p.returncode == 1
    assert p.stderr.startswith("config.json: process.apparmorProfile: AppArmor is not enabled on this host"), p.stderr
    assert not os.path.exists(os.path.join(env.root, cid))
    # exec --apparmor likewise, naming the flag
    b = env.bundle(["sleep", "300"], name="sleeper")
    cid = env.new_id()
    env.detach(b, cid)
    p = env.berth("exec", "--apparmor", "unconfined", cid, "true", check=False)
    assert p.returncode != 0 and p.stderr.startswith("--apparmor: AppArmor is not enabled on this host"), p.stderr


def test_features_report_apparmor_as_runc_does():
    out = subprocess.run([BERTH, "features"], capture_output=True, text=True, check=True).stdout
    assert json.loads(out)["linux"]["apparmor"] == {"enabled": True}


# ---- SELinux ---------------------------------------------------------------------------

needs_selinux = pytest.mark.skipif(not SELINUX, reason="needs SELinux with a policy loaded (Scripts/vm --selinux)")
no_selinux = pytest.mark.skipif(os.path.exists("/sys/fs/selinux/enforce"), reason="a host without SELinux")
LABEL = "system_u:system_r:container_t:s0:c1,c2"
OTHER = "system_u:system_r:container_t:s0:c3,c4"
MOUNT_LABEL = "system_u:object_r:container_file_t:s0:c1,c2"


def labelled(c):
    c["process"]["selinuxLabel"] = LABEL
    c["linux"]["mountLabel"] = MOUNT_LABEL
    c["mounts"].append({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
                        "options": ["nosuid", "noexec", "nodev"]})
    c["linux"]["maskedPaths"] = ["/proc/acpi"]


def mount_options(mounts, dest):
    for line in mounts.splitlines():
        f = line.split()
        if len(f) > 3 and f[1] == dest:
            return f[3]
    raise AssertionError(f"{dest} is not mounted: {mounts}")


@needs_selinux
def test_the_process_label_and_the_mount_label_are_the_configs(env):
    p = env.run(["sh", "-c", "cat /proc/self/attr/current; echo; cat /proc/self/mounts"], mutate=labelled)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[0].strip("\0") == LABEL, p.stdout
    for dest in ("/tmp", "/dev", "/proc/acpi"):
        assert MOUNT_LABEL in mount_options(p.stdout, dest), (dest, p.stdout)


@needs_selinux
def test_mqueue_keyring_and_exec_labels(env):
    root = keyring_probe(env)
    def m(c):
        labelled(c)
        c["root"]["path"] = root
    b = env.bundle(["sleep", "300"], mutate=m)
    cid = env.new_id()
    env.detach(b, cid)
    pid = env.state(cid)["pid"]
    # mqueue takes no context= option: its root carries the label instead, as runc does.
    xattr = os.getxattr(f"/proc/{pid}/root/dev/mqueue", "security.selinux").rstrip(b"\0").decode()
    assert xattr == MOUNT_LABEL
    # The session keyring init made carries the process label (runc's SetKeyLabel).
    p = env.berth("exec", cid, "/session_keyring")
    assert p.stdout.split()[2] == LABEL, p.stdout
    p = env.berth("exec", cid, "cat", "/proc/self/attr/current")
    assert p.stdout.strip("\0\n") == LABEL
    p = env.berth("exec", "--process-label", OTHER, cid, "cat", "/proc/self/attr/current")
    assert p.stdout.strip("\0\n") == OTHER


@no_selinux
def test_labels_on_a_host_without_selinux_are_refused_in_runcs_words(env):
    def label(c):
        c["process"]["selinuxLabel"] = LABEL
    p = env.run(["true"], mutate=label)
    assert p.returncode == 1
    assert p.stderr.strip() == ("config.json: process.selinuxLabel: selinux label is specified in config, "
                                "but selinux is disabled or not supported"), p.stderr

    # runc passes context= to the kernel, which refuses the tmpfs; refused by name here.
    def mount_label(c):
        c["linux"]["mountLabel"] = MOUNT_LABEL
    p = env.run(["true"], mutate=mount_label, name="m")
    assert p.returncode == 1
    assert p.stderr.startswith("config.json: linux.mountLabel: SELinux is not enabled on this host: mounts[1]"), p.stderr
    b = env.bundle(["sleep", "300"], name="sleeper")
    cid = env.new_id()
    env.detach(b, cid)
    p = env.berth("exec", "--process-label", LABEL, cid, "true", check=False)
    assert p.returncode != 0 and p.stderr.startswith("--process-label: selinux label is specified"), p.stderr


def test_features_report_selinux_as_runc_does():
    out = subprocess.run([BERTH, "features"], capture_output=True, text=True, check=True).stdout
    assert json.loads(out)["linux"]["selinux"] == {"enabled": True}
