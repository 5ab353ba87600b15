// CPU reads and writes into a caller's buffer: the same path as `read` and
// `write` (`access`, under the page-table lock, faulting as needed) without
// the array each of those allocates, for callers that access pages millions
// of times a second (the reclaim lab's workloads).

extension AddressSpace {
    /// Copies the first `buffer.count` bytes of the page at `address` (at
    /// most the payload size) into `buffer`, as a CPU read; returns how many
    /// bytes it copied.
    public func read(_ address: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(MemoryError) -> Int {
        try access(address, write: false) { page in
            let count = min(buffer.count, page.count)
            if count > 0 { buffer.baseAddress!.copyMemory(from: page.baseAddress!, byteCount: count) }
            return count
        }
    }

    /// Writes `bytes` at the start of the page at `address`, as a CPU write.
    public func write(_ address: UInt64, from bytes: UnsafeRawBufferPointer) throws(MemoryError) {
        try access(address, write: true) { page in
            precondition(bytes.count <= page.count, "writing \(bytes.count) bytes into a \(page.count)-byte payload")
            if bytes.count > 0 { page.baseAddress!.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count) }
        }
    }
}
