#include <distrib/content/chunk_store.h>
#include <distrib/content/chunker.h>
#include <distrib/content/digest.h>
#include <distrib/content/packager.h>
#include <distrib/error.h>

#include "harness.h"

#include <archive.h>
#include <archive_entry.h>
#include <catch2/catch.hpp>

#include <unistd.h>
#include <random>
#include <set>

using namespace distrib;
using namespace distrib::test;

namespace {
std::string random_bytes(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng() & 0xFF);
  return s;
}

// Writes a tar archive with hand-made entries, the way an attacker would.
struct CraftedEntry {
  std::string path;
  char type = 'f';  // f file, d dir, l symlink, h hardlink
  std::string data_or_target;
};
void write_tar(const stdfs::path& out, const std::vector<CraftedEntry>& entries) {
  struct archive* a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  REQUIRE(archive_write_open_filename(a, out.c_str()) == ARCHIVE_OK);
  for (const auto& e : entries) {
    struct archive_entry* en = archive_entry_new();
    archive_entry_set_pathname(en, e.path.c_str());
    archive_entry_set_perm(en, 0644);
    if (e.type == 'f') {
      archive_entry_set_filetype(en, AE_IFREG);
      archive_entry_set_size(en, static_cast<la_int64_t>(e.data_or_target.size()));
    } else if (e.type == 'd') {
      archive_entry_set_filetype(en, AE_IFDIR);
    } else if (e.type == 'l') {
      archive_entry_set_filetype(en, AE_IFLNK);
      archive_entry_set_symlink(en, e.data_or_target.c_str());
    } else {
      archive_entry_set_filetype(en, AE_IFREG);
      archive_entry_set_hardlink(en, e.data_or_target.c_str());
    }
    archive_write_header(a, en);
    if (e.type == 'f') archive_write_data(a, e.data_or_target.data(), e.data_or_target.size());
    archive_entry_free(en);
  }
  archive_write_close(a);
  archive_write_free(a);
}

// Random bytes from a 64-bit generator, for the chunker tests.
std::string random_bytes64(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng() & 0xFF);
  return s;
}

std::size_t cut(std::string_view data, const ChunkingParams& params) {
  return cdc_cut(reinterpret_cast<const std::uint8_t*>(data.data()), data.size(), params);
}

// Cuts all of `data` into chunks, the way the packager does.
std::vector<std::string> cut_all(std::string_view data, const ChunkingParams& params) {
  std::vector<std::string> chunks;
  while (!data.empty()) {
    const auto n = cut(data, params);
    REQUIRE(n > 0);
    REQUIRE(n <= data.size());
    chunks.emplace_back(data.substr(0, n));
    data.remove_prefix(n);
  }
  return chunks;
}

// How many chunks of `b` are not among the chunks of `a`.
std::size_t not_shared(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  const std::set<std::string> in_a(a.begin(), a.end());
  std::size_t n = 0;
  for (const auto& c : b)
    if (in_a.count(c) == 0) ++n;
  return n;
}
}  // namespace

TEST_CASE("SHA-256 matches the published test vectors", "[content]") {
  CHECK(sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  Sha256 h;
  h.update("a");
  h.update("bc");
  CHECK(h.finish() == sha256_hex("abc"));
}

TEST_CASE("chunk store keeps verified, compressed chunks", "[content]") {
  TempDir tmp;
  ChunkStore store(tmp / "chunks");
  const auto raw = random_bytes(100000, 1);
  const auto digest = store.put_raw(raw);
  CHECK(digest == sha256_hex(raw));
  CHECK(store.contains(digest));
  CHECK(store.read_verified(digest, kMaxChunkSize) == raw);

  SECTION("an upload that does not match its digest is refused and not stored") {
    ChunkStore other(tmp / "other");
    const auto wrong = compress_chunk(random_bytes(1000, 2));
    CHECK_THROWS_WITH(other.put_compressed(digest, wrong, kMaxChunkSize),
                      Catch::Contains("failed verification"));
    CHECK_FALSE(other.contains(digest));
  }
  SECTION("garbage is not a chunk") {
    ChunkStore other(tmp / "other");
    CHECK_THROWS_AS(other.put_compressed(digest, "not zstd at all", kMaxChunkSize), Error);
    CHECK_FALSE(other.contains(digest));
  }
  SECTION("a chunk corrupted on disk fails verification") {
    write_file(store.path_of(digest), compress_chunk("something else"));
    CHECK_THROWS_WITH(store.read_verified(digest, kMaxChunkSize), Catch::Contains("failed verification"));
  }
  SECTION("a chunk declaring more than the limit is refused before decompression") {
    CHECK_THROWS_WITH(decompress_chunk(compress_chunk(raw), 1000), Catch::Contains("more than the allowed"));
  }
}

TEST_CASE("a directory packages, assembles and extracts to the same tree", "[content]") {
  TempDir tmp;
  const auto src = tmp / "src";
  write_file(src / "bin/tool", "#!/bin/sh\necho hi\n", true);
  write_file(src / "data/big.bin", random_bytes(3 * 1024 * 1024 + 17, 3));
  write_file(src / "empty", "");
  stdfs::create_directories(src / "emptydir");
  stdfs::create_symlink("../bin/tool", src / "data/tool-link");

  ChunkStore chunks(tmp / "chunks");
  PackageSpec spec{src, "tool", "1.0", {"./bin/tool", "", 60}, kDefaultChunkSize};
  auto m = create_package(spec, chunks);
  // ~3 MiB cut by content: chunks between a quarter and four times the 16 KiB average.
  CHECK(m.chunks.size() > 3 * 1024 * 1024 / (64 * 1024));
  CHECK(m.chunks.size() < 3 * 1024 * 1024 / (4 * 1024));
  for (std::size_t i = 0; i + 1 < m.chunks.size(); ++i) {
    CHECK(m.chunks[i].size >= 4 * 1024);
    CHECK(m.chunks[i].size <= 64 * 1024);
  }
  CHECK(m.files.size() == 7);
  CHECK(m.install.command == "./bin/tool");

  SECTION("packaging is reproducible") {
    auto again = create_package(spec, chunks);
    CHECK(again.payload_digest == m.payload_digest);
  }
  SECTION("chunks cut on every core keep their order; a spool holds the same chunks") {
    ChunkSpool spool(tmp / "spool");
    const auto spooled = create_package(spec, spool);
    REQUIRE(spooled.chunks.size() == m.chunks.size());
    for (std::size_t i = 0; i < m.chunks.size(); ++i) {
      CHECK(spooled.chunks[i].digest == m.chunks[i].digest);
      CHECK(spooled.chunks[i].size == m.chunks[i].size);
      CHECK(spool.read_compressed(m.chunks[i].digest) == chunks.read_compressed(m.chunks[i].digest));
      CHECK(spool.compressed_size(m.chunks[i].digest) == chunks.read_compressed(m.chunks[i].digest).size());
    }
    CHECK(spool.compressed_size(std::string(64, 'a')) == 0);
    CHECK_THROWS_WITH(spool.read_compressed(std::string(64, 'a')), Catch::Contains("not in the spool"));
  }

  const auto archive = tmp / "payload.tar";
  assemble_payload(m, chunks, archive);
  CHECK(sha256_file(archive) == m.payload_digest);
  extract_payload(archive, tmp / "out");
  CHECK(read_file(tmp / "out/data/big.bin") == read_file(src / "data/big.bin"));
  CHECK(stdfs::is_symlink(tmp / "out/data/tool-link"));
  CHECK(stdfs::is_directory(tmp / "out/emptydir"));
  CHECK(::access((tmp / "out/bin/tool").c_str(), X_OK) == 0);

  SECTION("a corrupted chunk stops assembly with the chunk's digest") {
    write_file(chunks.path_of(m.chunks[1].digest), compress_chunk(random_bytes(1024 * 1024, 9)));
    CHECK_THROWS_WITH(
        assemble_payload(m, chunks, tmp / "again.tar"),
        Catch::Contains(short_digest(m.chunks[1].digest)) && Catch::Contains("failed verification"));
  }
  SECTION("extraction never overwrites an existing directory") {
    CHECK_THROWS_WITH(extract_payload(archive, tmp / "out"), Catch::Contains("already exists"));
  }
}

TEST_CASE("packaging refuses what cannot be distributed safely", "[content]") {
  TempDir tmp;
  ChunkStore chunks(tmp / "chunks");
  const auto src = tmp / "src";
  write_file(src / "a", "a");
  PackageSpec spec{src, "x", "1", {}, kDefaultChunkSize};
  SECTION("a symlink escaping the directory") {
    stdfs::create_symlink("../../etc/passwd", src / "evil");
    CHECK_THROWS_WITH(create_package(spec, chunks), Catch::Contains("escapes the package directory"));
  }
  SECTION("an absolute symlink") {
    stdfs::create_symlink("/etc/passwd", src / "evil");
    CHECK_THROWS_WITH(create_package(spec, chunks), Catch::Contains("escapes"));
  }
  SECTION("links that escape only through other links") {
    stdfs::create_directories(src / "d");
    stdfs::create_symlink("..", src / "d/up");  // fine on its own: the root
    SECTION("a link through a link") {
      stdfs::create_symlink("d/up/..", src / "esc");
    }
    SECTION("a deeper hop") {
      stdfs::create_symlink("d/up/../..", src / "esc2");
    }
    SECTION("a chain of links") {
      stdfs::create_symlink("d/up", src / "l1");
      stdfs::create_symlink("l1/d/up/l1/..", src / "l2");
    }
    SECTION("a loop") {
      stdfs::create_symlink("loop2", src / "loop1");
      stdfs::create_symlink("loop1", src / "loop2");
    }
    CHECK_THROWS_WITH(create_package(spec, chunks), Catch::Contains("through other links"));
  }
  SECTION("a FIFO") {
    REQUIRE(::mkfifo((src / "fifo").c_str(), 0644) == 0);
    CHECK_THROWS_WITH(create_package(spec, chunks), Catch::Contains("not a regular file"));
  }
  SECTION("a bad name") {
    spec.name = "../x";
    CHECK_THROWS_WITH(create_package(spec, chunks), Catch::Contains("invalid package name"));
  }
  SECTION("a missing directory") {
    spec.source_dir = tmp / "nope";
    CHECK_THROWS_WITH(create_package(spec, chunks), Catch::Contains("is not a directory"));
  }
}

TEST_CASE("extraction refuses hostile archives and leaves nothing behind", "[content]") {
  TempDir tmp;
  const auto archive = tmp / "evil.tar";
  const auto target = tmp / "target";
  std::vector<CraftedEntry> entries;
  std::string expect;
  SECTION("absolute path") {
    entries = {{"ok.txt", 'f', "fine"}, {(tmp / "escaped").string(), 'f', "x"}};
    expect = "unsafe path";
  }
  SECTION("dot-dot") {
    entries = {{"ok.txt", 'f', "fine"}, {"../escaped", 'f', "x"}};
    expect = "unsafe path";
  }
  SECTION("symlink out of the directory") {
    entries = {{"link", 'l', "../../etc"}};
    expect = "points outside";
  }
  SECTION("file written through a symlink") {
    entries = {{"dir", 'l', "."}, {"dir/../../escaped", 'f', "x"}};
    expect = "unsafe path";
  }
  SECTION("hard link") {
    entries = {{"ok.txt", 'f', "fine"}, {"hl", 'h', "/etc/passwd"}};
    expect = "hard link";
  }
  SECTION("symlinks that escape through other links") {
    entries = {{"a/", 'd', ""}, {"a/up", 'l', ".."}, {"esc", 'l', "a/up/.."}};
    expect = "through other links";
  }
  write_tar(archive, entries);
  CHECK_THROWS_WITH(extract_payload(archive, target), Catch::Contains(expect));
  CHECK_FALSE(stdfs::exists(target));
  CHECK_FALSE(stdfs::exists(tmp / "escaped"));
}

TEST_CASE("chunking bounds follow the average size", "[content]") {
  auto p = chunking_for_average(16384);
  CHECK(p.min == 4096);
  CHECK(p.average == 16384);
  CHECK(p.max == 65536);
  p = chunking_for_average(1024);
  CHECK(p.min == 256);
  CHECK(p.max == 4096);
  p = chunking_for_average(4 * 1024 * 1024);
  CHECK(p.min == 1024 * 1024);
  CHECK(p.max == 16 * 1024 * 1024);
  p = chunking_for_average(kDefaultChunkSize);
  CHECK(p.average == kDefaultChunkSize);

  for (const std::uint64_t bad : {std::uint64_t{0}, std::uint64_t{1}, std::uint64_t{512}, std::uint64_t{1000},
                                  std::uint64_t{3000}, std::uint64_t{16385}, std::uint64_t{8} << 20,
                                  std::uint64_t{1} << 40, (std::uint64_t{1} << 32) + 1024}) {
    INFO(bad);
    CHECK_THROWS_WITH(chunking_for_average(bad), Catch::Contains("power of two between 1 KiB and 4 MiB"));
    try {
      chunking_for_average(bad);
      FAIL("accepted");
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::invalid_argument);
    }
  }
}

TEST_CASE("content-defined cuts stay within the chunk bounds", "[content]") {
  const auto params = chunking_for_average(16384);
  const auto data = random_bytes64(256 * 1024, 11);
  SECTION("short input is one chunk") {
    for (const std::size_t size :
         {std::size_t{0}, std::size_t{1}, std::size_t{params.min} - 1, std::size_t{params.min}}) {
      INFO(size);
      CHECK(cut(std::string_view(data).substr(0, size), params) == size);
    }
  }
  SECTION("longer input is cut between min and max") {
    std::mt19937_64 rng(5);
    for (int i = 0; i < 500; ++i) {
      const std::size_t offset = rng() % (data.size() / 2);
      const std::size_t size = params.min + 1 + rng() % (data.size() - offset - params.min - 1);
      INFO("offset " << offset << " size " << size);
      const auto n = cut(std::string_view(data).substr(offset, size), params);
      CHECK(n >= params.min);
      CHECK(n <= params.max);
      CHECK(n <= size);
    }
  }
  SECTION("input without a cut point stops at max") {
    const std::string zeros(4 * params.max, '\0');
    CHECK(cut(zeros, params) == params.max);
    CHECK(cut(std::string_view(zeros).substr(0, params.max + 1), params) == params.max);
    const auto chunks = cut_all(zeros, params);
    CHECK(chunks.size() == 4);
  }
}

TEST_CASE("content-defined chunks average near the requested size", "[content]") {
  const auto data = random_bytes64(4 * 1024 * 1024, 21);
  for (const std::uint64_t average : {std::uint64_t{4096}, std::uint64_t{16384}, std::uint64_t{65536}}) {
    INFO("average " << average);
    const auto params = chunking_for_average(average);
    const auto chunks = cut_all(data, params);
    std::size_t total = 0;
    for (std::size_t i = 0; i < chunks.size(); ++i) {
      total += chunks[i].size();
      CHECK(chunks[i].size() <= params.max);
      if (i + 1 < chunks.size()) {
        CHECK(chunks[i].size() >= params.min);
      }
    }
    CHECK(total == data.size());
    const auto mean = static_cast<double>(data.size()) / static_cast<double>(chunks.size());
    INFO("mean " << mean << " over " << chunks.size() << " chunks");
    CHECK(mean >= static_cast<double>(average) / 2);
    CHECK(mean <= static_cast<double>(average) * 2);
  }
}

TEST_CASE("content-defined cuts are deterministic", "[content]") {
  const auto params = chunking_for_average(16384);
  const auto data = random_bytes64(1024 * 1024, 31);
  const auto first = cut_all(data, params);
  const std::string copy = data;  // other addresses, same bytes
  CHECK(cut_all(copy, params) == first);
  CHECK(cut_all(data, params) == first);
}

TEST_CASE("a local change moves only the chunks around it", "[content]") {
  const auto params = chunking_for_average(16384);
  const auto data = random_bytes64(4 * 1024 * 1024, 41);
  const auto before = cut_all(data, params);
  REQUIRE(before.size() > 100);
  auto changed = data;
  const std::size_t middle = data.size() / 2;
  SECTION("100 bytes changed in the middle") {
    const auto noise = random_bytes64(100, 42);
    changed.replace(middle, noise.size(), noise);
    REQUIRE(changed.size() == data.size());
  }
  SECTION("100 bytes inserted in the middle") {
    changed.insert(middle, random_bytes64(100, 43));
    REQUIRE(changed.size() == data.size() + 100);
  }
  SECTION("100 bytes removed from the middle") {
    changed.erase(middle, 100);
  }
  SECTION("one byte prepended") {
    changed.insert(changed.begin(), 'x');
  }
  REQUIRE(changed != data);
  const auto after = cut_all(changed, params);
  INFO(before.size() << " chunks before, " << after.size() << " after");
  CHECK(not_shared(before, after) <= 4);
  CHECK(not_shared(after, before) <= 4);
  CHECK(not_shared(before, after) >= 1);
}

TEST_CASE("a new version with a local change shares nearly all chunks", "[content]") {
  TempDir tmp;
  const auto src = tmp / "src";
  auto big = random_bytes(2 * 1024 * 1024 + 123, 51);
  write_file(src / "data/big.bin", big);
  write_file(src / "bin/tool", "#!/bin/sh\necho hi\n", true);
  ChunkStore chunks(tmp / "chunks");
  PackageSpec spec{src, "tool", "1.0", {"./bin/tool", "", 60}, kDefaultChunkSize};
  const auto v1 = create_package(spec, chunks);

  // Change 1 % of the file's bytes, in one contiguous region in the middle.
  const std::size_t region = big.size() / 100;
  const auto noise = random_bytes(region, 52);
  big.replace(big.size() / 2, region, noise);
  write_file(src / "data/big.bin", big);
  spec.version = "2.0";
  const auto v2 = create_package(spec, chunks);
  REQUIRE(v2.payload_digest != v1.payload_digest);

  std::set<std::string> old_chunks;
  for (const auto& c : v1.chunks) old_chunks.insert(c.digest);
  std::uint64_t new_bytes = 0, total = 0;
  for (const auto& c : v2.chunks) {
    total += c.size;
    if (old_chunks.count(c.digest) == 0) new_bytes += c.size;
  }
  CHECK(total == v2.payload_size);
  INFO(new_bytes << " new bytes of " << v2.payload_size);
  CHECK(new_bytes > 0);
  CHECK(new_bytes * 100 <= v2.payload_size * 5);

  // Both versions still assemble from the shared store.
  assemble_payload(v1, chunks, tmp / "v1.tar");
  assemble_payload(v2, chunks, tmp / "v2.tar");
  CHECK(sha256_file(tmp / "v2.tar") == v2.payload_digest);
}
