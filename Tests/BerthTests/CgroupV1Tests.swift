import Testing
import Glibc
@testable import BerthCore
@testable import BerthSpec
import CBerth

@Suite struct CgroupV1Layout {
    // A hybrid host as these machines are, plus a co-mounted pair and a second mount of
    // the memory hierarchy (the first one counts).
    let mountinfo = """
    31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
    32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
    35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
    36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
    40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
    41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
    42 31 0:39 / /sys/fs/cgroup/odd rw,relatime - cgroup cgroup rw,name=odd
    99 23 0:32 /nested /mnt/mem rw,relatime - cgroup cgroup rw,memory
    """

    @Test func hierarchiesFromMountinfo() {
        let hs = CgroupV1.hierarchies(mountinfo: mountinfo)
        #expect(hs.map(\.key) == ["cpu,cpuacct", "memory", "devices", "name=systemd"])
        #expect(hs[0].mountpoint == "/sys/fs/cgroup/cpu,cpuacct")
        #expect(hs.allSatisfy { $0.root == "/" })
    }

    @Test func cgroupsPathAsRuncReadsIt() throws {
        let hs = CgroupV1.hierarchies(mountinfo: mountinfo)
        let own = CgroupV1.ownCgroups("4:memory:/process_api/x\n2:cpu,cpuacct:/\n5:devices:/\n9:name=systemd:/\n0::/\n")
        let abs = try CgroupV1.dirs(for: "/pod/ctr", id: "c", hierarchies: hs, own: own)
        #expect(abs["memory"] == "/sys/fs/cgroup/memory/pod/ctr")
        #expect(abs["cpu,cpuacct"] == "/sys/fs/cgroup/cpu,cpuacct/pod/ctr")
        // Relative: below this process's own cgroup in each hierarchy.
        let rel = try CgroupV1.dirs(for: "ctr", id: "c", hierarchies: hs, own: own)
        #expect(rel["memory"] == "/sys/fs/cgroup/memory/process_api/x/ctr")
        #expect(rel["devices"] == "/sys/fs/cgroup/devices/ctr")
        // ".." never climbs out; empty means Berth's default.
        #expect(try CgroupV1.dirs(for: "/../../etc", id: "c", hierarchies: hs, own: own)["memory"] == "/sys/fs/cgroup/memory/etc")
        #expect(try CgroupV1.dirs(for: "", id: "c", hierarchies: hs, own: own)["name=systemd"] == "/sys/fs/cgroup/systemd/berth/c")
        #expect(throws: BerthError.self) { try CgroupV1.dirs(for: "/", id: "c", hierarchies: hs, own: own) }
        #expect(throws: BerthError.self) { try CgroupV1.dirs(for: "system.slice:x:y", id: "c", hierarchies: hs, own: own) }
        #expect(CgroupV1.dir(abs, "cpuacct") == "/sys/fs/cgroup/cpu,cpuacct/pod/ctr")
        #expect(CgroupV1.dir(abs, "freezer") == nil)
    }

    @Test func cgroupMountBecomesRuncsLayout() {
        let hs = CgroupV1.hierarchies(mountinfo: mountinfo)
        let dirs = ["cpu,cpuacct": "/sys/fs/cgroup/cpu,cpuacct/c", "memory": "/sys/fs/cgroup/memory/c",
                    "devices": "/sys/fs/cgroup/devices/c", "name=systemd": "/sys/fs/cgroup/systemd/c"]
        var m = PlannedMount(source: "cgroup", dest: "sys/fs/cgroup", fstype: "cgroup2", index: 7)
        m.flags = CB_MS_NOSUID | CB_MS_NOEXEC | CB_MS_NODEV | CB_MS_RDONLY
        let plain = CgroupV1.expand(m, dirs: dirs, hierarchies: hs, cgroupns: false)
        #expect(plain.mounts.map(\.dest) == ["sys/fs/cgroup", "sys/fs/cgroup/cpu,cpuacct", "sys/fs/cgroup/memory",
                                             "sys/fs/cgroup/devices", "sys/fs/cgroup/systemd"])
        #expect(plain.mounts[0].fstype == "tmpfs" && plain.mounts[0].flags & CB_MS_RDONLY == 0)
        // Each entry binds the container's own directory, read-only as the mount asked.
        #expect(plain.mounts[2].source == "/sys/fs/cgroup/memory/c" && plain.mounts[2].bind == 2)
        #expect(plain.mounts[2].remountFlags & CB_MS_RDONLY != 0)
        #expect(plain.mounts.allSatisfy { $0.index == 7 })
        #expect(plain.links.map(\.dest) == ["sys/fs/cgroup/cpu", "sys/fs/cgroup/cpuacct"])
        #expect(plain.links.allSatisfy { $0.target == "cpu,cpuacct" })
        // With a cgroup namespace: new mounts of each hierarchy instead.
        let ns = CgroupV1.expand(m, dirs: dirs, hierarchies: hs, cgroupns: true)
        #expect(ns.mounts[1].fstype == "cgroup" && ns.mounts[1].data == "cpu,cpuacct" && ns.mounts[1].bind == 0)
        #expect(ns.mounts[4].source == "systemd" && ns.mounts[4].data == "name=systemd")
        #expect(ns.mounts[4].flags & CB_MS_RDONLY != 0)
    }
}

@Suite struct DeviceRulesV1 {
    let c = UInt8(ascii: "c")

    @Test func fromListAndBack() throws {
        let all = try DeviceEmulator.fromList("a *:* rwm\n")
        #expect(all.defaultAllow && all.rules.isEmpty)
        let list = try DeviceEmulator.fromList("c 1:3 rwm\nc 136:* rw\nb *:* m\n")
        #expect(!list.defaultAllow)
        #expect(list.rules[DeviceEmulator.Key(type: c, major: 136, minor: -1)] == DeviceEmulator.read | DeviceEmulator.write)
        #expect(throws: DeviceEmulator.Failure.self) { try DeviceEmulator.fromList("x 1:3 rwm\n") }
    }

    @Test func transitionsAreMinimal() throws {
        let target = try DeviceEmulator.target([DeviceRule(allow: false, access: "rwm")])
        // From a fresh cgroup (allow all): one switch, then each allowed device.
        let fresh = try DeviceEmulator.fromList("a *:* rwm\n")
        let lines = fresh.transition(to: target)
        #expect(lines.first == DeviceEmulator.Line(allow: false, text: "a *:* rwm"))
        #expect(lines.contains(DeviceEmulator.Line(allow: true, text: "c 1:3 rwm")))
        #expect(lines.contains(DeviceEmulator.Line(allow: true, text: "c 10:200 rwm")))
        #expect(!lines.contains { $0.text.hasPrefix("c 5:1 ") })  // not the host's console
        // Already there: nothing to write, so an update never opens a window of "deny all".
        var now = fresh
        for l in lines {
            let f = l.text.split(separator: " ")
            let mm = f[1].split(separator: ":")
            let key = f[0] == "a" ? nil : DeviceEmulator.Key(type: f[0].utf8.first!, major: mm[0] == "*" ? -1 : Int64(mm[0])!,
                                                              minor: mm[1] == "*" ? -1 : Int64(mm[1])!)
            var p: UInt8 = 0
            for ch in f[2] { p |= ch == "r" ? 1 : ch == "w" ? 2 : 4 }
            try now.apply(allow: l.allow, key: key, perms: p)
        }
        #expect(now == target)
        #expect(now.transition(to: target).isEmpty)
        // One more device: one line.
        let more = try DeviceEmulator.target([DeviceRule(allow: false, access: "rwm"),
                                              DeviceRule(allow: true, type: "c", major: 1, minor: 11, access: "r")])
        #expect(now.transition(to: more) == [DeviceEmulator.Line(allow: true, text: "c 1:11 r")])
    }

    @Test func runcsRules() throws {
        // No rules: runc's defaults on an allow list, never "allow all".
        let none = try DeviceEmulator.target([])
        #expect(!none.defaultAllow && none.rules.count == DeviceEmulator.defaultRules.count)
        // "rwa" on a denial under "deny all" takes away what it can (runc's own test).
        #expect((try? DeviceEmulator.target([DeviceRule(allow: false, access: "rwm"),
                                             DeviceRule(allow: false, type: "c", major: 1, minor: 11, access: "rwa")])) != nil)
        #expect(throws: SpecError.self) {
            try DeviceEmulator.target([DeviceRule(allow: false), DeviceRule(allow: true, type: "c", major: 1, minor: 3, access: "rx")])
        }
        // A hole in a wildcard exception cannot be expressed in v1.
        #expect(throws: SpecError.self) {
            try DeviceEmulator.target([DeviceRule(allow: false), DeviceRule(allow: true, type: "c", access: "rwm"),
                                       DeviceRule(allow: false, type: "c", major: 1, minor: 3, access: "r")])
        }
        #expect(throws: SpecError.self) { try DeviceEmulator.target([DeviceRule(allow: true, type: "x")]) }
    }
}

/// state.json keeps the top of each chain of directories Berth made; delete gets every
/// one back, parents first, and reads an older build's full list unchanged.
@Suite struct CreatedCgroupRecord {
    let cgs = ContainerCgroups(v2: "/u/berth/c", v1: ["memory": "/m/berth/c", "pids": "/p/x/y/z"])
    let made = ["/m/berth", "/m/berth/c", "/p/x/y", "/p/x/y/z", "/u/berth", "/u/berth/c"]

    @Test func compactKeepsTheTopOfEachChain() {
        #expect(cgs.compact(made) == ["/m/berth", "/p/x/y", "/u/berth"])
        #expect(cgs.expand(cgs.compact(made)).sorted() == made.sorted())
    }

    @Test func anOlderFullListExpandsToItself() {
        #expect(cgs.expand(made).sorted() == made.sorted())
        let e = cgs.expand(made)
        #expect(e.firstIndex(of: "/m/berth")! < e.firstIndex(of: "/m/berth/c")!)
    }

    @Test func similarNamesAreNotParents() {
        #expect(!ContainerCgroups.isSelfOrBelow("/m/berth-x/c", "/m/berth"))
        #expect(ContainerCgroups.isSelfOrBelow("/m/berth/c", "/m/berth"))
        #expect(ContainerCgroups.isSelfOrBelow("/m/berth", "/m/berth"))
        let odd = ContainerCgroups(v2: nil, v1: ["memory": "/m/berth-x/c"])
        #expect(odd.compact(["/m/berth", "/m/berth-x/c"]) == ["/m/berth", "/m/berth-x/c"])
    }
}
