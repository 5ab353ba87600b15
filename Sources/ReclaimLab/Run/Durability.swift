import MMUNotifier
import VirtualMemory

extension Lab {
    /// After teardown (every space exited, the caches dropped, so every
    /// dirty page written back): each page of each file mapping must hold,
    /// on "disk", the last version its writer completed (a page reclaimed
    /// clean after a device write that was never reported dirty loses data:
    /// docs/ORACLE.md, "Lost write"; the dirty state must transfer, Andrea
    /// Arcangeli, linux-kernel/kvm-devel, 2008-01-24, "Re: [kvm-devel]
    /// [PATCH] export notifier #1"). A pinned
    /// device's writes reach the file only through the dirty state it
    /// reports when it unpins, so this is where dropping it shows.
    func checkFilesHoldEveryWrite() {
        for (spaceIndex, tracked) in mappings.enumerated() {
            for mapping in tracked {
                guard let file = files[spaceIndex][mapping.mappingIndex] else { continue }
                // Never churned (the reader allows churn on anonymous mappings only).
                let epoch = mapping.epoch.load(ordering: .acquiring)
                guard epoch == 0 else { continue }
                for page in mapping.duplicates..<mapping.pages {
                    let completed = mapping.version(of: page, in: epoch).version
                    guard completed > 0 else { continue }
                    let stored = Array(file.storedBytes(at: page).prefix(16))
                    let held = TrackedMapping.decode(stored)
                    let version = held.flatMap { $0.page == UInt32(page) && $0.space == UInt32(spaceIndex) && $0.mapping == UInt32(mapping.mappingIndex) ? $0.version : nil } ?? 0
                    guard version < completed else { continue }
                    let address = mapping.address + UInt64(page) * 4096
                    let content = PageContent(stored, mappings: mappings)
                    // What the file holds instead may be another page's data,
                    // written there through a stale translation: then it is a
                    // symptom of the root cause the primary flagged for that page.
                    var found: PageID? = nil
                    if case .tag(let tag) = content {
                        let other = mappings[Int(tag.space)][Int(tag.mapping)]
                        found = PageID(other.space.id, other.address + UInt64(tag.page) * 4096)
                    }
                    let key = BugKey(invariant: .lostWrite, path: "file \(mapping.spaceName)/\(mapping.mappingName) after teardown")
                    let now = clock.nanoseconds
                    noteSymptom(Symptom(key: key, page: PageID(mapping.space.id, address), found: found, nanoseconds: now)) {
                        Finding(
                            invariant: .lostWrite,
                            detail: "after every space exited and the caches were written back, file \(file.name) page \(page) holds "
                                + (held == nil ? content.describe(mappings: mappings) : "version \(version)") + ", but version \(completed) was completed",
                            place: Finding.Place(
                                space: mapping.spaceName, mapping: mapping.mappingName, page: page, address: address,
                                frame: "on disk (the space has exited)"),
                            trail: trail.trail(space: mapping.space.id, address: address), seconds: clock.seconds(now))
                    }
                }
            }
        }
    }
}
