#if canImport(Glibc)
import Glibc
#endif

/// The contents of a regular file as UTF-8 text; nil when it cannot be read.
func readTextFile(_ path: String) -> String? {
    var info = stat()
    guard stat(path, &info) == 0, info.st_mode & S_IFMT == S_IFREG, let file = fopen(path, "r") else { return nil }
    defer { fclose(file) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65_536)
    while true {
        let n = fread(&buffer, 1, buffer.count, file)
        if n == 0 { break }
        bytes += buffer[0..<n]
    }
    return ferror(file) == 0 ? String(decoding: bytes, as: UTF8.self) : nil
}

/// The script files a command-line argument names: the file itself, or
/// every `*.kdiff` in a directory, sorted by name. Nil when it is neither.
public func scriptPaths(for argument: String) -> [String]? {
    var info = stat()
    guard stat(argument, &info) == 0 else { return nil }
    if info.st_mode & S_IFMT == S_IFREG { return [argument] }
    guard info.st_mode & S_IFMT == S_IFDIR, let directory = opendir(argument) else { return nil }
    defer { closedir(directory) }
    var names: [String] = []
    while let entry = readdir(directory) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self) }
        if name.hasSuffix(".kdiff") { names.append(name) }
    }
    let base = argument.hasSuffix("/") ? String(argument.dropLast()) : argument
    return names.sorted().map { base + "/" + $0 }
}
