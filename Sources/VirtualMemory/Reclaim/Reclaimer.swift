import LabSync
import MMUNotifier
import Synchronization

/// Page reclaim (Linux: `mm/vmscan.c`): a background reclaimer that wakes
/// below the low watermark and works up to the high one (kswapd), and
/// direct reclaim in an allocating thread that found nothing free.
///
/// Each candidate page is checked for recent use first: the CPU accessed
/// bits of every PTE mapping it, ORed with every secondary's `clearYoung`
/// of those pages (Linux: `folio_referenced_one` calls `ptep_clear_flush_young_notify`;
/// Andrea Arcangeli, linux-kernel/kvm-devel, 2008-01-24, "Re: [kvm-devel]
/// [PATCH] export notifier #1").
/// Only a cold page is unmapped, with a `vmscan` invalidation per mapping
/// the check found;
/// then an anonymous page goes to swap (written only if dirty or new to
/// swap), a file page is written back if dirty and dropped.
public final class Reclaimer: @unchecked Sendable {
    // @unchecked: `thread` is touched only by start/stop on one thread;
    // the rest is atomic or immutable.
    unowned let machine: Machine
    private let wakeup: WaitQueue
    private let pending = Atomic<Bool>(false)
    private let stopping = Atomic<Bool>(false)
    private var thread: (any ThreadHandle)?
    /// Frames isolated per batch (Linux: `SWAP_CLUSTER_MAX`).
    static let batch = 32

    init(machine: Machine) {
        self.machine = machine
        wakeup = WaitQueue("kswapd", domain: machine.sync)
    }

    /// Starts the background reclaimer thread.
    func start() {
        precondition(thread == nil, "the background reclaimer is already running")
        stopping.store(false, ordering: .sequentiallyConsistent)
        thread = machine.sync.spawnThread(named: "kswapd") { [self] in run() }
    }

    /// Stops the background reclaimer and waits for it.
    func stop() {
        stopping.store(true, ordering: .sequentiallyConsistent)
        wakeup.wakeAll()
        thread?.join()
        thread = nil
    }

    /// Wakes the background reclaimer if some node is below its low watermark.
    func wakeIfLow() {
        let memory = machine.memory
        guard memory.nodes.contains(where: { $0.freeCount < memory.configuration.lowFree }) else { return }
        if !pending.exchange(true, ordering: .sequentiallyConsistent) { wakeup.wakeAll() }
    }

    private func run() {
        let memory = machine.memory
        while !stopping.load(ordering: .sequentiallyConsistent) {
            _ = wakeup.wait(timeout: .milliseconds(50)) {
                pending.load(ordering: .sequentiallyConsistent) || stopping.load(ordering: .sequentiallyConsistent)
            }
            pending.store(false, ordering: .sequentiallyConsistent)
            for node in memory.nodes where node.freeCount < memory.configuration.lowFree {
                var rounds = 0
                while node.freeCount < memory.configuration.highFree, rounds < 64, !stopping.load(ordering: .relaxed) {
                    let freed = machine.sync.withReclaim { machine.shrink(node, target: Self.batch) }
                    machine.statistics.backgroundReclaims.add(1, ordering: .relaxed)
                    rounds += 1
                    if freed == 0 { break }
                }
            }
        }
    }
}
