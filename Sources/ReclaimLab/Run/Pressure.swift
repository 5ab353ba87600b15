import LabSync
import VirtualMemory

/// The pressure actors of a scenario: each a thread doing one thing to
/// memory at its rate until the run stops.
enum Pressure {
    /// The actors `spec` asks for, as (name, body) pairs.
    static func actors(
        _ lab: Lab, _ spec: PressureSpec, seed: UInt64, stop: StopFlag, counters: RunCounters
    ) -> [(String, @Sendable (Heartbeat) -> Void)] {
        var actors: [(String, @Sendable (Heartbeat) -> Void)] = []
        let machine = lab.machine
        let tracked = lab.mappings.flatMap { $0 }
        if let rate = spec.migrationRate, machine.memory.nodes.count > 1, !tracked.isEmpty {
            actors.append(("migrate", { heartbeat in
                var rng = SplitMix64.stream(1_000, of: seed)
                repeatEvery(rate, stop, machine, heartbeat) {
                    let mapping = tracked[Int(rng.next() % UInt64(tracked.count))]
                    let address = mapping.address + (rng.next() % UInt64(mapping.pages)) * 4096
                    let result = machine.migrate(lab.spaces[mapping.spaceIndex], address: address, to: Int(rng.next() % UInt64(machine.memory.nodes.count)))
                    if case .migrated = result { return true }
                    return false
                }
            }))
        }
        if let rate = spec.compactionRate, !tracked.isEmpty {
            actors.append(("compaction", { heartbeat in
                // Compaction moves a movable page within its node; a pinned
                // page is never isolated, so nobody hears of it.
                var rng = SplitMix64.stream(1_500, of: seed)
                repeatEvery(rate, stop, machine, heartbeat) {
                    let mapping = tracked[Int(rng.next() % UInt64(tracked.count))]
                    let space = lab.spaces[mapping.spaceIndex]
                    let address = mapping.address + (rng.next() % UInt64(mapping.pages)) * 4096
                    let pte = space.translate(address)
                    guard pte.isPresent, pte.frame != machine.zeroFrame else { return false }
                    let node = machine.memory.node(of: pte.frame).id
                    if case .migrated = machine.migrate(space, address: address, to: node, reason: .compaction) { return true }
                    return false
                }
            }))
        }
        if let scans = spec.collapseScansPerSecond {
            actors.append(("khugepaged", { heartbeat in
                repeatEvery(scans, stop, machine, heartbeat) {
                    _ = machine.collapseScan(limit: 8)
                    return true  // a scan that collapses nothing still scanned
                }
            }))
        }
        if let rate = spec.ksmScansPerSecond {
            actors.append(("ksm", { heartbeat in
                repeatEvery(rate, stop, machine, heartbeat) {
                    _ = machine.samePageMerger.scan()
                    return true  // a scan that merges nothing still scanned
                }
            }))
        }
        for target in spec.churn {
            let (spaceIndex, mapping) = lab.locate(target.space, target.mapping!)
            let space = lab.spaces[spaceIndex]
            actors.append(("churn \(target.space)/\(target.mapping!)", { heartbeat in
                repeatEvery(target.rate, stop, machine, heartbeat) {
                    // munmap + mmap at the same place: the data goes, fresh
                    // zero pages come; the epoch tells readers not to check
                    // across it.
                    let length = UInt64(mapping.pages) * 4096
                    let next = mapping.epoch.add(1, ordering: .acquiringAndReleasing).newValue + 1
                    let unmapped = (try? space.unmap(start: mapping.address, length: length)) != nil
                    let mapped = (try? space.map(length: length, kind: .anonymousPrivate, at: mapping.address)) != nil
                    if mapping.duplicates > 0 { try? space.adviseMergeable(start: mapping.address, length: length) }
                    mapping.reset(to: next)
                    for page in 0..<mapping.duplicates { try? space.write(mapping.address + UInt64(page) * 4096, mapping.duplicateContent) }
                    mapping.epoch.add(1, ordering: .acquiringAndReleasing)
                    return unmapped && mapped
                }
            }))
        }
        for target in spec.mprotect {
            let (spaceIndex, mapping) = lab.locate(target.space, target.mapping!)
            let space = lab.spaces[spaceIndex]
            actors.append(("mprotect \(target.space)/\(target.mapping!)", { heartbeat in
                // The whole mapping, or a random window of it (which splits
                // the huge pages it covers in part).
                var readOnly = false
                var rng = SplitMix64.stream(5_000, of: seed)
                let pages = target.pages ?? mapping.pages
                var first = 0
                repeatEvery(target.rate * 2, stop, machine, heartbeat) {
                    readOnly.toggle()
                    if readOnly { first = Int(rng.next() % UInt64(mapping.pages - pages + 1)) }
                    let start = mapping.address + UInt64(first) * 4096
                    return (try? space.protect(start: start, length: UInt64(pages) * 4096, readOnly ? .read : .readWrite)) != nil
                }
                try? space.protect(start: mapping.address, length: UInt64(mapping.pages) * 4096, .readWrite)
            }))
        }
        for target in spec.userfaultSnapshot {
            let (spaceIndex, mapping) = lab.locate(target.space, target.mapping!)
            let space = lab.spaces[spaceIndex]
            actors.append(("uffd-snapshot \(target.space)/\(target.mapping!)", { heartbeat in
                let length = UInt64(mapping.pages) * 4096
                guard (try? space.registerUserfault(start: mapping.address, length: length)) != nil else { return heartbeat.finish() }
                repeatEvery(target.rate, stop, machine, heartbeat) { snapshot(space, mapping) }
                // Nothing stays protected after the run: a writer must not wait for a monitor that is gone.
                try? space.userfaultWriteProtect(start: mapping.address, length: length, protect: false)
            }))
        }
        for target in spec.mremap {
            let (spaceIndex, mapping) = lab.locate(target.space, target.mapping!)
            let space = lab.spaces[spaceIndex]
            actors.append(("mremap \(target.space)/\(target.mapping!)", { heartbeat in
                // Away to an address 1 TiB further (nothing of the lab's is
                // there), a millisecond there, and back: the pages move with
                // their frames, each move invalidates the range it leaves,
                // and devices must refault at the old address once it is back.
                let length = UInt64(mapping.pages) * 4096
                let away = mapping.address + (1 << 40)
                repeatEvery(target.rate, stop, machine, heartbeat) {
                    guard (try? space.remap(from: mapping.address, length: length, to: away)) != nil else { return false }
                    machine.sync.sleep(for: .milliseconds(1))
                    do {
                        try space.remap(from: away, length: length, to: mapping.address)
                    } catch {
                        preconditionFailure("mremap of \(target.space)/\(target.mapping!) back to its place failed: \(error)")
                    }
                    return true
                }
            }))
        }
        for target in spec.forkRate {
            let space = lab.spaces[lab.scenario.spaces.firstIndex { $0.name == target.space }!]
            actors.append(("fork \(target.space)", { heartbeat in
                repeatEvery(target.rate, stop, machine, heartbeat) {
                    // A child that touches nothing and exits: the parent's
                    // pages go copy-on-write and back.
                    guard let child = try? space.fork() else { return false }
                    child.exit()
                    return true
                }
            }))
        }
        if let kill = spec.oomKill {
            let space = lab.spaces[lab.scenario.spaces.firstIndex { $0.name == kill.space }!]
            actors.append(("oom-kill \(kill.space)", { heartbeat in
                var waited = 0
                while !stop.isSet && waited < kill.afterMilliseconds {
                    heartbeat.beat()
                    machine.sync.sleep(for: .milliseconds(1))
                    waited += 1
                }
                // Killed (whether or not the reaper got everything: a
                // secondary may refuse it). Not killed before the run's end:
                // the actor never did its one step, and the report says so.
                if !stop.isSet {
                    let kills = machine.statistics.oomKills.load(ordering: .relaxed)
                    machine.kill(space)
                    if machine.statistics.oomKills.load(ordering: .relaxed) > kills { heartbeat.succeeded() }
                }
                heartbeat.finish()
            }))
        }
        for target in spec.writeback {
            let (spaceIndex, mapping) = lab.locate(target.space, target.mapping!)
            let file = lab.files[spaceIndex][mapping.mappingIndex]!
            actors.append(("writeback \(target.space)/\(target.mapping!)", { heartbeat in
                // page_mkclean: devices that keep writing must fault and
                // report the page dirty again (docs/CONTRACT.md, rule 15).
                repeatEvery(target.rate, stop, machine, heartbeat) {
                    _ = machine.writeback(file)
                    return true  // a pass with nothing dirty still ran
                }
            }))
        }
        for (index, target) in spec.lazyFree.enumerated() {
            let (spaceIndex, mapping) = lab.locate(target.space, target.mapping)
            let space = lab.spaces[spaceIndex]
            actors.append(("lazy-free \(target.space)/\(target.mapping)", { heartbeat in
                // MADV_FREE of a random window (past KSM's duplicate pages,
                // whose fixed content must stay): what reclaim discards
                // while clean reads back as zeroes, which the readers
                // accept until a write completes after the MADV_FREE.
                var rng = SplitMix64.stream(4_000 + index, of: seed)
                let usable = mapping.pages - mapping.duplicates
                guard usable > 0 else { return heartbeat.finish() }
                let pages = min(target.pages, usable)
                repeatEvery(target.rate, stop, machine, heartbeat) {
                    let first = mapping.duplicates + Int(rng.next() % UInt64(usable - pages + 1))
                    let epoch = mapping.epoch.load(ordering: .acquiring)
                    guard epoch % 2 == 0 else { return false }  // churn is replacing the memory
                    mapping.beginLazyFree(first..<first + pages, in: epoch)
                    let done = (try? space.adviseFree(start: mapping.address + UInt64(first) * 4096, length: UInt64(pages) * 4096)) != nil
                    mapping.endLazyFree(first..<first + pages, in: epoch)
                    return done
                }
            }))
        }
        return actors + DeviceActors.actors(lab, spec, seed: seed, stop: stop, counters: counters)
    }

    /// One live snapshot of `mapping` with userfaultfd write-protect (as
    /// QEMU's background snapshot or CRIU do): the mapping is
    /// write-protected whole, then released 16 pages at a time, the pages
    /// CPU writes are waiting on before the rest. Devices must drop their
    /// writable translations at the protect (an mprotect-type
    /// invalidation) and cannot fault writable until the release.
    static func snapshot(_ space: AddressSpace, _ mapping: TrackedMapping) -> Bool {
        let length = UInt64(mapping.pages) * 4096
        guard (try? space.userfaultWriteProtect(start: mapping.address, length: length, protect: true)) != nil else { return false }
        var next = 0
        while next < mapping.pages {
            for fault in space.pendingUserfaults() where mapping.contains(fault) {
                _ = try? space.userfaultWriteProtect(start: fault, length: 4096, protect: false)
            }
            let count = min(16, mapping.pages - next)
            _ = try? space.userfaultWriteProtect(start: mapping.address + UInt64(next) * 4096, length: UInt64(count) * 4096, protect: false)
            next += count
        }
        return true
    }

    /// Runs `body` `rate` times a second until `stop`; `body` says whether
    /// the step took effect (counted as the actor's success).
    static func repeatEvery(_ rate: Int, _ stop: StopFlag, _ machine: Machine, _ heartbeat: Heartbeat, _ body: () -> Bool) {
        let interval = Duration.nanoseconds(1_000_000_000 / max(rate, 1))
        while !stop.isSet {
            heartbeat.beat()
            if body() { heartbeat.succeeded() }
            machine.sync.sleep(for: interval)
        }
        heartbeat.finish()
    }
}
