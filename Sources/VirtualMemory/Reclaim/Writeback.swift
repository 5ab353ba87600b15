import LabSync
import MMUNotifier

extension Machine {
    /// Writes every dirty page-cache page of `file` back to the file, first
    /// write-protecting each mapping of it under a `writeProtect`
    /// invalidation (Linux: `page_mkclean` in writeback). A secondary that
    /// keeps writing must fault again and report the page dirty again: the
    /// dirty state must transfer (seed 003). Returns pages written.
    @discardableResult
    public func writeback(_ file: BackingFile) -> Int {
        let frames = file.cacheLock.withLock { file.pageCache.values.filter { memory.tryGet($0) } }
        var written = 0
        for frame in frames {
            memory.lock(frame)
            forEachMapping(of: frame) { vma, address in
                vma.space.invalidateBlocking(address, address + 4096, .writeProtect) { _, pte, _ in
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
