import LabSync
import MMUNotifier

/// Kernel samepage merging (Linux: `mm/ksm.c`): pages of mergeable
/// mappings with identical payloads are replaced by one shared,
/// write-protected KSM frame; a write breaks the sharing again (`cowBreak`).
///
/// Each merge is two `ksm` invalidations of the page: one write-protects it
/// (so neither the CPU nor a device can change it while it is compared),
/// one points the PTE at the KSM frame. Inside both, subscribers that
/// declared `.changePTE` are told the new PTE (Linux's old
/// `set_pte_at_notify`), so they may skip the start and end of `ksm`
/// events and keep their translations (docs/CONTRACT.md, rule 13). KSM frames are not
/// reclaimed or migrated in this model.
public final class SamePageMerger: @unchecked Sendable {
    // @unchecked: `stable` is only touched by `scan`, which callers
    // serialise (one KSM thread, as in Linux).
    unowned let machine: Machine
    /// Content hash -> KSM frames with that hash (and their generations).
    private var stable: [Int: [(frame: Int32, generation: UInt32)]] = [:]

    init(machine: Machine) { self.machine = machine }

    /// One pass over every mergeable mapping; returns pages merged.
    public func scan() -> Int {
        var merged = 0
        var unstable: [Int: (AddressSpace, UInt64, Int32)] = [:]
        for space in machine.addressSpaces where !space.isKilled && !space.hasExited {
            let candidates = space.mmapLock.withShared { () -> [(UInt64, Int32)] in
                var found: [(UInt64, Int32)] = []
                space.ptl.withLock {
                    for vma in space.vmas where vma.mergeable {
                        space.pageTable.forEachEntry(from: vma.start >> 12, to: vma.end >> 12) { vpn, pte in
                            // (KSM leaves huge pages alone: Linux splits them first.)
                            if pte.isAccessible && !pte.isHuge { found.append((vpn << 12, pte.frame)) }
                        }
                    }
                }
                return found
            }
            for (address, frame) in candidates {
                let memory = machine.memory
                let flags = memory.flags(of: frame)
                guard flags.contains(.anonymous), !flags.contains(.ksm) else { continue }
                let hash = contentHash(frame)
                if let target = stableMatch(hash, frame) {
                    if merge(space, address, frame, into: target) { merged += 1 }
                    release(target)
                } else if let (otherSpace, otherAddress, otherFrame) = unstable[hash], otherFrame != frame,
                    sameContent(frame, otherFrame), let fresh = promote(otherFrame, hash: hash)
                {
                    unstable.removeValue(forKey: hash)
                    if merge(otherSpace, otherAddress, otherFrame, into: fresh) { merged += 1 }
                    if merge(space, address, frame, into: fresh) { merged += 1 }
                    release(fresh)
                } else {
                    unstable[hash] = (space, address, frame)
                }
            }
        }
        machine.statistics.ksmMerges.add(merged, ordering: .relaxed)
        return merged
    }

    private func contentHash(_ frame: Int32) -> Int {
        var hasher = Hasher()
        hasher.combine(bytes: UnsafeRawBufferPointer(machine.memory.payload(of: frame)))
        return hasher.finalize()
    }

    private func sameContent(_ a: Int32, _ b: Int32) -> Bool {
        let memory = machine.memory
        return memory.payload(of: a).elementsEqual(memory.payload(of: b))
    }

    /// A live KSM frame with the same content, with a reference taken.
    private func stableMatch(_ hash: Int, _ frame: Int32) -> Int32? {
        let memory = machine.memory
        stable[hash] = stable[hash]?.filter { memory.generation(of: $0.frame) == $0.generation && memory.flags(of: $0.frame).contains(.ksm) }
        for entry in stable[hash] ?? [] where memory.tryGet(entry.frame) {
            if memory.generation(of: entry.frame) == entry.generation, sameContent(entry.frame, frame) { return entry.frame }
            memory.put(entry.frame)
        }
        return nil
    }

    /// A new KSM frame holding `frame`'s content, with a reference for the caller.
    private func promote(_ frame: Int32, hash: Int) -> Int32? {
        let memory = machine.memory
        guard let fresh = memory.allocate(flags: [.anonymous, .ksm]) else { return nil }
        memory.copyPayload(from: frame, to: fresh)
        stable[hash, default: []].append((fresh, memory.generation(of: fresh)))
        return fresh
    }

    private func release(_ frame: Int32) { machine.memory.put(frame) }

    /// Replaces the page at `address` (expected to map `frame`) by `target`.
    private func merge(_ space: AddressSpace, _ address: UInt64, _ frame: Int32, into target: Int32) -> Bool {
        let memory = machine.memory
        var merged = false
        space.mmapLock.withShared {
            guard memory.tryGet(frame) else { return }
            defer { memory.put(frame) }
            guard memory.tryLock(frame) else { return }
            defer { memory.unlock(frame) }
            // 1. Write-protect, so the content cannot change under the compare.
            var protected = false
            space.invalidateBlocking(address, address + 4096, .ksm) { _, pte, _ in
                guard pte.isAccessible, pte.frame == frame else { return }
                // `write_protect_page`'s reference check: a pinned page
                // (someone may DMA into it) keeps its PTE as it was.
                guard memory.pincount(of: frame) == 0 else { return }
                if pte.isDirty { memory.setFlags(.dirty, on: frame) }
                pte = pte.with(writable: false).with(dirty: false)
                space.notifiers.changePTE(
                    PrimaryPTE(address: address, frame: PageFrameNumber(frame), generation: memory.generation(of: frame), writable: false))
                protected = true
            }
            guard protected, memory.mapcount(of: frame) == 1, memory.pincount(of: frame) == 0, sameContent(frame, target) else { return }
            // 2. Point the PTE at the KSM frame.
            space.invalidateBlocking(address, address + 4096, .ksm) { _, pte, released in
                guard pte.isPresent, pte.frame == frame, !pte.isWritable else { return }
                memory.removeMapping(frame)
                released.frames.append(frame)
                memory.addMapping(target)
                pte = PTE.present(frame: target, writable: false, accessed: pte.isAccessed).with(uffdWP: pte.isUffdWP)
                space.notifiers.changePTE(
                    PrimaryPTE(address: address, frame: PageFrameNumber(target), generation: memory.generation(of: target), writable: false))
                merged = true
            }
        }
        return merged
    }
}

extension Machine {
    /// The KSM scanner of this machine (created on first use).
    public var samePageMerger: SamePageMerger {
        ksmBox.withLock { box in
            if let existing = box { return existing }
            let made = SamePageMerger(machine: self)
            box = made
            return made
        }
    }
}
