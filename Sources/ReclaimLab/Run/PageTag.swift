/// The first 16 bytes of a page as the oracle writes and reads them, held
/// in place as two little-endian words: no allocation per access (a
/// `[UInt8]` per access cost about a sixth of a checked access, with its
/// generic-metadata lookup, malloc and free).
///
/// The layout is `TrackedMapping.tag`'s, byte for byte: bytes 0..<4 the
/// page, 4..<8 the version, 8..<12 the address space, 12..<15 the mapping,
/// 15 the magic (`TrackedMapping.magic`). `withUnsafeMutableBytes(of:)` on a
/// value hands exactly those 16 bytes to a copy or a device.
struct PageTag: Equatable {
    /// Bytes 0..<8 (page, then version), little-endian.
    var low: UInt64 = 0
    /// Bytes 8..<16 (space, mapping, magic), little-endian.
    var high: UInt64 = 0

    static let size = 16

    init() {}

    init(page: UInt32, version: UInt32, space: UInt32, mapping: UInt32) {
        precondition(mapping < 1 << 24, "a mapping index takes three bytes of a tag")
        low = UInt64(page) | UInt64(version) << 32
        high = UInt64(space) | UInt64(mapping) << 32 | UInt64(TrackedMapping.magic) << 56
    }

    /// The tag held in the first 16 bytes of `bytes` (fewer: zero-padded).
    init(_ bytes: [UInt8]) {
        self.init()
        withUnsafeMutableBytes(of: &self) { raw in
            bytes.withUnsafeBytes { raw.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0.prefix(Self.size))) }
        }
        low = UInt64(littleEndian: low)
        high = UInt64(littleEndian: high)
    }

    /// The 16 bytes, in order (for the slow path: classification and reports).
    var bytes: [UInt8] {
        var copy = PageTag()
        copy.low = low.littleEndian
        copy.high = high.littleEndian
        return withUnsafeBytes(of: &copy) { Array($0) }
    }

    /// Runs `body` on the 16 bytes in memory order (little-endian words).
    mutating func withBytes<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
        #if _endian(big)
        low = low.littleEndian
        high = high.littleEndian
        defer {
            low = UInt64(littleEndian: low)
            high = UInt64(littleEndian: high)
        }
        #endif
        return try withUnsafeMutableBytes(of: &self) { try body($0) }
    }

    var page: UInt32 { UInt32(truncatingIfNeeded: low) }
    var version: UInt32 { UInt32(truncatingIfNeeded: low >> 32) }
    var space: UInt32 { UInt32(truncatingIfNeeded: high) }
    var mapping: UInt32 { UInt32(truncatingIfNeeded: high >> 32) & 0xFF_FFFF }
    var magic: UInt8 { UInt8(truncatingIfNeeded: high >> 56) }
}
