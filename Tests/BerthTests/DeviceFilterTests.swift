import Testing
@testable import BerthCore
@testable import BerthSpec

/// Runs the generated program on one request: a small interpreter for exactly the eBPF
/// instructions DeviceFilter emits.
func runFilter(_ prog: [UInt8], type: UInt32, major: UInt32, minor: UInt32, access: UInt32) -> UInt64 {
    var r = [UInt64](repeating: 0, count: 11)
    let ctx: [UInt32] = [(access << 16) | type, major, minor]
    var pc = 0
    while pc * 8 < prog.count {
        let b = Array(prog[(pc * 8)..<(pc * 8 + 8)])
        let code = b[0], dst = Int(b[1] & 0xf), src = Int(b[1] >> 4)
        let off = Int(Int16(bitPattern: UInt16(b[2]) | UInt16(b[3]) << 8))
        let imm = Int32(bitPattern: UInt32(b[4]) | UInt32(b[5]) << 8 | UInt32(b[6]) << 16 | UInt32(b[7]) << 24)
        let k = UInt64(bitPattern: Int64(imm))
        pc += 1
        switch code {
        case 0x61: r[dst] = UInt64(ctx[off / 4])
        case 0xbf: r[dst] = r[src]
        case 0xb7: r[dst] = k
        case 0x57: r[dst] &= k
        case 0x77: r[dst] >>= k
        case 0x55: if r[dst] != k { pc += off }
        case 0x15: if r[dst] == k { pc += off }
        case 0x95: return r[0]
        default: Issue.record("unknown opcode \(code)"); return 99
        }
    }
    Issue.record("fell off the end")
    return 99
}

@Suite struct DeviceFilterProgram {
    func prog(_ rules: [DeviceRule]) throws -> [UInt8] {
        let eff = try DeviceFilter.effective(rules, extra: [])
        return DeviceFilter.program(defaultAllow: eff.defaultAllow, rules: eff.rules)
    }

    @Test func denyAllThenAllowOne() throws {
        let p = try prog([DeviceRule(allow: false, access: "rwm"),
                          DeviceRule(allow: true, type: "c", major: 1, minor: 11, access: "r")])
        #expect(runFilter(p, type: 2, major: 1, minor: 11, access: 2) == 1)   // read kmsg
        #expect(runFilter(p, type: 2, major: 1, minor: 11, access: 4) == 0)   // write kmsg
        #expect(runFilter(p, type: 2, major: 1, minor: 3, access: 6) == 1)    // rw null (default)
        #expect(runFilter(p, type: 2, major: 8, minor: 0, access: 2) == 0)    // a disk
        #expect(runFilter(p, type: 1, major: 8, minor: 0, access: 1) == 1)    // mknod any block
        #expect(runFilter(p, type: 2, major: 136, minor: 7, access: 6) == 1)  // a pty
    }

    @Test func laterRulesWin() throws {
        let p = try prog([DeviceRule(allow: false, access: "rwm"),
                          DeviceRule(allow: true, type: "c", major: 10, minor: nil, access: "rwm"),
                          DeviceRule(allow: false, type: "c", major: 10, minor: 229, access: "w")])
        #expect(runFilter(p, type: 2, major: 10, minor: 1, access: 6) == 1)
        #expect(runFilter(p, type: 2, major: 10, minor: 229, access: 2) == 1)
        #expect(runFilter(p, type: 2, major: 10, minor: 229, access: 6) == 0)
    }

    @Test func defaultAllowKeepsOnlyDenials() throws {
        let eff = try DeviceFilter.effective([DeviceRule(allow: true, access: "rwm"),
                                              DeviceRule(allow: false, type: "c", major: 1, minor: 11, access: "rwm")], extra: [])
        #expect(eff.defaultAllow)
        #expect(eff.rules.count == 1)
        let p = DeviceFilter.program(defaultAllow: eff.defaultAllow, rules: eff.rules)
        #expect(runFilter(p, type: 2, major: 1, minor: 11, access: 2) == 0)
        #expect(runFilter(p, type: 2, major: 8, minor: 0, access: 2) == 1)
        // No rules at all: runc's default allow list, as with runc (its emulator starts
        // from "deny all"), never the host's every device.
        let none = try DeviceFilter.effective([], extra: [])
        #expect(!none.defaultAllow && none.rules == DeviceFilter.defaults)
        let q = DeviceFilter.program(defaultAllow: none.defaultAllow, rules: none.rules)
        #expect(runFilter(q, type: 2, major: 1, minor: 11, access: 2) == 0)
        #expect(runFilter(q, type: 1, major: 8, minor: 0, access: 2) == 0)
        #expect(runFilter(q, type: 2, major: 1, minor: 3, access: 6) == 1)
        #expect(runFilter(q, type: 2, major: 10, minor: 200, access: 6) == 1)
    }

    @Test func badRules() {
        #expect(throws: SpecError.self) { try DeviceFilter.effective([DeviceRule(allow: true, type: "x")], extra: []) }
        // An unknown access letter fails where the rule reaches the program (runc's emulator)...
        #expect(throws: SpecError.self) {
            try DeviceFilter.effective([DeviceRule(allow: true), DeviceRule(allow: false, type: "c", access: "rx")], extra: [])
        }
        #expect(throws: SpecError.self) {
            try DeviceFilter.effective([DeviceRule(allow: false), DeviceRule(allow: true, type: "c", major: 1, minor: 3, access: "rx")], extra: [])
        }
        // ...and is let through where runc lets it: a denial under "deny all" (runc's own
        // test writes "rwa"), an allowance under "allow all".
        let deny = try? DeviceFilter.effective([DeviceRule(allow: false), DeviceRule(allow: false, type: "c", major: 1, minor: 11, access: "rwa")], extra: [])
        #expect(deny?.rules.first?.access == 6)  // r and w; the "a" dropped
        #expect((try? DeviceFilter.effective([DeviceRule(allow: true), DeviceRule(allow: true, type: "b", access: "rx")], extra: [])) != nil)
        // A rule for every device resets the mode whatever access it names, as in runc's
        // emulator: no letter of it is ever used.
        let reset = try? DeviceFilter.effective([DeviceRule(allow: true, access: "rx")], extra: [])
        #expect(reset?.defaultAllow == true && reset?.rules.isEmpty == true)
    }

    @Test func conversions() {
        #expect(CgroupResources.cpuWeight(shares: 1024) == 39)
        #expect(CgroupResources.cpuWeight(shares: 2) == 1)
        #expect(CgroupResources.cpuWeight(shares: 262_144) == 10000)
        #expect(CgroupResources.ioWeight(10) == 1)
        #expect(CgroupResources.ioWeight(1000) == 10000)
        #expect(CgroupResources.isPageSize("2MB") && CgroupResources.isPageSize("1GB") && !CgroupResources.isPageSize("2XB"))
    }

    @Test func resourceWrites() throws {
        var r = Resources()
        var m = MemoryResources(); m.limit = 1000; m.swap = 3000; m.reservation = 500
        r.memory = m
        var c = CPUResources(); c.quota = 50000; c.period = 100000; c.shares = 1024; c.cpus = "0-1"
        r.cpu = c
        r.pids = 50
        var warnings: [String] = []
        let w = try CgroupResources.writes(r, warnings: &warnings).map { "\($0.file)=\($0.value)" }
        #expect(w == ["memory.max=1000", "memory.low=500", "memory.swap.max=2000", "cpu.weight=39",
                      "cpu.max=50000 100000", "cpuset.cpus=0-1", "pids.max=50"])
        var bad = Resources(); var bm = MemoryResources(); bm.swap = 100; bad.memory = bm
        #expect(throws: SpecError.self) { try CgroupResources.writes(bad, warnings: &warnings) }
        var u = Resources(); u.unified = ["../../etc/passwd": "x"]
        #expect(throws: SpecError.self) { try CgroupResources.writes(u, warnings: &warnings) }
    }

    /// What Docker sends with every `docker update` (here `--restart always`): zeros for
    /// each field it does not change. runc writes nothing for them, and neither does Berth.
    @Test func zerosMeanUnset() throws {
        let doc = #"{"memory":{"limit":0,"reservation":0,"kernel":0,"kernelTCP":0,"swap":0},"cpu":{"shares":0,"quota":0,"period":0,"realtimeRuntime":0,"realtimePeriod":0,"cpus":"","mems":""},"blockIO":{"weight":0},"pids":{"limit":0}}"#
        let r = try Resources(JSONReader(JSONValue.parse(doc), file: "resources"))
        var warnings: [String] = []
        #expect(try CgroupResources.writes(r, warnings: &warnings).isEmpty)
        #expect(warnings.isEmpty)
        // Only the period: the quota stays what it is (update) or unlimited (create), never 0.
        var c = Resources(); var cpu = CPUResources(); cpu.period = 50000; c.cpu = cpu
        #expect(try CgroupResources.writes(c, warnings: &warnings).map(\.value) == ["max 50000"])
        #expect(try CgroupResources.writes(c, currentQuota: "20000", warnings: &warnings).map(\.value) == ["20000 50000"])
        // Only the quota: written alone, so the kernel keeps the period cpu.max has.
        var qo = Resources(); var qcpu = CPUResources(); qcpu.quota = 600000; qo.cpu = qcpu
        #expect(try CgroupResources.writes(qo, warnings: &warnings).map(\.value) == ["600000"])
        // Unlimited memory with swap unset: swap unlimited too; swap equal to memory: none.
        var m = Resources(); var mem = MemoryResources(); mem.limit = -1; m.memory = mem
        #expect(try CgroupResources.writes(m, warnings: &warnings).map { "\($0.file)=\($0.value)" } == ["memory.max=max", "memory.swap.max=max"])
        mem.limit = 1 << 20; mem.swap = 1 << 20; m.memory = mem
        #expect(try CgroupResources.writes(m, warnings: &warnings).map { "\($0.file)=\($0.value)" } == ["memory.max=1048576", "memory.swap.max=0"])
        mem.kernel = 1 << 20; m.memory = mem
        _ = try CgroupResources.writes(m, warnings: &warnings)
        #expect(warnings.count == 1)
    }
}
