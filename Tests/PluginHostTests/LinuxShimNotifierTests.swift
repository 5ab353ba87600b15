import LabSync
import PluginHost
import Testing
import TestSupport
import VirtualMemory

/// The Linux shim's notifier calls for a caller that already holds the
/// mmap lock (`__mmu_notifier_register`, `mmu_notifier_get_locked`,
/// `mmu_interval_notifier_insert_locked`: Linux asserts the write side),
/// and `mmu_interval_check_retry`, the lock-free early test of a read
/// sequence. Through the probe (Tests/Fixtures/Plugins/LinuxShim).
@Suite("Linux shim: locked registration, check_retry")
struct LinuxShimNotifierTests {
    typealias NotifierStep = LinuxShimMemoryTests.NotifierStep

    /// probe.h's `enum probe_extra_step`.
    enum ExtraStep: UInt64 { case insertLocked = 1, state, remove }

    /// What `body` answered, and the reports it made.
    static func reported<T>(_ probe: ShimProbe, _ body: () throws -> T) rethrows -> (T, [String]) {
        let before = probe.reports.count
        let answer = try body()
        return (answer, Array(probe.reports.dropFirst(before)))
    }

    @Test func mmuNotifierRegisterUnderTheMmapWriteLockSubscribesAndWithoutItWarns() throws {
        let probe = try ShimProbe()
        let shimOwn = probe.instance.subscribers.count
        // Under mmap_write_lock: registered, no report, and it hears the unmap.
        let (answer, clean) = try Self.reported(probe) { try probe.run(.notifier, [NotifierStep.registerLocked.rawValue, ShimProbe.MmapLock.write.rawValue]) }
        #expect(answer.result == 0, "\(answer)")
        #expect(clean.isEmpty, "\(clean)")
        #expect(probe.instance.subscribers.count == shimOwn + 1)
        try probe.space.populate(start: probe.address(0), length: 2 * 4096, write: true)
        try probe.space.unmap(start: probe.address(0), length: 4096)
        let state = try probe.run(.notifier, [NotifierStep.state.rawValue])
        #expect(state.result == Int64(ShimProbe.Event.unmap.rawValue) && state.arguments[0] >= 1 && state.arguments[0] == state.arguments[1],
                "\(state)")
        try probe.run(.notifier, [NotifierStep.unregister.rawValue])
        #expect(probe.instance.subscribers.count == shimOwn)

        // The read side, or no lock: Linux's mmap_assert_write_locked warns (and the registration goes on).
        for lock in [ShimProbe.MmapLock.read, .none] {
            let (answer, warned) = try Self.reported(probe) { try probe.run(.notifier, [NotifierStep.registerLocked.rawValue, lock.rawValue]) }
            #expect(answer.result == 0, "\(answer)")
            #expect(warned.count == 1 && warned[0].hasPrefix("WARN: mmap_assert_write_locked(mm) at notifier.c:"), "\(lock): \(warned)")
            #expect(warned.first?.hasSuffix("in __mmu_notifier_register()") == true, "\(warned)")
            try probe.run(.notifier, [NotifierStep.unregister.rawValue])
        }
        #expect(probe.instance.subscribers.count == shimOwn)
        probe.instance.destroy()
    }

    @Test func mmuNotifierGetLockedSharesWithGetCountsUsersAndRefusesToWrap() throws {
        let probe = try ShimProbe()
        let shimOwn = probe.instance.subscribers.count
        let write = ShimProbe.MmapLock.write.rawValue
        let (first, clean) = try Self.reported(probe) { try probe.run(.notifier, [NotifierStep.getLocked.rawValue, write]) }
        #expect(clean.isEmpty, "\(clean)")
        #expect(first.result == 1 && first.arguments[0] == 1, "allocated by alloc_notifier, one user: \(first)")
        // mmu_notifier_get with the same ops finds the same notifier.
        let second = try probe.run(.notifier, [NotifierStep.get.rawValue])
        #expect(second.result == 1 && second.arguments[0] == 2, "\(second)")
        #expect(probe.instance.subscribers.count == shimOwn + 1, "one notifier for the ops and mm")
        // Without the write lock: warned, and still the same notifier.
        let (third, warned) = try Self.reported(probe) {
            try probe.run(.notifier, [NotifierStep.getLocked.rawValue, ShimProbe.MmapLock.read.rawValue])
        }
        #expect(third.result == 1 && third.arguments[0] == 3, "\(third)")
        #expect(warned.count == 1 && warned[0].hasPrefix("WARN: mmap_assert_write_locked(mm) at notifier.c:"), "\(warned)")
        #expect(warned.first?.hasSuffix("in mmu_notifier_get_locked()") == true, "\(warned)")
        // A users count that would wrap is refused with -EOVERFLOW, as Linux's find_get_mmu_notifier does.
        #expect(try probe.run(.notifier, [NotifierStep.getSaturated.rawValue]).result == ShimProbe.EOVERFLOW)
        #expect(probe.instance.subscribers.count == shimOwn + 1, "no second notifier made for the same ops")
        // Three gets, three puts: freed by the last.
        #expect(try probe.run(.notifier, [NotifierStep.put.rawValue]).result == 0)
        #expect(try probe.run(.notifier, [NotifierStep.put.rawValue]).result == 0)
        #expect(try probe.run(.notifier, [NotifierStep.put.rawValue]).result == 1)
        #expect(probe.instance.subscribers.count == shimOwn)
        probe.instance.destroy()
    }

    @Test func mmuIntervalNotifierInsertLockedWatchesItsRangeOnly() throws {
        let probe = try ShimProbe()
        let (start, end) = (probe.address(4), probe.address(6))
        try probe.space.populate(start: probe.base, length: 16 * 4096, write: true)
        // Zero or wrapping lengths: -EOVERFLOW, as Linux's __mmu_interval_notifier_insert says.
        let write = ShimProbe.MmapLock.write.rawValue
        #expect(try probe.run(.extra, [ExtraStep.insertLocked.rawValue, start, 0, write]).result == ShimProbe.EOVERFLOW)
        #expect(try probe.run(.extra, [ExtraStep.insertLocked.rawValue, UInt64.max - 4095, 8192, write]).result == ShimProbe.EOVERFLOW)

        let (answer, clean) = try Self.reported(probe) { try probe.run(.extra, [ExtraStep.insertLocked.rawValue, start, end - start, write]) }
        #expect(answer.result == 0, "\(answer)")
        #expect(clean.isEmpty, "\(clean)")
        #expect(try probe.run(.extra, [ExtraStep.state.rawValue]).arguments[3] == end - 1, "interval.last is the last byte")
        // An unmap outside its range reaches the probe's own interval, not it.
        try probe.space.unmap(start: probe.address(10), length: 4096)
        #expect(try probe.run(.extra, [ExtraStep.state.rawValue]).result == 0)
        #expect(try probe.run(.intervalState).result >= 1)
        // Inside: it hears it, with the range and Linux's event.
        try probe.space.unmap(start: probe.address(5), length: 4096)
        let heard = try probe.run(.extra, [ExtraStep.state.rawValue])
        #expect(heard.result == 1, "\(heard)")
        #expect(Array(heard.arguments.prefix(3)) == [probe.address(5), probe.address(6), ShimProbe.Event.unmap.rawValue], "\(heard)")
        try probe.run(.extra, [ExtraStep.remove.rawValue])
        try probe.space.unmap(start: probe.address(4), length: 4096)
        #expect(try probe.run(.extra, [ExtraStep.state.rawValue]).result == 1, "removed: it hears no more")

        // Without the write side of the mmap lock: Linux's mmap_assert_write_locked warns.
        for lock in [ShimProbe.MmapLock.read, .none] {
            let (answer, warned) = try Self.reported(probe) { try probe.run(.extra, [ExtraStep.insertLocked.rawValue, start, end - start, lock.rawValue]) }
            #expect(answer.result == 0, "\(answer)")
            #expect(warned.count == 1 && warned[0].hasPrefix("WARN: mmap_assert_write_locked(mm) at interval.c:"), "\(lock): \(warned)")
            try probe.run(.extra, [ExtraStep.remove.rawValue])
        }
        probe.instance.destroy()
    }

    /// mmu_interval_check_retry answers what mmu_interval_read_retry does,
    /// without the driver's lock: true once an invalidation has moved the
    /// sequence past the one read_begin gave, and already inside the
    /// invalidate op once it has called mmu_interval_set_seq.
    @Test func mmuIntervalCheckRetrySeesARacedInvalidation() throws {
        let probe = try ShimProbe()
        let page = probe.address(2)
        try probe.space.write(page, payload(2, 1))
        let seq = UInt64(try probe.run(.readBegin).result)
        let quiet = try probe.run(.checkRetry, [seq, 1])
        #expect(quiet.result == 0 && Int64(bitPattern: quiet.arguments[1]) == -1, "nothing raced: \(quiet)")

        try probe.space.adviseDontNeed(start: page, length: 4096)
        let raced = try probe.run(.checkRetry, [seq, 0])
        #expect(raced.result == 1, "the invalidation moved the sequence: \(raced)")
        #expect(raced.arguments[1] == 1, "the op's own check, after set_seq and before the end, said retry: \(raced)")
        #expect(try probe.run(.readRetry, [seq]).result == 1, "read_retry agrees")

        let fresh = UInt64(try probe.run(.readBegin).result)
        #expect(fresh != seq)
        #expect(try probe.run(.checkRetry, [fresh, 0]).result == 0, "a sequence begun after it is current")
        #expect(probe.reports.isEmpty, "\(probe.reports)")
        probe.instance.destroy()
    }
}
