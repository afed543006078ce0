import Testing
import Glibc
@testable import BerthCore
@testable import BerthSpec
import CBerth

@Suite struct Arguments {
    let specs = [
        FlagSpec(names: ["bundle", "b"], kind: .string),
        FlagSpec(names: ["detach", "d"], kind: .bool),
        FlagSpec(names: ["preserve-fds"], kind: .int),
        FlagSpec(names: ["env", "e"], kind: .strings),
    ]

    @Test func flagsAfterTheIdAsUrfaveCli() {
        // runc update ID --cpu-period 900000 (runc's own tests write it so)
        #expect(reorderArgs(["ctr", "--cpu-period", "900000"]) == ["--cpu-period", "900000", "ctr"])
        #expect(reorderArgs(["--resources", "-", "ctr"]) == ["--resources", "-", "ctr"])
        #expect(reorderArgs(["ctr", "--memory=1M", "--", "--x"]) == ["--memory=1M", "ctr", "--", "--x"])
        // A bool flag takes the next word along; Go's flag parsing then leaves it positional.
        #expect(reorderArgs(["--all", "ctr", "9"]) == ["--all", "ctr", "9"])
    }

    @Test func goFlagDialect() throws {
        let f = try parseFlags(["-bundle", "/b", "--detach=false", "-preserve-fds=2", "-e", "A=1", "--env", "B=2", "id"], specs)
        #expect(f.string("bundle") == "/b")
        #expect(f.bools["detach"] == false)
        #expect(f.int("preserve-fds") == 2)
        #expect(f.lists["env"] == ["A=1", "B=2"])
        #expect(f.positional == ["id"])
        let g = try parseFlags(["--bundle=/x", "-d", "id", "--detach", "more"], specs)
        #expect(g.bool("detach"))
        #expect(g.positional == ["id", "--detach", "more"]) // Go stops at the first positional
        #expect(try parseFlags(["--", "-d"], specs).positional == ["-d"])
    }

    @Test func errors() {
        #expect(throws: ArgError.self) { try parseFlags(["--nope"], specs) }
        #expect(throws: ArgError.self) { try parseFlags(["--bundle"], specs) }
        #expect(throws: ArgError.self) { try parseFlags(["--detach=maybe"], specs) }
        #expect(throws: ArgError.self) { try parseFlags(["--preserve-fds", "x"], specs) }
        do { _ = try parseFlags(["-nope"], specs) } catch { #expect(error.message == "flag provided but not defined: -nope") }
    }

    @Test func signals() {
        #expect(parseSignal("9") == 9)
        #expect(parseSignal("KILL") == 9)
        #expect(parseSignal("SIGKILL") == 9)
        #expect(parseSignal("sigterm") == 15)
        #expect(parseSignal("term") == 15)
        #expect(parseSignal("SIGRTMIN+2") == 36)
        #expect(parseSignal("RTMAX-1") == 63)
        #expect(parseSignal("NOPE") == nil)
        #expect(parseSignal("0") == 0)  // runc takes any number; 0 probes
        #expect(parseSignal("65") == nil)
    }

    @Test func listTable() {
        let t = table([["ID", "PID", "STATUS"], ["a-long-container-id", "1", "running"]])
        #expect(t == "ID                    PID         STATUS\na-long-container-id   1           running\n")
    }
}

@Suite struct JSONOutput {
    @Test func goStyleIndentAndEscaping() {
        let j = JSON.object([("a", .string("<&>\u{2028}\n\"")), ("b", .array([.int(1), .bool(false), .null])), ("c", .object([]))])
        #expect(j.render(indent: "  ") == "{\n  \"a\": \"\\u003c\\u0026\\u003e\\u2028\\n\\\"\",\n  \"b\": [\n    1,\n    false,\n    null\n  ],\n  \"c\": {}\n}")
        #expect(j.render(indent: nil) == "{\"a\":\"\\u003c\\u0026\\u003e\\u2028\\n\\\"\",\"b\":[1,false,null],\"c\":{}}")
    }

    @Test func rfc3339() {
        var ts = timespec()
        ts.tv_sec = 1_700_000_000
        ts.tv_nsec = 120_000_000
        #expect(WallClock.rfc3339(ts, nanos: true) == "2023-11-14T22:13:20.12Z")
        #expect(WallClock.rfc3339(ts, nanos: false) == "2023-11-14T22:13:20Z")
        ts.tv_nsec = 0
        #expect(WallClock.rfc3339(ts, nanos: true) == "2023-11-14T22:13:20Z")
    }
}

@Suite struct PathsAndCgroups {
    @Test func clean() {
        #expect(Paths.clean("/a//b/./c/../d/") == "/a/b/d")
        #expect(Paths.clean("/../../etc") == "/etc")
        #expect(Paths.absolute("rootfs", base: "/bundle") == "/bundle/rootfs")
        #expect(Paths.absolute("/abs/../x", base: "/bundle") == "/x")
    }

    @Test func cgroupMountFromMountinfo() {
        let hybrid = """
        30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
        31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw
        32 30 0:28 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
        """
        #expect(Cgroup.mountPoint(mountinfo: hybrid) == "/sys/fs/cgroup/unified")
        let pure = "29 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"
        #expect(Cgroup.mountPoint(mountinfo: pure) == "/sys/fs/cgroup")
        #expect(Cgroup.mountPoint(mountinfo: "1 0 0:1 / /odd\\040dir rw - cgroup2 x rw\n") == "/odd dir")
        #expect(Cgroup.mountPoint(mountinfo: "") == nil)
    }

    @Test func cgroupPaths() throws {
        #expect(try Cgroup.path(for: nil, id: "c1", mount: "/cg") == "/cg/berth/c1")
        #expect(try Cgroup.path(for: "/pods/c1", id: "c1", mount: "/cg") == "/cg/pods/c1")
        #expect(try Cgroup.path(for: "pods/c1", id: "c1", mount: "/cg") == "/cg/pods/c1")
        // runc's fs2: relative means next to Berth's own cgroup; rootless, so is the default.
        #expect(try Cgroup.path(for: "pods/c1", id: "c1", mount: "/cg", own: "/a/b/me") == "/cg/a/b/pods/c1")
        #expect(try Cgroup.path(for: "../../../x", id: "c1", mount: "/cg", own: "/a/me") == "/cg/a/x")
        #expect(try Cgroup.path(for: nil, id: "c1", mount: "/cg", own: "/u/me", rootless: true) == "/cg/u/c1")
        #expect(try Cgroup.path(for: nil, id: "c1", mount: "/cg", own: "/u/me") == "/cg/berth/c1")
        #expect(try Cgroup.path(for: "pods/c1", id: "c1", mount: "/cg", own: "/") == "/cg/pods/c1")
        #expect(try Cgroup.path(for: "/a/../../../etc", id: "c1", mount: "/cg") == "/cg/etc")
        #expect(throws: BerthError.self) { try Cgroup.path(for: "system.slice:berth:c1", id: "c1", mount: "/cg") }
        #expect(throws: BerthError.self) { try Cgroup.path(for: "/", id: "c1", mount: "/cg") }
    }
}

func spec(_ extra: String = "", namespaces: String = #"[{"type":"pid"},{"type":"mount"}]"#, mounts: String = "[]") throws -> Spec {
    let text = """
    {"ociVersion":"1.3.0","root":{"path":"rootfs"},"mounts":\(mounts),
     "process":{"user":{"uid":5,"gid":6,"additionalGids":[7]},"args":["sh"],"cwd":"/w","env":["A=1","PATH=/x:/y"]},
     "linux":{"namespaces":\(namespaces)\(extra)}}
    """
    return try Spec.load(Array(text.utf8))
}

@Suite struct PlanBuilding {
    func plan(_ s: Spec) throws -> ContainerPlan {
        try ContainerPlan.build(spec: s, bundle: "/bundle", rootfs: "/bundle/rootfs", noPivot: false, noNewKeyring: false, preserveFds: 0)
    }

    @Test func fastPathWhenNothingIsJoined() throws {
        let p = try plan(try spec())
        #expect(!p.stageMode)
        #expect(p.newNamespaces == [.pid, .mount])
        #expect(p.ownPidNamespace)
        #expect(p.uid == 5 && p.gid == 6 && p.groups == [7])
        #expect(p.pathEnv == "/x:/y")
        #expect(p.cwd == "/w")
    }

    @Test func joinsAndTimeNeedAStage() throws {
        let p = try plan(try spec(namespaces: #"[{"type":"mount"},{"type":"network","path":"/proc/1/ns/net"}]"#))
        #expect(p.stageMode)
        #expect(p.joins == [PlannedJoin(kind: .network, path: "/proc/1/ns/net", index: 1)])
        #expect(!p.ownPidNamespace)
        let t = try plan(try spec(#","timeOffsets":{"monotonic":{"secs":5}}"#, namespaces: #"[{"type":"mount"},{"type":"time"}]"#))
        #expect(t.stageMode)
        #expect(t.timeOffsets == "monotonic 5 0\n")
    }

    @Test func defaultDevicesAndLinks() throws {
        let p = try plan(try spec(#","devices":[{"type":"c","path":"/dev/null","major":1,"minor":3,"fileMode":384}]"#))
        #expect(p.devices.count == 6)
        let null = try #require(p.devices.first { $0.dest == "dev/null" })
        #expect(null.mode & 0o7777 == 0o600) // the config's entry wins over the default
        #expect(null.index == 0)
        #expect(p.symlinks.map(\.dest) == ["dev/fd", "dev/stdin", "dev/stdout", "dev/stderr"])
        #expect(p.devices.allSatisfy { !$0.bind })
    }

    @Test func userNamespaceBindsDevices() throws {
        let p = try plan(try spec(#","uidMappings":[{"containerID":0,"hostID":1000,"size":10}],"gidMappings":[{"containerID":0,"hostID":1000,"size":10}]"#,
                                  namespaces: #"[{"type":"mount"},{"type":"user"}]"#))
        #expect(p.inUserNamespace)
        #expect(p.devices.allSatisfy { $0.bind })
    }

    @Test func mountOptions() throws {
        let fs: Set<String> = ["proc", "tmpfs", "cgroup2", "devpts"]
        func mount(_ json: String) throws -> PlannedMount {
            let m = try Mount(JSONReader(JSONValue.parse(json)))
            return try MountTable.plan(m, index: 3, bundle: "/", filesystems: fs)
        }
        let t = try mount(#"{"destination":"/dev/../run//x/","type":"tmpfs","source":"tmpfs","options":["nosuid","nodev","ro","rw","mode=755","size=1m","rslave","rro"]}"#)
        #expect(t.dest == "run/x")
        #expect(t.flags == CB_MS_NOSUID | CB_MS_NODEV)
        #expect(t.data == "mode=755,size=1m")
        #expect(t.propagation == [CB_MS_SLAVE | CB_MS_REC])
        #expect(t.attrSet == CB_MOUNT_ATTR_RDONLY)
        #expect(t.index == 3)

        let b = try mount(#"{"destination":"/h","type":"bind","source":"/tmp","options":["rbind","ro","nosuid"]}"#)
        #expect(b.bind == 2)
        #expect(b.flags == CB_MS_BIND | CB_MS_REC)
        #expect(b.remountFlags == CB_MS_RDONLY | CB_MS_NOSUID)
        #expect(!b.destIsFile)

        let c = try mount(#"{"destination":"/sys/fs/cgroup","type":"cgroup","source":"cgroup"}"#)
        #expect(c.fstype == "cgroup2")

        #expect(throws: SpecError.self) { try mount(#"{"destination":"/x","type":"nofs"}"#) }
        #expect(throws: SpecError.self) { try mount(#"{"destination":"/","type":"tmpfs"}"#) }
        #expect(throws: SpecError.self) { try mount(#"{"destination":"/x","type":"bind","source":"/no/such/path"}"#) }
        #expect(throws: SpecError.self) { try mount(#"{"destination":"/x","type":"tmpfs","options":["idmap"]}"#) }
        #expect(throws: SpecError.self) { try mount(#"{"destination":"/x","options":["nosuid"]}"#) }
    }

    @Test func mountsInJoinedMountNamespaceAreMade() throws {
        // As runc: the root is set up in a joined mount namespace too.
        let s = try spec(namespaces: #"[{"type":"mount","path":"/proc/1/ns/mnt"}]"#,
                         mounts: #"[{"destination":"/proc","type":"proc"}]"#)
        let p = try plan(s)
        #expect(p.setupRootfs && p.mounts.count == 1 && p.warnings.isEmpty)
        // Without a mount namespace init is chrooted into the rootfs; mounts would land in
        // the host's mount namespace, and are refused by name.
        let bare = try plan(try spec(namespaces: #"[{"type":"pid"}]"#, mounts: "[]"))
        #expect(!bare.setupRootfs && bare.chrootRootfs)
        #expect(throws: SpecError.self) {
            try plan(try spec(namespaces: #"[{"type":"pid"}]"#, mounts: #"[{"destination":"/proc","type":"proc"}]"#))
        }
    }
}

@Suite struct StateAndStatus {
    func tempDir() -> String {
        var t = Array("/tmp/berth-unit-XXXXXX".utf8CString)
        return t.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
    }

    func record(dir: String, pid: Int32, start: UInt64) -> ContainerRecord {
        ContainerRecord(dir: dir, state: StoredState(
            ociVersion: "1.3.0", id: "x", pid: pid, startTime: start, bundle: "/b", rootfs: "/b/r",
            created: "2026-01-01T00:00:00Z", annotations: ["k": "v"], owner: "", cgroup: nil, cgroupCreated: nil,
            creatorPid: nil, creatorStartTime: nil, hooks: nil, ownPidNamespace: true))
    }

    @Test func statusFromTheLiveProcess() throws {
        let dir = tempDir()
        defer { FS.removeTree(dir) }
        let me = getpid()
        let start = try #require(ProcStat.read(pid: me)).startTime
        // Alive and the fifo still there: created. Fifo gone: running.
        #expect(mkfifo(dir + "/exec.fifo", 0o600) == 0)
        #expect(record(dir: dir, pid: me, start: start).status == .created)
        unlink(dir + "/exec.fifo")
        #expect(record(dir: dir, pid: me, start: start).status == .running)
        // Same pid, other start time: a recycled pid, so stopped.
        #expect(record(dir: dir, pid: me, start: start + 1).status == .stopped)
        #expect(record(dir: dir, pid: 0, start: 0).status == .stopped)
        #expect(record(dir: dir, pid: Int32.max, start: 0).status == .stopped)
    }

    @Test func statusRules() {
        #expect(Status.created.canStart && !Status.running.canStart)
        #expect(Status.paused.canKill && !Status.stopped.canKill)
        #expect(Status.stopped.canDelete && !Status.created.canDelete)
    }

    @Test func storeClaimsOnceAndRoundTrips() throws {
        let root = tempDir()
        defer { FS.removeTree(root) }
        let store = StateStore(root: root + "/state")
        let d = try store.claim("abc")
        #expect(throws: BerthError.self) { try store.claim("abc") }
        let rec = record(dir: d, pid: 42, start: 7)
        try store.save(rec)
        let back = try store.load("abc")
        #expect(back.state.pid == 42 && back.state.startTime == 7 && back.state.annotations == ["k": "v"])
        #expect(store.ids() == ["abc"])
        #expect(throws: BerthError.self) { try store.load("missing") }
    }

    @Test func idRules() {
        for ok in ["a", "A-b_c+d.e", "123"] { #expect(throws: Never.self) { try StateStore.validate(id: ok) } }
        for bad in ["", ".", "..", "a/b", "a b", "é"] { #expect(throws: BerthError.self) { try StateStore.validate(id: bad) } }
    }

    @Test func ociStateKeyOrder() {
        let r = record(dir: "/nonexistent", pid: 9, start: 1)
        let text = r.ociState(status: .stopped).render(indent: "  ")
        #expect(text == """
        {
          "ociVersion": "1.3.0",
          "id": "x",
          "pid": 0,
          "status": "stopped",
          "bundle": "/b",
          "rootfs": "/b/r",
          "created": "2026-01-01T00:00:00Z",
          "annotations": {
            "k": "v"
          },
          "owner": ""
        }
        """)
    }
}

@Suite struct SELinuxMountLabels {
    let label = "system_u:object_r:container_file_t:s0:c1,c2"
    func mounts() -> [PlannedMount] {
        [PlannedMount(source: "proc", dest: "proc", fstype: "proc", index: 0),
         PlannedMount(source: "tmpfs", dest: "dev", fstype: "tmpfs", data: "mode=755", index: 1),
         PlannedMount(source: "devpts", dest: "dev/pts", fstype: "devpts", index: 2),
         PlannedMount(source: "mqueue", dest: "dev/mqueue", fstype: "mqueue", index: 3),
         PlannedMount(source: "sysfs", dest: "sys", fstype: "sysfs", index: 4),
         PlannedMount(source: "cgroup", dest: "sys/fs/cgroup", fstype: "cgroup2", index: 5),
         PlannedMount(source: "/data", dest: "data", bind: 2, index: 6)]
    }

    @Test func theMountsRuncLabelsGetTheContext() throws {
        var m = mounts()
        let masked = try SecurityModules.labelMounts(&m, maskedPaths: ["proc/acpi"], mountLabel: label, selinux: true)
        #expect(masked == label)
        let context = "context=\"\(label)\""
        #expect(m[1].data == "mode=755," + context)
        #expect(m[2].data == context)
        #expect(m[3].data == nil && m[3].fileLabel == label)
        for i in [0, 4, 5, 6] { #expect(m[i].data == nil && m[i].fileLabel == nil) }
    }

    @Test func withoutSELinuxALabelThatWouldBeUsedIsRefusedByName() {
        var m = mounts()
        #expect(throws: SpecError("linux.mountLabel", "SELinux is not enabled on this host: mounts[1] cannot be mounted with context \"\(label)\"")) {
            _ = try SecurityModules.labelMounts(&m, maskedPaths: [], mountLabel: label, selinux: false)
        }
        // Nothing it would label (proc and a bind only): accepted, as runc accepts it.
        var few = [mounts()[0], mounts()[6]]
        #expect((try? SecurityModules.labelMounts(&few, maskedPaths: [], mountLabel: label, selinux: false)) == label)
    }
}
