import HotPaths

#if canImport(Glibc)
import Glibc
#endif

// Runs one hot path a given number of times, for scripts/instruction-counts,
// which runs this under callgrind twice (with two counts) and divides the
// difference in instructions by the difference in rounds: the setup, the
// same in both, drops out.
//
//     InstructionCounts dma-c|dma-swift|callback-c|callback-swift|invalidation ROUNDS
//     InstructionCounts fault-in|munmap|dontneed 0|1   (262,144 pages, once or not at all)

let arguments = CommandLine.arguments
guard arguments.count == 3, let rounds = Int(arguments[2]), rounds >= 0 else {
    print("usage: InstructionCounts dma-c|dma-swift|callback-c|callback-swift|invalidation ROUNDS, or fault-in|munmap|dontneed 0|1")
    exit(2)
}
switch arguments[1] {
case "dma-c": DeviceReadFixture(plugin: "libmmulab-plugin-mirror-c.so").run(rounds)
case "dma-swift": DeviceReadFixture(plugin: "libmmulab-plugin-mirror-swift.so").run(rounds)
case "invalidation": InvalidationFixture().run(rounds)
case "callback-c": CallbackFixture(plugin: "libmmulab-fixture-countingc.so").run(rounds)
case "callback-swift": CallbackFixture(plugin: "libmmulab-fixture-countingswift.so").run(rounds)
case "fault-in":
    let fixture = BulkFixture(populated: false)
    if rounds > 0 { fixture.faultIn() }
case "munmap":
    let fixture = BulkFixture(populated: true)
    if rounds > 0 { fixture.unmap() }
case "dontneed":
    let fixture = BulkFixture(populated: true)
    if rounds > 0 { fixture.dontNeed() }
default:
    print("unknown hot path \(arguments[1])")
    exit(2)
}
