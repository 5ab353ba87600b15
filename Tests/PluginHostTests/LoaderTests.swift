import LabSync
@testable import PluginHost
import CDevicePluginABI
import MMUNotifier
import Testing
import TestSupport

@Suite("Plugin loading and rejection")
struct LoaderTests {
    @Test func theCExampleLoadsWithWhatItDeclares() throws {
        let plugin = try load(mirrorC)
        #expect(plugin.name == "mirror-c")
        #expect(plugin.version == "1.0")
        #expect(plugin.minor == 6, "built against ABI 1.6, on a 1.6 host")
        #expect(plugin.capabilityNames == ["failsNonBlocking"])
        #expect(plugin.optionalOperations == ["stats"])
        #expect(plugin.path == mirrorC)
    }

    @Test func theSwiftExampleLoadsWithWhatItDeclares() throws {
        let plugin = try load(mirrorSwift)
        #expect(plugin.name == "mirror-swift")
        #expect(plugin.minor == 6, "built against ABI 1.6, on a 1.6 host")
        #expect(plugin.capabilityNames == ["failsNonBlocking"])
        #expect(plugin.optionalOperations == ["stats"])
    }

    @Test func bundledDiscoveryFindsBothExamples() {
        let found = PluginDiscovery(searchDirectories: [], bundledDirectory: buildDirectory).candidates()
        #expect(found.contains(mirrorC) && found.contains(mirrorSwift), "\(found)")
    }

    /// Every way a plugin can be wrong, each with a fixture built by the package.
    @Test(arguments: [
        ("noentry", "does not export mmulab_device_plugin_v1"),
        ("wrongmajor", "built for plugin ABI 2.x, this host speaks 1.x"),
        ("toosmall", "descriptor is 16 bytes"),
        ("missingop", "required operation 'access' is NULL"),
        ("entryrefuses", "returned no descriptor"),
        ("greedyminor", "chose ABI minor 11, but the host offered at most 6"),
    ])
    func brokenPluginsAreRefusedWithAReason(name: String, reason: String) {
        switch PluginLoader.load(fixture(name)) {
        case .success(let plugin):
            Issue.record("\(name) should have been refused, loaded \(plugin)")
        case .failure(let error):
            #expect(error.description.contains(reason), "\(error)")
            #expect(error.path == fixture(name))
        }
    }

    @Test func aFileThatIsNotASharedObjectIsRefused() {
        let path = fixturesDirectory + "/not-a-plugin.so"
        guard case .failure(.notASharedObject(let where_, let reason)) = PluginLoader.load(path) else {
            Issue.record("a text file must not load")
            return
        }
        #expect(where_ == path)
        #expect(!reason.isEmpty)
    }

    @Test func aMissingFileIsReported() {
        let result = PluginLoader.load("/nonexistent/libmmulab-plugin-nothing.so")
        #expect(result.failureDescription?.contains("no such file") == true)
    }

    @Test func aPluginWhoseCreateFailsIsRefusedWithItsMessage() throws {
        let plugin = try load(fixture("createfails"))
        let machine = makeMachine()
        switch PluginInstance.create(plugin, machine: machine) {
        case .success: Issue.record("create must fail")
        case .failure(let error):
            #expect(error.description.contains("this fixture always fails to create"))
            #expect(error.description.contains("status -1"))
        }
    }

    @Test func discoveryCombinesSourcesSortedAndUnique() throws {
        let discovery = PluginDiscovery(
            explicitPaths: [mirrorC, buildDirectory + "/./libmmulab-plugin-mirror-c.so", "/nonexistent/plugin.so"],
            searchDirectories: [buildDirectory], bundledDirectory: buildDirectory)
        let found = discovery.candidates()
        #expect(found.filter { $0.hasSuffix("libmmulab-plugin-mirror-c.so") }.count == 1, "de-duplicated by real path: \(found)")
        #expect(found.contains("/nonexistent/plugin.so"), "explicit paths are kept so loading can report them")
        #expect(!found.contains { $0.contains("mmulab-fixture-") }, "directories contribute only libmmulab-plugin-*.so")
        #expect(found == found.sorted())
    }
}

extension Result where Failure == PluginLoadError {
    var failureDescription: String? {
        if case .failure(let error) = self { return error.description }
        return nil
    }
}

@Suite("Versioned descriptor reading")
struct DescriptorSizeTests {
    /// An optional operation beyond the declared size is treated as absent,
    /// even if the bytes there look like a function pointer.
    @Test func optionalOperationsBeyondTheDeclaredSizeAreIgnored() throws {
        let full = try load(mirrorC)  // declares stats
        #expect(full.optionalOperations == ["stats"])
        var truncated = full.descriptorCopy
        truncated.struct_size = UInt32(PluginLoader.requiredDescriptorSize)
        let result = withUnsafePointer(to: &truncated) { PluginLoader.validate($0, negotiated: 0, path: "truncated") }
        let plugin = try result.get()
        #expect(plugin.optionalOperations.isEmpty, "stat_count lies past struct_size: it must not be read")
        #expect(plugin.name == "mirror-c", "fields inside the size are read")
    }
}

@Suite("Events by negotiated minor")
struct EventMinorTests {
    /// The events 1.5 added reach an instance that negotiated 1.4 or less
    /// as MMULAB_EVENT_MADVISE_DONTNEED, the CLEAR-type event it knows;
    /// older events, and every event to a 1.5 instance, pass unchanged.
    @Test func newerEventsReachOlderInstancesAsDontNeed() {
        let space = AddressSpaceID(1)
        for event in NotifierEvent.allCases {
            let range = InvalidationRange(addressSpace: space, start: 0, end: 4096, event: event)
            let added = event == .madviseFree || event == .hugeSplit || event == .collapse
            #expect(cRange(range, minor: 4).event == (added ? UInt32(MMULAB_EVENT_MADVISE_DONTNEED.rawValue) : UInt32(event.rawValue)), "\(event)")
            #expect(cRange(range, minor: 5).event == UInt32(event.rawValue), "\(event)")
        }
        #expect(UInt32(NotifierEvent.madviseFree.rawValue) == MMULAB_EVENT_MADVISE_FREE.rawValue)
        #expect(UInt32(NotifierEvent.hugeSplit.rawValue) == MMULAB_EVENT_HUGE_SPLIT.rawValue)
        #expect(UInt32(NotifierEvent.collapse.rawValue) == MMULAB_EVENT_COLLAPSE.rawValue)
    }
}
