import LabSync
import MMUNotifier

extension Machine {
    /// Bound on reaping rounds before the victim is given up (Linux:
    /// `MAX_OOM_REAP_RETRIES`, then `MMF_OOM_SKIP`).
    static let oomReapRounds = 10
    /// Reaping works through a victim in pieces this large.
    static let oomReapChunk: UInt64 = 2 << 20

    /// Reclaim could not free memory: choose the address space with the
    /// most resident pages, mark it killed, and reap it (Linux:
    /// `out_of_memory`, `oom_reap_task`).
    func outOfMemory(requester: AddressSpace) {
        let candidates = addressSpaces.filter { $0.state == .alive }
        guard let victim = candidates.max(by: { $0.residentPages.load(ordering: .relaxed) < $1.residentPages.load(ordering: .relaxed) }),
            victim.residentPages.load(ordering: .relaxed) > 0
        else { return }
        kill(victim)
    }

    /// Kills `victim` as the OOM killer does (its faults fail from now on)
    /// and reaps it. Returns false if it was not alive, or if reaping gave
    /// up on a range a secondary kept refusing.
    @discardableResult
    public func kill(_ victim: AddressSpace) -> Bool {
        let (killed, _) = victim.stateWord.compareExchange(
            expected: AddressSpace.State.alive.rawValue, desired: AddressSpace.State.killed.rawValue, ordering: .acquiringAndReleasing)
        guard killed else { return false }
        statistics.oomKills.add(1, ordering: .relaxed)
        return reap(victim)
    }

    /// Frees a killed address space's private anonymous memory with
    /// non-blockable `oomReap` invalidations, as Linux's
    /// `__oom_reap_task_mm`: it may not wait for anything, so it takes the
    /// mmap lock only if it is free, and a range whose start a secondary
    /// refuses is skipped and retried later, a bounded number of times;
    /// then the victim is given up. Returns whether everything was reaped.
    @discardableResult
    public func reap(_ victim: AddressSpace) -> Bool {
        var pending: [(UInt64, UInt64)]? = nil
        for round in 0..<Self.oomReapRounds {
            if round > 0 { sync.sleep(for: .microseconds(200)) }  // the reaper itself may wait between rounds
            guard victim.mmapLock.tryLockShared() else {
                statistics.oomReapRetries.add(1, ordering: .relaxed)
                continue
            }
            defer { victim.mmapLock.unlockShared() }
            if pending == nil {
                // Chunks on 2 MiB boundaries, so no huge page is reaped in part.
                pending = victim.vmas.filter { $0.kind == .anonymousPrivate }.flatMap { vma in
                    stride(from: vma.start & ~(Self.oomReapChunk - 1), to: vma.end, by: Int(Self.oomReapChunk)).map {
                        (max($0, vma.start), min($0 + Self.oomReapChunk, vma.end))
                    }
                }
            }
            var refused: [(UInt64, UInt64)] = []
            for (start, end) in pending! {
                do {
                    try victim.invalidate(start, end, .oomReap, blockable: false, flush: .gathered) { _, pte, released in
                        victim.zap(&pte, &released)
                    }
                } catch {
                    refused.append((start, end))
                    statistics.oomReapRetries.add(1, ordering: .relaxed)
                }
            }
            pending = refused
            if refused.isEmpty { return true }
        }
        statistics.oomGiveUps.add(1, ordering: .relaxed)
        return false
    }
}
