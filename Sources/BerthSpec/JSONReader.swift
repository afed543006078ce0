/// Reads typed fields out of a JSON object, with errors that carry the JSON path.
/// Absent and null fields read as nil for the optional forms (Go's encoding/json treats
/// them alike); unknown keys are ignored, as Go does.
public struct JSONReader {
    public let value: JSONValue
    public let path: String
    public let file: String
    /// By exact key, or by lower-cased key when `folded` (some key repeats ignoring case).
    private let fields: [String: JSONValue]
    private let folded: Bool

    public init(_ value: JSONValue, path: String = "", file: String = "config.json") throws(SpecError) {
        guard case .object(let pairs) = value else {
            throw SpecError(file: file, path, "expected an object, found \(value.kindName)")
        }
        // Keys match as Go's decoder (runc's) matches them to fields: exactly or ignoring
        // ASCII case ("pagesize" for "pageSize"), every occurrence in order. So a key
        // given twice ("cpu" and "CPU", as runc's own tests write with jq) is decoded
        // twice into one field: objects merge (later keys win; here by chaining their
        // pairs), null resets, anything else replaces. That needs keys folded to lower
        // case; the common object, whose keys all differ even ignoring case, is kept by
        // its exact keys, with no allocation per key or per lookup.
        var repeats = false
        find: for i in pairs.indices {
            for j in pairs.startIndex..<i where JSONReader.equalIgnoringASCIICase(pairs[i].0, pairs[j].0) {
                repeats = true
                break find
            }
        }
        var d: [String: JSONValue] = [:]
        for (k, v) in pairs {
            let key = repeats ? JSONReader.asciiLowercased(k) : k
            if case .object(let later) = v, case .object(let earlier)? = d[key] {
                d[key] = .object(earlier + later)
            } else {
                d[key] = v
            }
        }
        self.value = value
        self.path = path
        self.file = file
        self.fields = d
        self.folded = repeats
    }

    static func asciiLowercased(_ s: String) -> String {
        guard s.utf8.contains(where: { $0 >= 0x41 && $0 <= 0x5a }) else { return s }
        return String(decoding: s.utf8.map { $0 >= 0x41 && $0 <= 0x5a ? $0 | 0x20 : $0 }, as: UTF8.self)
    }

    static func equalIgnoringASCIICase(_ a: String, _ b: String) -> Bool {
        guard a.utf8.count == b.utf8.count else { return false }
        for (x, y) in zip(a.utf8, b.utf8) where x != y {
            let lx = x >= 0x41 && x <= 0x5a ? x | 0x20 : x
            let ly = y >= 0x41 && y <= 0x5a ? y | 0x20 : y
            if lx != ly { return false }
        }
        return true
    }

    func sub(_ key: String) -> String { path.isEmpty ? key : path + "." + key }

    public func error(_ key: String, _ why: String) -> SpecError { SpecError(file: file, sub(key), why) }

    /// The raw value, nil when absent or null (see init for how keys match).
    public func raw(_ key: String) -> JSONValue? {
        if folded {
            guard let v = fields[JSONReader.asciiLowercased(key)] else { return nil }
            return v == .null ? nil : v
        }
        if let v = fields[key] { return v == .null ? nil : v }
        guard case .object(let pairs) = value else { return nil }
        for (k, v) in pairs where JSONReader.equalIgnoringASCIICase(k, key) { return v == .null ? nil : v }
        return nil
    }

    public func has(_ key: String) -> Bool { raw(key) != nil }

    public func string(_ key: String) throws(SpecError) -> String {
        guard let v = try optString(key) else { throw error(key, "missing required field") }
        return v
    }

    public func optString(_ key: String) throws(SpecError) -> String? {
        guard let v = raw(key) else { return nil }
        guard case .string(let s) = v else { throw error(key, "expected a string, found \(v.kindName)") }
        try JSONReader.noNUL(s, path: sub(key), file: file)
        return s
    }

    /// Strings reach the kernel as C strings, where a NUL would silently cut them
    /// (`"sh\u0000x"` would run `sh`). Go's syscall package refuses them too (EINVAL), so
    /// runc fails on them; Berth says which field. Invalid UTF-8 is not refused: like Go's
    /// decoder, the parser turns it into U+FFFD, so Berth sees what runc sees.
    static func noNUL(_ s: String, path: String, file: String) throws(SpecError) {
        if s.utf8.contains(0) { throw SpecError(file: file, path, "contains a NUL character (\\u0000), which cannot be passed to the kernel") }
    }

    public func optBool(_ key: String) throws(SpecError) -> Bool? {
        guard let v = raw(key) else { return nil }
        guard case .bool(let b) = v else { throw error(key, "expected a boolean, found \(v.kindName)") }
        return b
    }

    public func integer<T: FixedWidthInteger>(_ key: String, _ t: T.Type) throws(SpecError) -> T {
        guard let v = try optInteger(key, t) else { throw error(key, "missing required field") }
        return v
    }

    public func optInteger<T: FixedWidthInteger>(_ key: String, _ t: T.Type) throws(SpecError) -> T? {
        guard let v = raw(key) else { return nil }
        return try JSONReader.integer(v, t, path: sub(key), file: file)
    }

    static func integer<T: FixedWidthInteger>(_ v: JSONValue, _ t: T.Type, path: String, file: String) throws(SpecError) -> T {
        let name: String
        switch (T.isSigned, T.bitWidth) {
        case (false, 32): name = "an unsigned 32-bit integer"
        case (false, 64): name = "an unsigned 64-bit integer"
        case (true, 32): name = "a 32-bit integer"
        case (true, 64): name = "a 64-bit integer"
        default: name = T.isSigned ? "an integer" : "an unsigned integer"
        }
        guard case .number(let text) = v else { throw SpecError(file: file, path, "expected \(name), found \(v.kindName)") }
        guard let n = T(text) else { throw SpecError(file: file, path, "\(text) is not \(name)") }
        return n
    }

    public func object(_ key: String) throws(SpecError) -> JSONReader {
        guard let r = try optObject(key) else { throw error(key, "missing required field") }
        return r
    }

    public func optObject(_ key: String) throws(SpecError) -> JSONReader? {
        guard let v = raw(key) else { return nil }
        return try JSONReader(v, path: sub(key), file: file)
    }

    /// An array whose elements `each` reads; each gets its element and path ("a.b[3]").
    public func optArray<T>(_ key: String, _ each: (JSONValue, String) throws(SpecError) -> T) throws(SpecError) -> [T]? {
        guard let v = raw(key) else { return nil }
        guard case .array(let items) = v else { throw error(key, "expected an array, found \(v.kindName)") }
        var out: [T] = []
        out.reserveCapacity(items.count)
        for (i, item) in items.enumerated() { out.append(try each(item, "\(sub(key))[\(i)]")) }
        return out
    }

    public func optStrings(_ key: String) throws(SpecError) -> [String]? {
        let f = file
        return try optArray(key) { (v, p) throws(SpecError) -> String in
            guard case .string(let s) = v else { throw SpecError(file: f, p, "expected a string, found \(v.kindName)") }
            try JSONReader.noNUL(s, path: p, file: f)
            return s
        }
    }

    public func optObjects<T>(_ key: String, _ each: (JSONReader) throws(SpecError) -> T) throws(SpecError) -> [T]? {
        let f = file
        return try optArray(key) { (v, p) throws(SpecError) -> T in try each(try JSONReader(v, path: p, file: f)) }
    }

    /// An object of string values, such as sysctl. `allowNUL` only for values that never
    /// reach the kernel (annotations).
    public func optStringMap(_ key: String, allowNUL: Bool = false) throws(SpecError) -> [String: String]? {
        guard let v = raw(key) else { return nil }
        guard case .object(let pairs) = v else { throw error(key, "expected an object, found \(v.kindName)") }
        var out: [String: String] = [:]
        for (k, x) in pairs {
            guard case .string(let s) = x else { throw error(key + "." + k, "expected a string, found \(x.kindName)") }
            if !allowNUL {
                try JSONReader.noNUL(k, path: sub(key), file: file)
                try JSONReader.noNUL(s, path: sub(key) + "." + k, file: file)
            }
            out[k] = s
        }
        return out
    }

    /// Each key of an object, read by `each` with its own reader.
    public func optObjectMap<T>(_ key: String, _ each: (JSONReader) throws(SpecError) -> T) throws(SpecError) -> [String: T]? {
        guard let v = raw(key) else { return nil }
        guard case .object(let pairs) = v else { throw error(key, "expected an object, found \(v.kindName)") }
        var out: [String: T] = [:]
        for (k, x) in pairs { out[k] = try each(try JSONReader(x, path: sub(key) + "." + k, file: file)) }
        return out
    }
}
