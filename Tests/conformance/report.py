"""Summarises runc's bats suite run against Berth (and runc), and checks Berth's failures
against the expected-failure list. Called by Scripts/conformance.

usage: report.py WORKDIR EXPECTED WHERE RUNTIME... -- FILE.bats...
WORKDIR/<runtime>/<file>.tap holds bats' TAP output for each file.
EXPECTED lines: WHERE | FILE | TEST NAME | REASON   (WHERE: host, vm, systemd, hybrid,
rootless, rootless-vm or both, which means everywhere; # comments)
In rootless runs a FILE is SET/FILE.bats (SET: none, idmap, cgroup, idmap+cgroup); a listed
*/FILE.bats holds for every set, and a "both" entry's FILE.bats too.
Exit status 1 when Berth fails a test that is not listed for WHERE and runc passes (or runc
did not run), or passes one that is listed (unless its reason starts with "flaky": it may
go either way, and says why). A failure runc shares in the same run is the host's: it is
reported, with what on the host is known to cause it, and does not fail the run.
"""
import os
import re
import sys

work, expected_path, where = sys.argv[1:4]
sep = sys.argv.index("--")
runtimes, files = sys.argv[4:sep], sys.argv[sep + 1:]

TAP = re.compile(r"^(ok|not ok) \d+ (.*?)(?: # skip(?: (.*))?)?$")


def parse(path):
    out = {}
    try:
        lines = open(path, errors="replace").read().replace("\r", "").splitlines()
    except OSError:
        return out
    for line in lines:
        m = TAP.match(line)
        if m:
            res = "skip" if m.group(3) is not None or line.rstrip().endswith("# skip") else (
                "ok" if m.group(1) == "ok" else "not ok")
            out[m.group(2).strip()] = res
    return out


results = {rt: {f: parse(os.path.join(work, rt, f + ".tap")) for f in files} for rt in runtimes}

expected = {}
for n, line in enumerate(open(expected_path), 1):
    line = line.strip()
    if not line or line.startswith("#"):
        continue
    parts = [p.strip() for p in line.split("|")]
    if len(parts) != 4 or parts[0] not in ("host", "vm", "systemd", "hybrid", "rootless", "rootless-vm", "both") or not parts[3]:
        sys.exit(f"{expected_path}:{n}: want WHERE | FILE | TEST NAME | REASON")
    if parts[0] in (where, "both"):
        expected[(parts[1], parts[2])] = parts[3]


def counts(rt, f=None):
    c = {"ok": 0, "not ok": 0, "skip": 0}
    for file in ([f] if f else files):
        for r in results[rt][file].values():
            c[r] += 1
    return c


def fmt(c):
    return f"{c['ok']:3} ok {c['not ok']:3} not ok {c['skip']:3} skip"


print(f"runc v1.1.15 integration suite on the {where}: " + ", ".join(runtimes))
for f in files:
    print(f"  {f:28} " + " | ".join(f"{rt}: {fmt(counts(rt, f))}" for rt in runtimes))
totals = {rt: counts(rt) for rt in runtimes}
print("  " + "total".ljust(28) + " " + " | ".join(f"{rt}: {fmt(totals[rt])}" for rt in runtimes))

if "runc" in runtimes:
    diffs = []
    for f in files:
        for name in sorted(set(results["berth"][f]) | set(results["runc"][f])):
            b, r = results["berth"][f].get(name, "missing"), results["runc"][f].get(name, "missing")
            if b != r:
                diffs.append(f"  {f}: {name}: berth {b}, runc {r}")
    print(f"where they differ ({len(diffs)}):")
    print("\n".join(diffs) if diffs else "  nowhere")


def listed(f, name):
    """The reason a test is listed for, or None; SET/FILE.bats also matches */FILE.bats
    and FILE.bats."""
    base = os.path.basename(f)
    for key in ((f, name), ("*/" + base, name), (base, name)):
        if key in expected:
            return expected[key]
    return None


def host_notes():
    """What on this host is known to make runc's tests fail for any runtime."""
    notes = []
    if any(os.access(os.path.join(d, "criu"), os.X_OK) for d in os.environ.get("PATH", "").split(":") + ["/usr/sbin"]):
        notes.append("criu is installed: checkpoint.bats runs instead of skipping (`criu check` must pass on this kernel)")
    try:
        st = os.stat("/dev/null")
        if (st.st_uid, st.st_gid) != (0, 0):
            notes.append(f"the host's /dev/null is owned by {st.st_uid}:{st.st_gid}, not root (another runtime chowned it)")
    except OSError:
        pass
    for root in ("/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpu"):
        if not os.path.exists(os.path.join(root, "cpu.rt_runtime_us")):
            continue
        taken = []
        for d, subdirs, _ in os.walk(root):
            if d == root:
                continue
            try:
                if int(open(os.path.join(d, "cpu.rt_runtime_us")).read()) > 0:
                    taken.append(d)
            except (OSError, ValueError):
                pass
        if taken:
            notes.append(f"cgroup v1 real-time budget is held by {len(taken)} cgroup(s), e.g. {taken[0]}")
        break
    return notes


# A failure runc shares in the same run is the host's, not Berth's: reported, not fatal.
shared = []
unexpected, fixed = [], []
for f in files:
    for name, r in results["berth"][f].items():
        reason = listed(f, name)
        if r == "not ok" and reason is None and "runc" in runtimes and results["runc"][f].get(name) == "not ok":
            shared.append(f"  {f}: {name}")
        elif r == "not ok" and reason is None:
            unexpected.append(f"  {f}: {name}")
        if r == "ok" and reason is not None and not reason.startswith("flaky"):
            fixed.append(f"  {f}: {name} (listed: {reason})")
    if not results["berth"][f]:
        unexpected.append(f"  {f}: no result at all (see the .err file)")
if shared:
    print(f"berth and runc both fail {len(shared)} test(s) not in {os.path.basename(expected_path)} (this host's, not berth's):")
    print("\n".join(shared))
    for n in host_notes() or ["nothing known on this host explains them: see the .err files"]:
        print(f"  host: {n}")
if unexpected:
    print(f"berth fails {len(unexpected)} test(s) not in {os.path.basename(expected_path)}:")
    print("\n".join(unexpected))
if fixed:
    print(f"berth now passes {len(fixed)} listed test(s): take them out of {os.path.basename(expected_path)}:")
    print("\n".join(fixed))
b = totals["berth"]
print(f"conformance: {b['ok']} passed, {b['not ok']} failed, {b['skip']} skipped")
sys.exit(1 if unexpected or fixed else 0)
