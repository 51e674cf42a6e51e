#pragma once
// Small file helpers with error messages that name the path.
#include <filesystem>
#include <string>
#include <string_view>

namespace distrib {
class Error;
}

namespace distrib::fs {

/// The error for a failed write of `path` (errno `err`): insufficient_storage when the disk is full.
Error write_error(const std::filesystem::path& path, int err);
std::string read_file(const std::filesystem::path& path);
/// Writes via a temporary file in the same directory, fsync and rename: readers see the old
/// content or the new, never a torn file. A full file system (ENOSPC, EDQUOT) throws
/// Error(insufficient_storage); whatever the failure, the temporary file is removed. Without
/// `durable` the fsync is left to the caller (many files, then one syncfs: ChunkStore::sync).
void write_file_atomic(const std::filesystem::path& path, std::string_view data, bool durable = true);
/// Creates the directory (and parents) and checks that it is writable; throws Error naming it.
/// Flushes `from` to disk and renames it to `to` (same filesystem): a file received elsewhere put in
/// place whole. Throws Error naming `to` on failure.
void move_file_durable(const std::filesystem::path& from, const std::filesystem::path& to);
void ensure_writable_dir(const std::filesystem::path& dir, std::string_view what);
std::int64_t now_unix();
/// Milliseconds since the epoch.
std::int64_t now_unix_ms();
/// Reads the host identifier kept in `file`, creating it (a random UUID) on first use. Throws
/// Error(invalid_argument) when the file holds something that is not a UUID.
std::string load_or_create_host_id(const std::filesystem::path& file);

}  // namespace distrib::fs
