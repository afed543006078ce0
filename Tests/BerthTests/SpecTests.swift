import Testing
@testable import BerthSpec

let examplesDir: String = {
    var parts = #filePath.split(separator: "/", omittingEmptySubsequences: false)
    parts.removeLast(3) // Tests/BerthTests/SpecTests.swift
    return parts.joined(separator: "/") + "/config-examples"
}()

func readText(_ path: String) -> String? {
    guard let f = fopen(path, "r") else { return nil }
    defer { fclose(f) }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = fread(&buf, 1, buf.count, f)
        if n <= 0 { break }
        out += buf[0..<n]
    }
    return String(decoding: out, as: UTF8.self)
}

#if canImport(Glibc)
import Glibc
#endif

@Suite struct ExampleConfigs {
    @Test(arguments: ["minimal", "runc-like", "readonly-rootfs", "user-namespace", "joined-netns", "time-namespace", "seccomp", "hooks"])
    func decodesAndValidates(name: String) throws {
        let text = try #require(readText("\(examplesDir)/\(name).json"))
        let spec = try Spec.load(Array(text.utf8))
        #expect(spec.process?.args?.isEmpty == false)
        #expect(spec.root?.path == "rootfs")
    }
}

/// A small valid config; each broken case edits its text.
let validConfig = """
{"ociVersion":"1.3.0","root":{"path":"rootfs"},
 "process":{"user":{"uid":0,"gid":0},"args":["sh"],"cwd":"/","env":["PATH=/bin"]},
 "linux":{"namespaces":[{"type":"pid"},{"type":"mount"},{"type":"uts"}]}}
"""

func loadError(_ text: String) -> String? {
    do { _ = try Spec.load(Array(text.utf8)); return nil } catch { return error.description }
}

@Suite struct BrokenConfigs {
    @Test func validBaseline() { #expect(loadError(validConfig) == nil) }

    @Test(arguments: [
        ("{\"type\":\"uts\"}", "{\"type\":\"pidd\"}", "config.json: linux.namespaces[2].type: unknown namespace type \"pidd\""),
        ("\"uid\":0", "\"uid\":-1", "config.json: process.user.uid: -1 is not an unsigned 32-bit integer"),
        ("\"uid\":0", "\"uid\":\"0\"", "config.json: process.user.uid: expected an unsigned 32-bit integer, found a string"),
        ("\"cwd\":\"/\"", "\"cwd\":\"x\"", "config.json: process.cwd: must be an absolute path, got \"x\""),
        ("\"args\":[\"sh\"]", "\"args\":[]", "config.json: process.args: must name the program to run"),
        ("\"root\":{\"path\":\"rootfs\"},", "", "config.json: root: missing required field"),
        ("{\"type\":\"uts\"}", "{\"type\":\"pid\"}", "config.json: linux.namespaces[2].type: namespace type \"pid\" appears twice"),
        ("\"ociVersion\":\"1.3.0\"", "\"ociVersion\":\"2.0\"", "config.json: ociVersion: unsupported version \"2.0\" (berth implements 1.3.0)"),
        ("\"env\":[\"PATH=/bin\"]", "\"env\":[\"PATH\"]", "config.json: process.env[0]: must be KEY=value, got \"PATH\""),
        ("{\"type\":\"uts\"}", "{\"type\":\"user\"}", "config.json: linux.uidMappings: a new user namespace needs uid mappings"),
        ("\"cwd\":\"/\"", "\"cwd\":\"/\",\"consoleSize\":{\"height\":-1,\"width\":80}", "config.json: process.consoleSize.height: -1 is not an unsigned integer"),
        ("\"cwd\":\"/\"", "\"cwd\":\"/\",\"rlimits\":[{\"type\":\"RLIMIT_NOFILE\",\"soft\":2,\"hard\":1}]", "config.json: process.rlimits[0]: soft limit 2 is above hard limit 1"),
        ("\"cwd\":\"/\"", "\"cwd\":\"/\",\"oomScoreAdj\":1001", "config.json: process.oomScoreAdj: must be between -1000 and 1000, got 1001"),
        ("\"cwd\":\"/\"", "\"cwd\":\"/\",\"scheduler\":{\"policy\":\"SCHED_FAST\"}", "config.json: process.scheduler.policy: unknown policy \"SCHED_FAST\""),
        ("\"cwd\":\"/\"", "\"cwd\":\"/\",\"execCPUAffinity\":{\"final\":\"3-1\"}", "config.json: process.execCPUAffinity.final: invalid CPU list \"3-1\""),
        ("{\"type\":\"uts\"}]", "{\"type\":\"uts\"}],\"sysctl\":{\"net.ipv4.ip_forward\":\"1\"}", "config.json: linux.sysctl.net.ipv4.ip_forward: not allowed in the host's network namespace"),
        ("{\"type\":\"uts\"}]", "{\"type\":\"uts\"}],\"sysctl\":{\"kernel.shmmax\":\"1\"}", "config.json: linux.sysctl.kernel.shmmax: not allowed in the host's ipc namespace"),
        ("{\"type\":\"uts\"}]", "{\"type\":\"uts\"}],\"sysctl\":{\"kernel.hostname\":\"x\"}", "config.json: linux.sysctl.kernel.hostname: sysctl \"kernel.hostname\" is not allowed as it conflicts with the OCI \"hostname\" field"),
        ("{\"type\":\"uts\"}]", "{\"type\":\"ipc\"}],\"sysctl\":{\"kernel.domainname\":\"x\"}", "config.json: linux.sysctl.kernel.domainname: not isolated by any namespace: it would change the host"),
        ("{\"type\":\"uts\"}]", "{\"type\":\"uts\"}],\"maskedPaths\":[\"proc/kcore\"]", "config.json: linux.maskedPaths[0]: must be an absolute path, got \"proc/kcore\""),
        ("{\"type\":\"uts\"}]", "{\"type\":\"uts\"}],\"personality\":{\"domain\":\"BSD\"}", "config.json: linux.personality.domain: unknown domain \"BSD\" (LINUX or LINUX32)"),
        ("{\"type\":\"uts\"}]", "{\"type\":\"uts\"}],\"seccomp\":{\"defaultAction\":\"SCMP_ACT_ALLOW\",\"syscalls\":[{\"names\":[],\"action\":\"SCMP_ACT_LOG\"}]}", "config.json: linux.seccomp.syscalls[0].names: must name at least one syscall"),
        ("{\"type\":\"uts\"}]", "{\"type\":\"uts\"}],\"devices\":[{\"type\":\"x\",\"path\":\"/dev/x\"}]", "config.json: linux.devices[0].type: unknown device type \"x\" (c, b, u or p)"),
        ("{\"type\":\"uts\"}]", "{\"type\":\"uts\"}],\"devices\":[{\"type\":\"c\",\"path\":\"/dev/..\",\"major\":1,\"minor\":1}]", "config.json: linux.devices[0].path: must name a file, got \"/dev/..\""),
        ("{\"type\":\"uts\"}]", "{\"type\":\"uts\"}],\"rootfsPropagation\":\"sideways\"", "config.json: linux.rootfsPropagation: unknown propagation \"sideways\""),
        (",{\"type\":\"uts\"}]}}", "]},\"hostname\":\"h\"}", "config.json: hostname: setting the hostname requires a uts namespace"),
        ("\"root\":{\"path\":\"rootfs\"},", "\"root\":{\"path\":\"rootfs\"},\"mounts\":[{\"destination\":\"rel\",\"type\":\"tmpfs\"}],", "config.json: mounts[0].destination: must be an absolute path, got \"rel\""),
        ("\"root\":{\"path\":\"rootfs\"},", "\"root\":{\"path\":\"rootfs\"},\"windows\":{},", "config.json: windows: not a Linux configuration; berth runs Linux containers only"),
        // Issue 8, D4: a NUL would cut the C string the kernel gets.
        ("\"args\":[\"sh\"]", "\"args\":[\"sh\\u0000x\"]", "config.json: process.args[0]: contains a NUL character (\\u0000), which cannot be passed to the kernel"),
        ("\"cwd\":\"/\"", "\"cwd\":\"/\\u0000\"", "config.json: process.cwd: contains a NUL character (\\u0000), which cannot be passed to the kernel"),
        ("{\"type\":\"uts\"}]", "{\"type\":\"uts\"}],\"sysctl\":{\"kernel.x\\u0000\":\"1\"}", "config.json: linux.sysctl: contains a NUL character (\\u0000), which cannot be passed to the kernel"),
    ])
    func namesTheField(from: String, to: String, expected: String) throws {
        let text = validConfig.replacingFirst(from, with: to)
        #expect(text != validConfig)
        #expect(loadError(text) == expected)
    }

    @Test func syntaxErrorsGiveLineAndColumn() {
        #expect(loadError("{\n  \"ociVersion\": \"1.0\",\n  oops\n}") == "config.json: invalid JSON: line 3 column 3: expected a string key, found character 'o'")
        #expect(loadError("{\"a\": [1, 2,]}") == "config.json: invalid JSON: line 1 column 13: unexpected character ']'")
        #expect(loadError("") == "config.json: invalid JSON: line 1 column 1: unexpected end of input")
        #expect(loadError("{} x") == "config.json: invalid JSON: line 1 column 4: unexpected character 'x' after the top-level value")
    }

    @Test func invalidUTF8BecomesReplacementCharactersAsInGo() throws {
        var bytes = Array(validConfig.utf8)
        let at = try #require(validConfig.utf8.firstIndex(of: UInt8(ascii: "{")))
        bytes.insert(contentsOf: Array("\"hostname\":\"a".utf8) + [0xff] + Array("b\",".utf8), at: validConfig.utf8.distance(from: validConfig.utf8.startIndex, to: at) + 1)
        let spec = try Spec.load(bytes)
        #expect(spec.hostname == "a\u{fffd}b")
    }

    @Test func keysMatchIgnoringCaseAsInGo() throws {
        // runc's decoder takes "pagesize" for "pageSize" (runc's own hugetlb test does).
        let text = validConfig.replacingFirst("{\"type\":\"uts\"}]", with: "{\"type\":\"uts\"}],\"resources\":{\"hugepageLimits\":[{\"pagesize\":\"2MB\",\"limit\":1}]}")
            .replacingFirst("\"args\"", with: "\"Args\"")
        let spec = try Spec.load(Array(text.utf8))
        #expect(spec.linux?.resources?.hugepageLimits?.first?.pageSize == "2MB")
        #expect(spec.process?.args == ["sh"])
        // A key given twice in two cases ("cpu", then "CPU": runc's update.bats writes it so
        // with jq) decodes into the one field twice, as in Go: objects merge, later wins,
        // null resets.
        let twice = validConfig.replacingFirst("{\"type\":\"uts\"}]", with: "{\"type\":\"uts\"}],\"resources\":{\"cpu\":{\"shares\":100,\"quota\":500000,\"cpus\":\"1\"},\"CPU\":{\"Cpus\":\"0\",\"Mems\":\"0\"},\"pids\":{\"limit\":5},\"Pids\":null}")
        let r = try #require(try Spec.load(Array(twice.utf8)).linux?.resources)
        #expect(r.cpu?.shares == 100 && r.cpu?.quota == 500000 && r.cpu?.cpus == "0" && r.cpu?.mems == "0")
        #expect(r.pids == nil)
    }

    @Test func emptyRequestsOfLaterFeaturesAreAccepted() {
        let text = validConfig.replacingFirst("\"cwd\":\"/\"", with: "\"cwd\":\"/\",\"consoleSize\":null,\"noNewPrivileges\":false,\"apparmorProfile\":\"\"")
        #expect(loadError(text) == nil)
    }
}

extension String {
    func replacingFirst(_ a: String, with b: String) -> String {
        guard let r = self.firstRange(of: a) else { return self }
        var s = self
        s.replaceSubrange(r, with: b)
        return s
    }
}

@Suite struct JSONParsing {
    @Test func valuesAndEscapes() throws {
        let v = try JSONValue.parse(#"{"s":"a\"b\\c\n\u00e9\ud83d\ude00","n":-12.5e3,"big":18446744073709551615,"t":true,"z":null,"a":[1,[]]}"#)
        #expect(v["s"] == .string("a\"b\\c\né😀"))
        #expect(v["n"] == .number("-12.5e3"))
        #expect(v["big"] == .number("18446744073709551615"))
        #expect(v["t"] == .bool(true))
        #expect(v["z"] == .null)
        #expect(v["a"] == .array([.number("1"), .array([])]))
        #expect(try JSONReader(v).integer("big", UInt64.self) == UInt64.max)
        #expect(throws: SpecError.self) { try JSONReader(v).integer("big", UInt32.self) }
        #expect(throws: SpecError.self) { try JSONReader(v).integer("n", Int64.self) }
    }

    @Test func duplicateKeysLastWins() throws {
        #expect(try JSONReader(JSONValue.parse(#"{"k":1,"k":2}"#)).integer("k", Int.self) == 2)
    }

    @Test func readerErrorsNameThePath() throws {
        let r = try JSONReader(JSONValue.parse(#"{"a":{"b":[{"c":"x"},{"c":5}]},"m":{"k":1}}"#))
        do {
            _ = try r.object("a").optObjects("b") { (o: JSONReader) throws(SpecError) in try o.string("c") }
            Issue.record("no error")
        } catch { #expect(error.description == "config.json: a.b[1].c: expected a string, found a number") }
        do { _ = try r.optStringMap("m"); Issue.record("no error") } catch {
            #expect(error.description == "config.json: m.k: expected a string, found a number")
        }
        #expect(r.raw("missing") == nil)
    }

    @Test func rejectsBadInput() {
        for bad in ["[1,]", "{\"a\"}", "\"unterminated", "01", "-", "tru", "[\"\u{01}\"]", "\"\\x\""] {
            #expect(throws: JSONSyntaxError.self) { try JSONValue.parse(bad) }
        }
    }

    @Test func deepNestingIsAnErrorNotACrash() {
        let deep = String(repeating: "[", count: 100_000)
        #expect(throws: JSONSyntaxError.self) { try JSONValue.parse(deep) }
    }
}
