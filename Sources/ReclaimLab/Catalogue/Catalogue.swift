/// The built-in scenarios (`mmulab scenarios list`, `mmulab run NAME`),
/// written in the same YAML a user writes, so each is also an example.
public enum Catalogue {
    public struct Entry: Sendable {
        public let name: String
        public let yaml: String
    }

    /// The scenario named `name`, read and checked.
    public static func scenario(named name: String) throws(ScenarioError) -> Scenario? {
        guard let entry = entries.first(where: { $0.name == name }) else { return nil }
        return try ScenarioReader.read(yaml: entry.yaml, file: "<built-in \(name)>")
    }

    public static let entries: [Entry] = [
        Entry(name: "reclaim-storm", yaml: """
            name: reclaim-storm
            summary: memory oversubscribed 2x, the three bundled plugins active, every kind of pressure
            length: { seconds: 30 }
            machine: { frames: 1024, nodes: 2, swap-slots: 8192 }
            spaces:
              - name: vm
                mappings: [ { name: guest, pages: 768, mergeable: true } ]
              - name: app
                mappings: [ { name: heap, pages: 768 }, { name: data, kind: file, pages: 128 } ]
              - name: gpu-app
                mappings: [ { name: buffers, pages: 512 } ]
            plugins:
              - { plugin: kvm, bindings: [ { space: vm, mapping: guest, device-address: 0x100000000 } ] }
              - { plugin: rdma, name: nic, options: "dma-us=10", bindings: [ { space: app, mapping: heap } ] }
              - { plugin: gpu, options: "vram=0", bindings: [ { space: gpu-app, mapping: buffers } ] }
            workloads:
              - { name: guest, actor: kvm, space: vm, mapping: guest, threads: 3, pattern: zipfian, writes: 0.3 }
              - { name: app-cpu, actor: cpu, space: app, mapping: heap, writes: 0.5, rate: 500000 }
              - { name: peer, actor: nic, space: app, mapping: heap, threads: 8, writes: 0.5 }
              - { name: files, actor: cpu, space: app, mapping: data, pattern: sequential, rate: 1000000 }
              - { name: shader, actor: gpu, space: gpu-app, mapping: buffers, threads: 2, writes: 0.3 }
              - { name: host-side, actor: cpu, space: gpu-app, mapping: buffers, writes: 0, rate: 1000000 }
            pressure:
              migration-rate: 1000
              ksm: { scans-per-second: 10, duplicates: 0.1 }
            """),
        Entry(name: "munmap-race", yaml: """
            name: munmap-race
            summary: devices reading and writing a mapping that is unmapped and mapped again under them
            length: { seconds: 10 }
            machine: { frames: 1024, swap-slots: 4096 }
            spaces:
              - name: app
                mappings: [ { name: churned, pages: 64 }, { name: steady, pages: 256 } ]
            plugins:
              - { plugin: gpu, options: "vram=0", bindings: [ { space: app, mapping: churned }, { space: app, mapping: steady } ] }
              - { plugin: rdma, name: nic, bindings: [ { space: app, mapping: churned } ] }
            workloads:
              - { name: shader, actor: gpu, space: app, mapping: churned, threads: 2 }
              - { name: peer, actor: nic, space: app, mapping: churned }
              - { name: steady, actor: gpu, space: app, mapping: steady }
            pressure:
              churn: [ { space: app, mapping: churned, rate: 200 } ]
            """),
        Entry(name: "ksm-merge", yaml: """
            name: ksm-merge
            summary: KVM guests over mergeable memory, one VM with change_pte and one without
            length: { seconds: 10 }
            machine: { frames: 1024, swap-slots: 4096 }
            spaces:
              - name: with
                mappings: [ { name: guest, pages: 256, mergeable: true } ]
              - name: without
                mappings: [ { name: guest, pages: 256, mergeable: true } ]
            plugins:
              - { plugin: kvm, name: kvm-change-pte, options: "change-pte=1", bindings: [ { space: with, mapping: guest, device-address: 0 } ] }
              - { plugin: kvm, name: kvm-zap, options: "change-pte=0", bindings: [ { space: without, mapping: guest, device-address: 0 } ] }
            workloads:
              - { name: guest-a, actor: kvm-change-pte, space: with, mapping: guest, writes: 0.05 }
              - { name: guest-b, actor: kvm-zap, space: without, mapping: guest, writes: 0.05 }
            pressure:
              background-reclaim: false
              ksm: { scans-per-second: 100, duplicates: 0.5 }
            """),
        Entry(name: "oom-reaper", yaml: """
            name: oom-reaper
            summary: an address space with an RDMA region (which refuses every non-blockable start) and a KVM memslot is OOM-killed under traffic
            length: { seconds: 5 }
            machine: { frames: 1024, swap-slots: 4096 }
            spaces:
              - name: victim
                mappings: [ { name: heap, pages: 256 }, { name: guest, pages: 256 } ]
              - name: bystander
                mappings: [ { name: heap, pages: 128 } ]
            plugins:
              - { plugin: rdma, name: nic, options: "dma-us=50", bindings: [ { space: victim, mapping: heap } ] }
              - { plugin: kvm, bindings: [ { space: victim, mapping: guest, device-address: 0 } ] }
            workloads:
              - { name: peer, actor: nic, space: victim, mapping: heap, threads: 2 }
              - { name: guest, actor: kvm, space: victim, mapping: guest }
              - { name: other, actor: cpu, space: bystander, mapping: heap }
            pressure:
              oom-kill: { space: victim, after-ms: 200 }
            """),
        Entry(name: "mprotect-flip", yaml: """
            name: mprotect-flip
            summary: a mapping flipped read-only and back while the CPU and devices write it
            length: { seconds: 5 }
            machine: { frames: 1024, swap-slots: 4096 }
            spaces:
              - name: app
                mappings: [ { name: heap, pages: 256 } ]
            plugins:
              - { plugin: gpu, options: "vram=0", bindings: [ { space: app, mapping: heap } ] }
              - { plugin: rdma, name: nic, bindings: [ { space: app, mapping: heap } ] }
            workloads:
              - { name: cpu, actor: cpu, space: app, mapping: heap }
              - { name: shader, actor: gpu, space: app, mapping: heap }
              - { name: peer, actor: nic, space: app, mapping: heap }
            pressure:
              mprotect: [ { space: app, mapping: heap, rate: 200 } ]
            """),
        Entry(name: "fork-cow", yaml: """
            name: fork-cow
            summary: a process forks children (copy-on-write) while its devices write its memory
            length: { seconds: 5 }
            machine: { frames: 1024, swap-slots: 4096 }
            spaces:
              - name: app
                mappings: [ { name: heap, pages: 256 } ]
            plugins:
              - { plugin: gpu, options: "vram=0", bindings: [ { space: app, mapping: heap } ] }
              - { plugin: rdma, name: nic, bindings: [ { space: app, mapping: heap } ] }
            workloads:
              - { name: cpu, actor: cpu, space: app, mapping: heap }
              - { name: shader, actor: gpu, space: app, mapping: heap }
              - { name: peer, actor: nic, space: app, mapping: heap }
            pressure:
              fork: [ { space: app, rate: 100 } ]
            """),
        Entry(name: "migrate-churn", yaml: """
            name: migrate-churn
            summary: a GPU moves ranges to its VRAM (device-private pages) and back while the CPU, the GPU and a NIC use them, with NUMA migration and reclaim
            length: { seconds: 10 }
            machine: { frames: 1024, nodes: 2, swap-slots: 4096 }
            spaces:
              - name: app
                mappings: [ { name: buffers, pages: 512 }, { name: heap, pages: 768 } ]
            plugins:
              - { plugin: gpu, options: "vram=256", bindings: [ { space: app, mapping: buffers } ] }
              - { plugin: rdma, name: nic, bindings: [ { space: app, mapping: buffers } ] }
            workloads:
              - { name: shader, actor: gpu, space: app, mapping: buffers, writes: 0.3 }
              - { name: host-side, actor: cpu, space: app, mapping: buffers, writes: 0.3 }
              - { name: peer, actor: nic, space: app, mapping: buffers, writes: 0.2 }
              - { name: heap, actor: cpu, space: app, mapping: heap, writes: 0.5 }
            pressure:
              migration-rate: 500
              device-migration: [ { plugin: gpu, space: app, mapping: buffers, rate: 500, pages: 16 } ]
            """),
        Entry(name: "register-race", yaml: """
            name: register-race
            summary: GPU and NIC bindings attached, used and detached over and over while reclaim, NUMA migration and mprotect invalidate the same pages
            length: { seconds: 10 }
            machine: { frames: 1024, nodes: 2, swap-slots: 4096 }
            spaces:
              - name: app
                mappings: [ { name: shared, pages: 256 }, { name: filler, pages: 1024 } ]
            plugins:
              - { plugin: gpu, options: "vram=0" }
              - { plugin: rdma, name: nic, bindings: [ { space: app, mapping: shared } ] }
            workloads:
              - { name: cpu, actor: cpu, space: app, mapping: shared, writes: 0.5 }
              - { name: peer, actor: nic, space: app, mapping: shared, writes: 0.3 }
              - { name: filler, actor: cpu, space: app, mapping: filler, writes: 0.5 }
            pressure:
              migration-rate: 500
              mprotect: [ { space: app, mapping: shared, rate: 50 } ]
              attach-churn:
                - { plugin: gpu, space: app, mapping: shared, rate: 500, pages: 16 }
                - { plugin: nic, space: app, mapping: shared, rate: 500, pages: 16 }
            """),
        Entry(name: "dirty-writeback", yaml: """
            name: dirty-writeback
            summary: a GPU, an on-demand-paging NIC and a pinned NIC write file-backed pages while writeback cleans them and reclaim evicts them; every device write must reach the file
            length: { seconds: 10 }
            machine: { frames: 512, swap-slots: 4096 }
            spaces:
              - name: app
                mappings: [ { name: file, kind: file, pages: 320 }, { name: log, kind: file, pages: 64 }, { name: heap, pages: 512 } ]
            plugins:
              - { plugin: gpu, options: "vram=0", bindings: [ { space: app, mapping: file } ] }
              - { plugin: rdma, name: nic, bindings: [ { space: app, mapping: file } ] }
              - { plugin: rdma, name: pinned-nic, bindings: [ { space: app, mapping: log, pinned: true } ] }
            workloads:
              - { name: shader, actor: gpu, space: app, mapping: file, writes: 0.5 }
              - { name: peer, actor: nic, space: app, mapping: file, writes: 0.5 }
              - { name: reader, actor: cpu, space: app, mapping: file, writes: 0 }
              - { name: logger, actor: pinned-nic, space: app, mapping: log, writes: 0.5 }
              - { name: heap, actor: cpu, space: app, mapping: heap, writes: 0.5 }
            pressure:
              writeback: [ { space: app, mapping: file, rate: 20 }, { space: app, mapping: log, rate: 50 } ]
            """),
        Entry(name: "exit-release", yaml: """
            name: exit-release
            summary: short-lived address spaces bound to a GPU, a NIC and KVM exit with their bindings in place; release must tear every device view down and every frame must come back
            length: { seconds: 10 }
            machine: { frames: 1024, swap-slots: 4096 }
            spaces:
              - name: app
                mappings: [ { name: heap, pages: 512 } ]
            plugins:
              - { plugin: gpu, options: "vram=0", bindings: [ { space: app, mapping: heap } ] }
              - { plugin: rdma, name: nic }
              - { plugin: kvm }
            workloads:
              - { name: cpu, actor: cpu, space: app, mapping: heap }
              - { name: shader, actor: gpu, space: app, mapping: heap }
            pressure:
              exit-release:
                - { plugin: gpu, rate: 100, pages: 16 }
                - { plugin: nic, rate: 100, pages: 16 }
                - { plugin: kvm, rate: 100, pages: 16 }
            """),
        Entry(name: "young-aging", yaml: """
            name: young-aging
            summary: KVM guests keep small working sets hot while the CPU streams through cold memory twice the size of RAM; reclaim must ask the devices (clear_young) before it evicts their hot pages
            length: { seconds: 10 }
            machine: { frames: 1024, swap-slots: 8192 }
            spaces:
              - name: vm
                mappings: [ { name: hot, pages: 32, hot: true } ]
              - name: app
                mappings: [ { name: stream, pages: 2048 } ]
            plugins:
              - { plugin: kvm, options: "vcpus=2", bindings: [ { space: vm, mapping: hot, device-address: 0 } ] }
            workloads:
              - { name: guest, actor: kvm, space: vm, mapping: hot, threads: 2, writes: 0.2 }
              - { name: stream, actor: cpu, space: app, mapping: stream, pattern: sequential, writes: 0.5 }
            """),
        Entry(name: "lazy-free-churn", yaml: """
            name: lazy-free-churn
            summary: the CPU, a GPU and a NIC write a heap that is lazily freed (MADV_FREE) under them, 16 pages at a time, while reclaim discards what stayed clean; a write after MADV_FREE, by the CPU or a device, must survive
            length: { seconds: 10 }
            machine: { frames: 1024, swap-slots: 4096 }
            spaces:
              - name: app
                mappings: [ { name: heap, pages: 512 }, { name: filler, pages: 768 } ]
            plugins:
              - { plugin: gpu, options: "vram=0", bindings: [ { space: app, mapping: heap } ] }
              - { plugin: rdma, name: nic, bindings: [ { space: app, mapping: heap } ] }
            workloads:
              - { name: cpu, actor: cpu, space: app, mapping: heap, writes: 0.3 }
              - { name: shader, actor: gpu, space: app, mapping: heap, writes: 0.5 }
              - { name: peer, actor: nic, space: app, mapping: heap, writes: 0.5 }
              - { name: filler, actor: cpu, space: app, mapping: filler, pattern: sequential, writes: 0.5 }
            pressure:
              lazy-free: [ { space: app, mapping: heap, rate: 500, pages: 16 } ]
            """),
        Entry(name: "longterm-pins", yaml: """
            name: longterm-pins
            summary: NIC memory regions without on-demand paging are registered and deregistered 200 times a second over memory a GPU and an ODP NIC also use; each registration pins long-term (FOLL_LONGTERM), which first moves the pages out of movable memory (a migrate invalidation the others must follow); compaction passes the pinned pages over, reclaim runs
            length: { seconds: 10 }
            machine: { frames: 1024, swap-slots: 4096, movable-frames: 768 }
            spaces:
              - name: app
                mappings: [ { name: buffers, pages: 96 }, { name: log, pages: 32 }, { name: heap, pages: 1024 } ]
            plugins:
              - { plugin: rdma, name: pinned-nic, bindings: [ { space: app, mapping: log, pinned: true } ] }
              - { plugin: rdma, name: nic, bindings: [ { space: app, mapping: buffers } ] }
              - { plugin: gpu, options: "vram=0", bindings: [ { space: app, mapping: buffers } ] }
            workloads:
              - { name: cpu, actor: cpu, space: app, mapping: buffers, writes: 0.3 }
              - { name: peer, actor: nic, space: app, mapping: buffers, writes: 0.3 }
              - { name: shader, actor: gpu, space: app, mapping: buffers, writes: 0.3 }
              - { name: logger, actor: pinned-nic, space: app, mapping: log, writes: 0.5 }
              - { name: heap, actor: cpu, space: app, mapping: heap, writes: 0.5 }
            pressure:
              compaction-rate: 1000
              attach-churn: [ { plugin: pinned-nic, space: app, mapping: buffers, rate: 200, pages: 16, pinned: true } ]
            """),
        Entry(name: "device-atomics", yaml: """
            name: device-atomics
            summary: a GPU does atomics on pages the CPU and a NIC use too; each atomic takes its page exclusive (make_device_exclusive), and every CPU access or NIC fault on the page takes it back, which the GPU must follow; fork and reclaim add their own invalidations
            length: { seconds: 10 }
            machine: { frames: 1024, swap-slots: 4096 }
            spaces:
              - name: app
                mappings: [ { name: counters, pages: 64 }, { name: heap, pages: 1024 } ]
            plugins:
              - { plugin: gpu, options: "vram=0", bindings: [ { space: app, mapping: counters } ] }
              - { plugin: rdma, name: nic, bindings: [ { space: app, mapping: counters } ] }
            workloads:
              - { name: shader, actor: gpu, space: app, mapping: counters, threads: 2, writes: 0.6, atomics: 1 }
              - { name: host-side, actor: cpu, space: app, mapping: counters, writes: 0.2 }
              - { name: peer, actor: nic, space: app, mapping: counters, writes: 0 }
              - { name: heap, actor: cpu, space: app, mapping: heap, writes: 0.5 }
            pressure:
              fork: [ { space: app, rate: 20 } ]
            """),
        Entry(name: "uffd-snapshot", yaml: """
            name: uffd-snapshot
            summary: a heap the CPU, a GPU and a NIC write is snapshotted 50 times a second with userfaultfd write-protect (every page write-protected at once, then released 16 at a time, the pages CPU writes wait on first); devices must drop their writable translations at each protect and cannot fault writable until the release
            length: { seconds: 10 }
            machine: { frames: 1024, swap-slots: 4096 }
            spaces:
              - name: app
                mappings: [ { name: heap, pages: 256 }, { name: filler, pages: 768 } ]
            plugins:
              - { plugin: gpu, options: "vram=0", bindings: [ { space: app, mapping: heap } ] }
              - { plugin: rdma, name: nic, bindings: [ { space: app, mapping: heap } ] }
            workloads:
              - { name: cpu, actor: cpu, space: app, mapping: heap, writes: 0.3 }
              - { name: shader, actor: gpu, space: app, mapping: heap, writes: 0.5 }
              - { name: peer, actor: nic, space: app, mapping: heap, writes: 0.5 }
              - { name: filler, actor: cpu, space: app, mapping: filler, pattern: sequential, writes: 0.5 }
            pressure:
              uffd-snapshot: [ { space: app, mapping: heap, rate: 50 } ]
            """),
        Entry(name: "mremap-move", yaml: """
            name: mremap-move
            summary: a populated mapping the CPU, a GPU and a NIC use is moved away by mremap and back 100 times a second, a millisecond away each time; each move invalidates the range it leaves and fills the other without a fault; devices must drop the old addresses' translations, and no write may be lost
            length: { seconds: 10 }
            machine: { frames: 1024, swap-slots: 4096 }
            spaces:
              - name: app
                mappings: [ { name: moved, pages: 128 }, { name: heap, pages: 768 } ]
            plugins:
              - { plugin: gpu, options: "vram=0", bindings: [ { space: app, mapping: moved } ] }
              - { plugin: rdma, name: nic, bindings: [ { space: app, mapping: moved } ] }
            workloads:
              - { name: cpu, actor: cpu, space: app, mapping: moved, writes: 0.3 }
              - { name: shader, actor: gpu, space: app, mapping: moved, writes: 0.5 }
              - { name: peer, actor: nic, space: app, mapping: moved, writes: 0.5 }
              - { name: heap, actor: cpu, space: app, mapping: heap, writes: 0.5 }
            pressure:
              mremap: [ { space: app, mapping: moved, rate: 100 } ]
            """),
        Entry(name: "thp-storm", yaml: """
            name: thp-storm
            summary: transparent huge pages under GPU and KVM traffic; huge faults, splits (mprotect of a few pages, copy-on-write after fork, swap-out), khugepaged collapsing what was split, whole-folio NUMA migration, reclaim keeping a fifth of memory free
            length: { seconds: 10 }
            machine: { frames: 8192, nodes: 2, swap-slots: 16384, low-watermark: 700, high-watermark: 1800, transparent-hugepages: always }
            spaces:
              - name: gpu-app
                mappings: [ { name: buffers, pages: 2048 } ]
              - name: vm
                mappings: [ { name: guest, pages: 2048 } ]
              - name: app
                mappings: [ { name: heap, pages: 3072 } ]
            plugins:
              - { plugin: gpu, options: "vram=0", bindings: [ { space: gpu-app, mapping: buffers } ] }
              - { plugin: kvm, bindings: [ { space: vm, mapping: guest, device-address: 0x100000000 } ] }
            workloads:
              - { name: shader, actor: gpu, space: gpu-app, mapping: buffers, threads: 2, writes: 0.4 }
              - { name: host-side, actor: cpu, space: gpu-app, mapping: buffers, writes: 0.2 }
              - { name: guest, actor: kvm, space: vm, mapping: guest, threads: 2, pattern: zipfian, writes: 0.3 }
              - { name: heap, actor: cpu, space: app, mapping: heap, pattern: sequential, writes: 0.5 }
            pressure:
              migration-rate: 200
              collapse: { scans-per-second: 100 }
              mprotect: [ { space: gpu-app, mapping: buffers, rate: 50, pages: 8 }, { space: vm, mapping: guest, rate: 20, pages: 4 } ]
              fork: [ { space: gpu-app, rate: 10 } ]
            """),
    ]
}
