import LabSync
import PluginHost
import VirtualMemory

/// Pressure actors that work through a plugin: device-private migration,
/// attach/detach races, and address spaces that exit under a device.
enum DeviceActors {
    static func actors(_ lab: Lab, _ spec: PressureSpec, seed: UInt64, stop: StopFlag, counters: RunCounters) -> [(String, @Sendable (Heartbeat) -> Void)] {
        var actors: [(String, @Sendable (Heartbeat) -> Void)] = []
        for (index, target) in spec.deviceMigration.enumerated() {
            let (instance, binding) = lab.binding(of: target.plugin, on: target.space, target.mapping)
            guard instance.canMigrate else {
                lab.notes.append("no device migration for \(target.plugin) on \(target.space)/\(target.mapping): the plugin has no migrate operation")
                continue
            }
            let (_, mapping) = lab.locate(target.space, target.mapping)
            actors.append(("migrate to \(target.plugin) \(target.space)/\(target.mapping)", { heartbeat in
                // Ranges to the device's memory and back (Linux: migrate_vma
                // as drm_gpusvm drives it); a CPU or another device touching
                // a device-private page faults it home.
                var rng = SplitMix64.stream(2_000 + index, of: seed)
                let pages = min(target.pages, mapping.pages)
                Pressure.repeatEvery(target.rate, stop, lab.machine, heartbeat) {
                    let first = rng.next() % UInt64(mapping.pages - pages + 1)
                    do {
                        try instance.migrate(
                            binding, deviceAddress: binding.deviceAddress + first * 4096, length: UInt64(pages) * 4096, toDevice: rng.next() % 4 != 0)
                        return true
                    } catch {
                        counters.failedAccesses.add(1, ordering: .relaxed)  // VRAM full, pages busy: allowed
                        return false
                    }
                }
            }))
        }
        for (index, target) in spec.attachChurn.enumerated() {
            let instance = lab.instance(of: target.plugin)
            let (spaceIndex, mapping) = lab.locate(target.space, target.mapping)
            let space = lab.spaces[spaceIndex]
            let reader = WorkloadSpec(name: "attach-churn \(target.plugin)", actor: .device(plugin: target.plugin), space: target.space, mapping: target.mapping)
            let label = lab.label(of: target.plugin)
            let shard = counters.attachChurnShard(index)
            actors.append(("attach-churn \(target.plugin) \(target.space)/\(target.mapping)", { heartbeat in
                // A subscription added while invalidations are in flight
                // must not miss one (the race `mm_lock` closed: Andrea
                // Arcangeli, linux-kernel, 2008-05-07, "Re: [PATCH 01 of 11]
                // mmu-notifier-core"). Each round attaches a fresh
                // binding, reads through it at once (checked as any read), and
                // detaches it while the rest of the run keeps invalidating.
                var rng = SplitMix64.stream(3_000 + index, of: seed)
                let history = AccessHistory()
                let path = "attach-churn read"
                lab.actors.registerCurrentThread(ActorIdentity(name: heartbeat.name, instance: label, path: path, history: history))
                Pressure.repeatEvery(target.rate, stop, lab.machine, heartbeat) {
                    let binding: PluginInstance.Binding
                    do {
                        // Pinned: a registration without on-demand paging,
                        // which pins the whole mapping (long-term) for as
                        // long as it lives.
                        binding = try instance.attach(
                            addressSpace: space.id, start: mapping.address, length: UInt64(mapping.pages) * 4096, write: false,
                            pinned: target.pinned)
                    } catch {
                        counters.failedAccesses.add(1, ordering: .relaxed)
                        return false
                    }
                    let thread = WorkloadThread(
                        lab: lab, spec: reader, mapping: mapping, space: space, writerIndex: nil, writers: 1, device: (instance, binding, label),
                        counters: shard, heartbeat: heartbeat, path: path, history: history)
                    for _ in 0..<target.pages { thread.read(Int(rng.next() % UInt64(mapping.pages))) }
                    instance.detach(binding)
                    return false  // the reads counted the actor's successes
                }
            }))
        }
        for (index, exits) in spec.exitRelease.enumerated() {
            actors.append((
                "exit-release \(exits.plugin)", exitRelease(lab, exits, actor: UInt8(truncatingIfNeeded: index), stop: stop, counters: counters)
            ))
        }
        return actors
    }

    /// Everything is torn down before the mm goes (Linux: `release` runs
    /// "always before all pages are freed", `struct mmu_notifier_ops`;
    /// docs/CONTRACT.md, rule 11). Each round makes
    /// an address space, fills it from the CPU, binds it to the device, reads
    /// it back through the device, and exits it with the binding still in
    /// place, so `release` must tear the device's view down; the detach that
    /// follows must then be harmless. What the device reads must be the
    /// space's own data; after the exit the device must not reach it at all
    /// (its access fails); every frame must come back (the pin-leak check
    /// at the end).
    private static func exitRelease(
        _ lab: Lab, _ exits: PressureSpec.ExitRelease, actor: UInt8, stop: StopFlag, counters: RunCounters
    ) -> @Sendable (Heartbeat) -> Void {
        let instance = lab.instance(of: exits.plugin)
        let label = lab.label(of: exits.plugin)
        let machine = lab.machine
        return { heartbeat in
            let history = AccessHistory()
            lab.actors.registerCurrentThread(ActorIdentity(name: heartbeat.name, instance: label, path: "exit-release read", history: history))
            var round: UInt32 = 0
            Pressure.repeatEvery(exits.rate, stop, machine, heartbeat) {
                round &+= 1
                let space = machine.makeAddressSpace()
                lab.watch(space)
                let length = UInt64(exits.pages) * 4096
                guard let base = try? space.map(length: length, kind: .anonymousPrivate) else {
                    space.exit()
                    return false
                }
                // Pages whose write failed (memory ran out) are not checked.
                let written = (0..<exits.pages).map { page in
                    (try? space.write(base + UInt64(page) * 4096, shortLivedTag(actor, round, page))) != nil
                }
                guard let binding = try? instance.attach(addressSpace: space.id, start: base, length: length) else {
                    counters.failedAccesses.add(1, ordering: .relaxed)
                    space.exit()
                    return false
                }
                for page in 0..<exits.pages where written[page] {
                    var bytes = [UInt8](repeating: 0, count: 16)
                    let began = lab.clock.nanoseconds
                    history.record(base + UInt64(page) * 4096, write: false, at: began)
                    do {
                        try bytes.withUnsafeMutableBytes { try instance.access(binding, deviceAddress: binding.deviceAddress + UInt64(page) * 4096, write: false, buffer: $0) }
                    } catch {
                        counters.failedAccesses.add(1, ordering: .relaxed)
                        continue
                    }
                    counters.deviceReads.add(1, ordering: .relaxed)
                    counters.checkedReads.add(1, ordering: .relaxed)
                    let expected = shortLivedTag(actor, round, page)
                    if bytes != expected {
                        let address = base + UInt64(page) * 4096
                        let content = PageContent(bytes, mappings: lab.mappings)
                        var foreign = false
                        if case .tag = content { foreign = true }
                        if case .shortLived(let other, _, _) = content, other != actor { foreign = true }
                        let invariant: Finding.Invariant = foreign ? .crossSpaceLeak : .useAfterFree
                        let event = lab.lastInvalidation(space.id, address, atOrBefore: began)
                        let key = BugKey(invariant: invariant, instance: label, path: "exit-release read", event: event.map { "\($0.event)" })
                        lab.noteSymptom(Symptom(key: key, page: PageID(space.id, address), found: nil, nanoseconds: began, reader: ThreadIdentity.current.tid)) {
                            Finding(
                                invariant: invariant,
                                detail: "exit-release round \(round): the device read " + content.describe(mappings: lab.mappings)
                                    + " from page \(page) of a short-lived space at 0x" + String(address, radix: 16) + ", which holds its own tag",
                                trail: lab.trail.trail(space: space.id, address: address), seconds: lab.clock.seconds(began), actor: heartbeat.name)
                        }
                    }
                }
                space.exit()  // the device is still bound: release tears its view down
                // The space is gone: a device that still reaches its memory
                // kept translations release should have torn down.
                var after = [UInt8](repeating: 0, count: 16)
                let tried = lab.clock.nanoseconds
                history.record(base, write: false, at: tried)
                let reached = (try? after.withUnsafeMutableBytes {
                    try instance.access(binding, deviceAddress: binding.deviceAddress, write: false, buffer: $0)
                }) != nil
                if reached {
                    // Not a symptom of anything the primary flags: the exited
                    // space's pages are gone, so this is the root finding.
                    let key = BugKey(invariant: .useAfterFree, kind: "device view outlived exit", instance: label, path: "read after exit", event: "exit")
                    lab.findings.note(key, at: tried) {
                        Finding(
                            invariant: .useAfterFree,
                            detail: "exit-release round \(round): after its address space exited, the \(exits.plugin) device still read "
                                + PageContent(after, mappings: lab.mappings).describe(mappings: lab.mappings)
                                + " through its binding (release must tear every translation down)",
                            trail: lab.trail.trail(space: space.id, address: base), seconds: lab.clock.seconds(tried), actor: heartbeat.name)
                    }
                }
                instance.detach(binding)
                return true
            }
        }
    }

    /// The last byte of a short-lived space's tag (the tracked mappings' is 0xA5).
    static let shortLivedMagic: UInt8 = 0xE5

    /// What page `page` of the short-lived space of exit-release actor
    /// `actor`'s round `round` holds: round, page, the actor in byte 14,
    /// magic `shortLivedMagic` in byte 15.
    static func shortLivedTag(_ actor: UInt8, _ round: UInt32, _ page: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: shortLivedMagic, count: 16)
        for i in 0..<4 {
            bytes[i] = UInt8(truncatingIfNeeded: round >> (8 * UInt32(i)))
            bytes[4 + i] = UInt8(truncatingIfNeeded: UInt32(page) >> (8 * UInt32(i)))
        }
        bytes[14] = actor
        return bytes
    }
}
