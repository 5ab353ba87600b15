import LabSync
import MMUNotifier

extension Machine {
    /// Writes every dirty page-cache page of `file` back to the file, first
    /// write-protecting each mapping of it under a `writeProtect`
    /// invalidation (Linux: `page_mkclean` in writeback). A secondary that
    /// keeps writing must fault again and report the page dirty again: the
    /// dirty state must transfer (docs/CONTRACT.md, rule 15). Returns pages
    /// written.
    @discardableResult
    public func writeback(_ file: BackingFile) -> Int {
        // In page order: a controlled scheduler's replay must see the same order.
        let frames = file.cacheLock.withLock { file.pageCache.sorted { $0.key < $1.key }.map(\.value).filter { memory.tryGet($0) } }
        var written = 0
        for frame in frames {
            memory.lock(frame)
            forEachMapping(of: frame) { space, address in
                space.invalidateBlocking(address, address + 4096, .writeProtect) { _, pte, _ in
                    guard pte.isPresent, pte.frame == frame else { return }
                    if pte.isDirty { memory.setFlags(.dirty, on: frame) }
                    pte = pte.with(writable: false).with(dirty: false)
                }
            }
            if memory.testAndClear(.dirty, on: frame) {
                let (_, index) = memory.owner(of: frame)
                file.cacheLock.withLock {
                    file.storedPage(index).copyMemory(from: UnsafeRawBufferPointer(memory.payload(of: frame)))
                    file.writebacks += 1
                }
                statistics.writebacks.add(1, ordering: .relaxed)
                written += 1
            }
            memory.unlock(frame)
            memory.put(frame)
        }
        return written
    }
}

extension Machine {
    /// Frees every cache page nobody maps (Linux: `echo 3 > drop_caches`,
    /// plus what reclaim would do to orphaned swap-cache pages): page-cache
    /// pages are written back if dirty and dropped; swap-cache pages whose
    /// slot no PTE refers to are dropped. Pages that are mapped, pinned or
    /// locked right now stay. Returns frames freed.
    ///
    /// A swap-cache page can be left orphaned when its last user goes while
    /// reclaim or migration holds the page's lock, as in Linux; the leak
    /// check of the oracle runs this first, so only real leaks remain.
    @discardableResult
    public func dropCaches() -> Int {
        var freed = 0
        for frame in 0..<Int32(memory.frameCount) {
            let flags = memory.flags(of: frame)
            guard flags.contains(.allocated), !flags.contains(.tail), flags.contains(.onLRU), memory.mapcount(of: frame) == 0,
                memory.pincount(of: frame) == 0, memory.node(of: frame).isolate(frame, memory: memory)
            else { continue }
            if reclaim(isolated: frame, ignoreReferences: true) { freed += 1 }
        }
        return freed
    }
}
