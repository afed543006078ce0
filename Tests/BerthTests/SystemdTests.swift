import Testing
import Glibc
@testable import BerthCore
@testable import BerthSpec

@Suite struct SystemdUnits {
    @Test func cgroupsPathAsRuncReadsIt() throws {
        let m = "/sys/fs/cgroup"
        #expect(try Systemd.unit(cgroupsPath: "system.slice:docker:abc", id: "x", mount: m)
                == Systemd.Unit(name: "docker-abc.scope", slice: "system.slice", dir: "/sys/fs/cgroup/system.slice/docker-abc.scope",
                                path: "/system.slice/docker-abc.scope"))
        // An empty slice is system.slice; an empty path gets Berth's own prefix.
        #expect(try Systemd.unit(cgroupsPath: ":libpod:c1", id: "x", mount: m).dir == "/sys/fs/cgroup/system.slice/libpod-c1.scope")
        #expect(try Systemd.unit(cgroupsPath: nil, id: "c2", mount: m).name == "berth-c2.scope")
        #expect(try Systemd.unit(cgroupsPath: "machine-a-b.slice:p:n", id: "x", mount: m).dir
                == "/sys/fs/cgroup/machine.slice/machine-a.slice/machine-a-b.slice/p-n.scope")
        #expect(try Systemd.unit(cgroupsPath: "-.slice:p:n", id: "x", mount: m).dir == "/sys/fs/cgroup/p-n.scope")
        let s = try Systemd.unit(cgroupsPath: "system.slice::my-pod.slice", id: "x", mount: m)
        #expect(s.name == "my-pod.slice" && s.isSlice)
        for bad in ["a:b", "a:b:c:d", "foo:p:n", "a--b.slice:p:n", "x.slice:p:../../etc", ".slice:p:n"] {
            #expect(throws: BerthError.self) { try Systemd.unit(cgroupsPath: bad, id: "x", mount: m) }
        }
    }

    @Test func propertiesWithRuncsConversions() throws {
        var r = Resources()
        r.memory = MemoryResources()
        r.memory!.limit = 64 << 20
        r.memory!.swap = 96 << 20
        r.cpu = CPUResources()
        r.cpu!.shares = 1024
        r.cpu!.quota = 12345
        r.cpu!.period = 100_000
        r.cpu!.cpus = "0-2,9"
        r.pids = -1
        let p = try Systemd.properties(r) { 252 }
        let d = Dictionary(p, uniquingKeysWith: { a, _ in a })
        #expect(d["MemoryMax"] == .uint64(64 << 20))
        #expect(d["MemorySwapMax"] == .uint64(32 << 20))
        #expect(d["CPUWeight"] == .uint64(39))
        #expect(d["CPUQuotaPeriodUSec"] == .uint64(100_000))
        #expect(d["CPUQuotaPerSecUSec"] == .uint64(130_000))  // 123450 rounded up to 10 ms
        #expect(d["TasksMax"] == .uint64(.max))
        #expect(d["AllowedCPUs"] == .array("y", [.byte(0x07), .byte(0x02)]))
        // Too old a systemd for the period and the cpuset: the files carry them alone.
        let old = Dictionary(try Systemd.properties(r) { 239 }, uniquingKeysWith: { a, _ in a })
        #expect(old["CPUQuotaPeriodUSec"] == nil && old["AllowedCPUs"] == nil && old["CPUQuotaPerSecUSec"] != nil)
        // Zero means unset: nothing.
        var zero = Resources()
        zero.memory = MemoryResources()
        zero.memory!.limit = 0
        zero.cpu = CPUResources()
        zero.cpu!.shares = 0
        zero.cpu!.quota = 0
        zero.pids = 0
        #expect(try Systemd.properties(zero) { 252 }.isEmpty)
        var unified = Resources()
        unified.unified = ["memory.high": " 1000\n", "pids.max": "max", "cpu.max": "max 50000", "io.weight": "10"]
        let u = Dictionary(try Systemd.properties(unified) { 252 }, uniquingKeysWith: { a, _ in a })
        #expect(u["MemoryHigh"] == .uint64(1000) && u["TasksMax"] == .uint64(.max))
        #expect(u["CPUQuotaPerSecUSec"] == .uint64(.max) && u["CPUQuotaPeriodUSec"] == .uint64(50000))
        #expect(u.count == 4)
        // runc's test sets the cpuset through unified too: systemd's AllowedCPUs/MemoryNodes.
        var cs = Resources()
        cs.unified = ["cpuset.cpus": "0", "cpuset.mems": "0"]
        let c = Dictionary(try Systemd.properties(cs) { 252 }, uniquingKeysWith: { a, _ in a })
        #expect(c["AllowedCPUs"] == .array("y", [.byte(1)]) && c["AllowedMemoryNodes"] == .array("y", [.byte(1)]))
    }

    @Test func legacyPropertiesAndDeviceRules() throws {
        var r = Resources()
        r.memory = MemoryResources()
        r.memory!.limit = 64 << 20
        r.cpu = CPUResources()
        r.cpu!.shares = 512
        r.blockIO = BlockIOResources()
        r.blockIO!.weight = 0  // Docker's "unset"
        r.pids = 40
        let target = try DeviceEmulator.target([])
        let procDevices = "Character devices:\n  1 mem\n  5 /dev/tty\n136 pts\n\nBlock devices:\n  8 sd\n"
        let p = try Systemd.v1Properties(r, devices: nil) { 252 }
        let d = Dictionary(p, uniquingKeysWith: { a, _ in a })
        #expect(d["MemoryLimit"] == .uint64(64 << 20) && d["CPUShares"] == .uint64(512) && d["TasksMax"] == .uint64(40))
        #expect(d["BlockIOWeight"] == nil && d["MemoryMax"] == nil && d["DevicePolicy"] == nil)
        // runc's defaults as systemd names them: the pts group for 136:*, char-*/block-*.
        let dev = Systemd.deviceProperties(target, version: 252, procDevices: procDevices)
        #expect(dev.count == 3 && dev[0].0 == "DevicePolicy" && dev[0].1 == .string("strict"))
        #expect(dev[1].0 == "DeviceAllow" && dev[1].1 == .array("(ss)", []))
        guard case .array(_, let entries) = dev[2].1 else { Issue.record("no DeviceAllow list"); return }
        let pairs = entries.compactMap { e -> String? in
            guard case .structure(let f) = e, f.count == 2, let a = f[0].stringValue, let b = f[1].stringValue else { return nil }
            return a + " " + b
        }
        #expect(pairs.contains("/dev/char/1:3 rwm") && pairs.contains("char-pts rwm") && pairs.contains("char-* m")
                && pairs.contains("block-* m") && pairs.count == 11)
        // Allow-all is systemd's "auto"; any other deny list is strict with nothing (Berth's
        // own writes put the exceptions back).
        var all = DeviceEmulator()
        try all.apply(allow: true, key: nil, perms: DeviceEmulator.all)
        #expect(Systemd.deviceProperties(all, version: 252, procDevices: "")[0].1 == .string("auto"))
        try all.apply(allow: false, key: .init(type: UInt8(ascii: "c"), major: 1, minor: 11), perms: DeviceEmulator.all)
        let deny = Systemd.deviceProperties(all, version: 252, procDevices: "")
        #expect(deny.count == 2 && deny[0].1 == .string("strict") && deny[1].1 == .array("(ss)", []))
        // The state keeps a deny list's exceptions, which devices.list cannot show.
        #expect(DeviceEmulator.fromStateLines(all.stateLines) == all && all.stateLines == ["allow", "c 1:11 rwm"])
        #expect(DeviceEmulator.fromStateLines(target.stateLines) == target)
        var unified = Resources()
        unified.unified = ["memory.max": "10"]
        #expect(throws: BerthError.self) { try Systemd.v1Properties(unified, devices: nil) { 252 } }
    }

    @Test func annotationsBecomeProperties() throws {
        let p = try Systemd.annotationProperties([
            "org.systemd.property.TimeoutStopSec": "uint64 5",
            "org.systemd.property.CollectMode": "'inactive-or-failed'",
            "org.systemd.property.After": "['a.service', 'b.service']",
            "other": "ignored",
        ])
        let d = Dictionary(p, uniquingKeysWith: { a, _ in a })
        #expect(d["TimeoutStopUSec"] == .uint64(5_000_000))
        #expect(d["CollectMode"] == .string("inactive-or-failed"))
        #expect(d["After"] == .array("s", [.string("a.service"), .string("b.service")]))
        #expect(d.count == 3)
        #expect(throws: BerthError.self) { try Systemd.annotationProperties(["org.systemd.property.ab": "1"]) }
        #expect(throws: BerthError.self) { try Systemd.annotationProperties(["org.systemd.property.Foo": "{1: 2}"]) }
    }

    /// Values a ...Sec property cannot hold in microseconds are errors, never a trap or a
    /// silent wrap.
    @Test func secondsOutOfRangeAreErrors() throws {
        for bad in ["inf", "1e300", "nan", "-1", "int64 -5", "uint64 18446744073709551615", "int64 9223372036854775807"] {
            #expect(throws: BerthError.self, "\(bad)") {
                try Systemd.annotationProperties(["org.systemd.property.TimeoutStopSec": bad])
            }
        }
        let p = try Systemd.annotationProperties(["org.systemd.property.TimeoutStopSec": "1.5",
                                                  "org.systemd.property.RuntimeMaxSec": "uint64 18446744073709"])
        let d = Dictionary(p, uniquingKeysWith: { a, _ in a })
        #expect(d["TimeoutStopUSec"] == .uint64(1_500_000))
        #expect(d["RuntimeMaxUSec"] == .uint64(18_446_744_073_709_000_000))
    }
}

@Suite struct DBusWireFormat {
    @Test func signatures() {
        #expect(DBusWire.split("a(sv)sa{sv}") == ["a(sv)", "s", "a{sv}"])
        #expect(DBusWire.split("a(s") == nil)
        #expect(DBusValue.array("(sv)", []).signature == "a(sv)")
        #expect(DBusValue.structure([.string("a"), .variant(.bool(true))]).signature == "(sv)")
    }

    @Test func knownBytes() {
        // A string is its length, the bytes and a NUL; a uint64 after it pads to 8.
        var w = DBusWriter()
        w.write(.structure([.string("ab"), .uint64(1)]))
        #expect(w.bytes == [2, 0, 0, 0, 0x61, 0x62, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0])
        // An array's length leaves out the padding before its first element.
        var a = DBusWriter()
        a.write(.array("t", [.uint64(7)]))
        #expect(a.bytes == [8, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0])
        var v = DBusWriter()
        v.write(.variant(.bool(true)))
        #expect(v.bytes == [1, 0x62, 0, 0, 1, 0, 0, 0])
    }

    @Test func messagesRoundTrip() throws {
        let body: [DBusValue] = [
            .string("berth-x.scope"), .string("replace"),
            .array("(sv)", [Systemd.prop("PIDs", .array("u", [.uint32(42)])), Systemd.prop("Delegate", .bool(true)),
                            Systemd.prop("MemoryMax", .uint64(1 << 30)), Systemd.prop("AllowedCPUs", .array("y", [.byte(3)]))]),
            .array("(sa(sv))", []),
        ]
        let m = DBusMessage(type: DBusMessage.methodCall, serial: 7, path: "/org/freedesktop/systemd1",
                            interface: "org.freedesktop.systemd1.Manager", member: "StartTransientUnit",
                            destination: "org.freedesktop.systemd1", body: body)
        let bytes = m.encode()
        #expect(DBusMessage.totalLength(bytes[...]) == bytes.count)
        let back = try #require(DBusMessage.decode(bytes))
        #expect(back.serial == 7 && back.member == "StartTransientUnit" && back.path == "/org/freedesktop/systemd1")
        #expect(back.body == body)
        // Truncated or garbage input is refused, never trusted.
        #expect(DBusMessage.decode(Array(bytes.prefix(bytes.count - 3))) == nil)
        var bad = bytes
        bad[12] = 0xff  // header field array length far past the end
        #expect(DBusMessage.decode(bad) == nil)
    }

    /// BEGIN must reach the server with AUTH, before its OK: sent after the OK, it can arrive
    /// in one read with the first call, which systemd 252 then never answers. The fake
    /// server here says OK only if BEGIN came in before it answered.
    @Test func beginIsSentWithAuth() throws {
        var tmpl = Array("/tmp/berth-dbus-XXXXXX".utf8CString)
        guard let d = mkdtemp(&tmpl) else { Issue.record("mkdtemp"); return }
        let dir = String(cString: d), path = dir + "/s"
        defer { _ = unlink(path); _ = rmdir(dir) }
        let l = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        defer { close(l) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { b in for (i, c) in path.utf8.enumerated() { b[i] = c } }
        let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(l, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        #expect(bound == 0 && listen(l, 1) == 0)
        let pid = fork()
        if pid == 0 {
            // The server: raw syscalls on a stack buffer only, then _exit.
            let c = accept(l, nil, nil)
            var buf = [UInt8](repeating: 0, count: 512)
            var got = 0
            var p = pollfd(fd: c, events: Int16(POLLIN), revents: 0)
            while got < buf.count, poll(&p, 1, 300) == 1 {
                let n = buf.withUnsafeMutableBytes { read(c, $0.baseAddress! + got, $0.count - got) }
                if n <= 0 { break }
                got += n
            }
            let text = String(decoding: buf[0..<got], as: UTF8.self)
            let reply = text.contains("\r\nBEGIN\r\n") ? "OK 0123456789abcdef0123456789abcdef\r\n" : "REJECTED EXTERNAL\r\n"
            _ = reply.withCString { write(c, $0, strlen($0)) }
            _exit(0)
        }
        defer { var st: Int32 = 0; waitpid(pid, &st, 0) }
        #expect(throws: Never.self) { _ = try DBusConnection.open(path, bus: false) }
    }

    /// The client against a real bus: dbus-daemon (Debian's `dbus`) on a private socket.
    @Test func talksToARealBus() throws {
        guard access("/usr/bin/dbus-daemon", X_OK) == 0 else { return }
        var tmpl = Array("/tmp/berth-dbus-XXXXXX".utf8CString)
        guard let d = mkdtemp(&tmpl) else { return }
        let dir = String(cString: d)
        defer { _ = unlink(dir + "/bus"); _ = rmdir(dir) }
        let conf = "<busconfig><type>session</type><listen>unix:path=\(dir)/bus</listen><auth>EXTERNAL</auth>" +
                   "<policy context=\"default\"><allow send_destination=\"*\" eavesdrop=\"true\"/><allow eavesdrop=\"true\"/><allow own=\"*\"/></policy></busconfig>"
        try FS.writeAtomically(dir + "/conf", Array(conf.utf8))
        defer { _ = unlink(dir + "/conf") }
        var pid: pid_t = 0
        let args = ["dbus-daemon", "--nofork", "--config-file=\(dir)/conf"]
        var cargs = args.map { strdup($0) } + [nil]
        defer { for a in cargs { free(a) } }
        #expect(posix_spawn(&pid, "/usr/bin/dbus-daemon", nil, nil, &cargs, environ) == 0)
        // SIGKILL: the test runner's threads may block SIGTERM, and a spawned child inherits that.
        defer { kill(pid, SIGKILL); var st: Int32 = 0; waitpid(pid, &st, 0) }
        for _ in 0..<200 where access(dir + "/bus", F_OK) != 0 { usleep(10_000) }
        let c = try DBusConnection.open(dir + "/bus", bus: true)
        let names = try c.call(destination: "org.freedesktop.DBus", path: "/org/freedesktop/DBus",
                               interface: "org.freedesktop.DBus", member: "ListNames")
        guard case .array("s", let list)? = names.body.first else { Issue.record("no names"); return }
        #expect(list.contains(.string("org.freedesktop.DBus")))
        let owner = try c.call(destination: "org.freedesktop.DBus", path: "/org/freedesktop/DBus",
                               interface: "org.freedesktop.DBus", member: "GetNameOwner", body: [.string("org.freedesktop.DBus")])
        #expect(owner.body.first == .string("org.freedesktop.DBus"))
        // An error reply comes back as its message, or raw with allowError.
        let err = try c.call(destination: "org.freedesktop.DBus", path: "/org/freedesktop/DBus", interface: "org.freedesktop.DBus",
                             member: "GetNameOwner", body: [.string("org.example.Nobody")], allowError: true)
        #expect(err.type == DBusMessage.error && err.errorName == "org.freedesktop.DBus.Error.NameHasNoOwner")
        #expect(throws: BerthError.self) {
            try c.call(destination: "org.freedesktop.DBus", path: "/org/freedesktop/DBus", interface: "org.freedesktop.DBus",
                       member: "NoSuchMethod")
        }
    }
}
