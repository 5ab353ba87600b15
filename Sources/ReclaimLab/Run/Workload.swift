import Foundation
import LabSync
import PluginHost
import Synchronization
import VirtualMemory

/// Chooses pages the way a workload says: uniform, sequential, or Zipf
/// (inverse CDF, precomputed once per workload).
struct PagePicker {
    private let pages: Int
    private let pattern: WorkloadSpec.Pattern
    private var next = 0
    private let cdf: [Double]

    init(pages: Int, pattern: WorkloadSpec.Pattern, start: Int) {
        self.pages = pages
        self.pattern = pattern
        next = start % max(pages, 1)
        if case .zipfian(let s) = pattern {
            var sums = [Double](repeating: 0, count: pages)
            var total = 0.0
            for rank in 0..<pages {
                total += 1 / pow(Double(rank + 1), s)
                sums[rank] = total
            }
            cdf = sums.map { $0 / total }
        } else {
            cdf = []
        }
    }

    mutating func pick(_ rng: inout SplitMix64) -> Int {
        switch pattern {
        case .uniform: return Int(rng.next() % UInt64(pages))
        case .sequential:
            defer { next = (next + 1) % pages }
            return next
        case .zipfian:
            let u = Double(rng.next() >> 11) / Double(1 << 53)
            var low = 0
            var high = pages - 1
            while low < high {
                let middle = (low + high) / 2
                if cdf[middle] < u { low = middle + 1 } else { high = middle }
            }
            return low
        }
    }
}

/// Counts shared by every actor of a run.
final class RunCounters: Sendable {
    let cpuReads = Atomic<Int>(0)
    let cpuWrites = Atomic<Int>(0)
    let deviceReads = Atomic<Int>(0)
    let deviceWrites = Atomic<Int>(0)
    let failedAccesses = Atomic<Int>(0)
    let checkedReads = Atomic<Int>(0)

    var operations: Int {
        cpuReads.load(ordering: .relaxed) + cpuWrites.load(ordering: .relaxed) + deviceReads.load(ordering: .relaxed)
            + deviceWrites.load(ordering: .relaxed)
    }
}

/// One thread of a workload: picks pages, reads and writes them through
/// the CPU or its device, and checks every read against the oracle.
struct WorkloadThread {
    let lab: Lab
    let spec: WorkloadSpec
    let mapping: TrackedMapping
    let space: AddressSpace
    /// This thread's place among the mapping's writer threads (it writes
    /// only the pages that are its own), if it writes.
    let writerIndex: Int?
    let writers: Int
    let device: (instance: PluginInstance, binding: PluginInstance.Binding)?
    let counters: RunCounters
    let findings: FindingLog
    let heartbeat: Heartbeat

    func run(seed: UInt64, stop: StopFlag) {
        var rng = SplitMix64(seed: seed)
        var picker = PagePicker(pages: mapping.pages, pattern: spec.pattern, start: Int(rng.next() % UInt64(mapping.pages)))
        let interval: Duration? = spec.rate > 0 ? .nanoseconds(1_000_000_000 / spec.rate) : nil
        while !stop.isSet {
            heartbeat.beat()
            var page = picker.pick(&rng)
            let wantsWrite = writerIndex != nil && Double(rng.next() >> 11) / Double(1 << 53) < spec.writes
            if wantsWrite, let own = ownPage(near: page) {
                page = own
                write(page)
            } else {
                read(page)
            }
            if let interval {
                lab.machine.sync.sleep(for: interval)
            } else {
                lab.machine.sync.preemptionPoint()  // a device access may take no host lock at all
            }
        }
        heartbeat.finish()
    }

    /// The page of this writer nearest `page` (outside the duplicates).
    private func ownPage(near page: Int) -> Int? {
        guard let k = writerIndex else { return nil }
        let first = mapping.duplicates
        guard mapping.pages - first > k else { return nil }
        let offset = max(page - first, 0)
        var own = first + offset - offset % writers + k
        if own >= mapping.pages { own -= writers }
        return own >= first ? own : nil
    }

    private func access(_ page: Int, write: Bool, _ bytes: inout [UInt8]) -> Bool {
        let address = mapping.address + UInt64(page) * 4096
        do {
            if let device {
                let target = device.binding.deviceAddress + UInt64(page) * 4096
                try bytes.withUnsafeMutableBytes { try device.instance.access(device.binding, deviceAddress: target, write: write, buffer: $0) }
                mapping.hot?.deviceUsed(page, at: lab.trail.clock.nanoseconds)
                if write { counters.deviceWrites.add(1, ordering: .relaxed) } else { counters.deviceReads.add(1, ordering: .relaxed) }
            } else if write {
                try space.write(address, bytes)
                counters.cpuWrites.add(1, ordering: .relaxed)
            } else {
                bytes = try space.read(address)
                counters.cpuReads.add(1, ordering: .relaxed)
            }
            return true
        } catch {
            // munmap churn, mprotect flips, an OOM kill: the access fails
            // cleanly, which is allowed; what it returns is never checked.
            counters.failedAccesses.add(1, ordering: .relaxed)
            return false
        }
    }

    private func write(_ page: Int) {
        let epoch = mapping.epoch.load(ordering: .acquiring)
        let (word, last) = mapping.version(of: page, in: epoch)
        let version = last + 1
        var bytes = mapping.tag(page: page, version: version)
        guard access(page, write: true, &bytes) else { return }
        // Published only if the memory was not replaced meanwhile (the
        // exchange fails if churn reset the page after `word` was read).
        if epoch % 2 == 0 && mapping.epoch.load(ordering: .acquiring) == epoch {
            mapping.publish(version, of: page, in: epoch, replacing: word)
        }
    }

    /// Reads `page` once and checks what came back (also used by actors
    /// that read through a binding of their own).
    func read(_ page: Int) {
        let epoch = mapping.epoch.load(ordering: .acquiring)
        let before = mapping.version(of: page, in: epoch).version
        var bytes = [UInt8](repeating: 0, count: 16)
        guard access(page, write: false, &bytes) else { return }
        guard epoch % 2 == 0, mapping.epoch.load(ordering: .acquiring) == epoch else { return }
        counters.checkedReads.add(1, ordering: .relaxed)
        check(bytes, page: page, before: before)
    }

    private func check(_ bytes: [UInt8], page: Int, before: UInt32) {
        if page < mapping.duplicates {
            if bytes != mapping.duplicateContent { report(.useAfterFree, page, "a duplicate page holds \(bytes)") }
            return
        }
        if bytes.allSatisfy({ $0 == 0 }) {
            if before > 0 { report(.lostWrite, page, "zeros, but version \(before) was written before the read") }
            return
        }
        guard let tag = TrackedMapping.decode(bytes) else {
            report(.useAfterFree, page, "\(bytes) is no page's data")
            return
        }
        if tag.space != UInt32(mapping.spaceIndex) {
            report(.crossSpaceLeak, page, "it holds page \(tag.page) of address space #\(tag.space)'s data")
        } else if tag.mapping != UInt32(mapping.mappingIndex) || tag.page != UInt32(page) {
            report(.useAfterFree, page, "it holds mapping #\(tag.mapping) page \(tag.page)'s data")
        } else if tag.version < before {
            report(.lostWrite, page, "version \(tag.version), but version \(before) was written before the read")
        }
    }

    /// Notes a finding about a read of `page` (the description is built
    /// only here, off the path of the reads that pass).
    private func report(_ invariant: Finding.Invariant, _ page: Int, _ what: String) {
        let address = mapping.address + UInt64(page) * 4096
        findings.note(
            invariant,
            "\(spec.name) (\(device == nil ? "CPU" : "device")) read \(mapping.spaceName)/\(mapping.mappingName) page \(page) at 0x"
                + String(address, radix: 16) + ": " + what,
            place: mapping.place(of: page), trail: lab.trail.trail(space: mapping.space.id, address: address))
    }
}
