// Storage trouble on real file systems: a manager whose state directory is a small tmpfs filled to
// the last byte, and an agent installing into a directory that is a mount point. Both need to
// mount a tmpfs (root, or a container allowed to); where that is refused the cases say so and
// check nothing.
#include "ctl_json.h"
#include "harness.h"

#include <boost/json.hpp>
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <random>

using namespace distrib::test;
namespace bj = boost::json;

namespace {

// A tmpfs mounted at `dir` for the scope, or nothing when this machine does not allow it.
class Tmpfs {
 public:
  Tmpfs(const stdfs::path& dir, const std::string& size) : dir_(dir) {
    stdfs::create_directories(dir);
    const auto r = run({"mount", "-t", "tmpfs", "-o", "size=" + size + ",mode=0700", "tmpfs", dir.string()});
    mounted_ = r.exit_code == 0;
    if (!mounted_) why_ = r.err;
  }
  ~Tmpfs() {
    if (mounted_) run({"umount", "-l", dir_.string()});
  }
  bool mounted() const { return mounted_; }
  const std::string& why() const { return why_; }

 private:
  stdfs::path dir_;
  bool mounted_ = false;
  std::string why_;
};

// Writes zeros into `file` until the file system holds no more; returns the bytes written.
std::uint64_t fill(const stdfs::path& file) {
  const int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  REQUIRE(fd >= 0);
  static const std::string block(64 * 1024, '\0');
  std::uint64_t total = 0;
  for (std::size_t size = block.size(); size > 0;) {
    const auto n = ::write(fd, block.data(), size);
    if (n > 0)
      total += static_cast<std::uint64_t>(n);
    else
      size /= 2;  // the last blocks: fill them too
  }
  ::close(fd);
  return total;
}

std::string random_bytes(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

std::vector<std::string> files_under(const stdfs::path& dir, const std::string& containing) {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto it = stdfs::recursive_directory_iterator(dir, ec);
       !ec && it != stdfs::recursive_directory_iterator(); it.increment(ec))
    if (it->is_regular_file() && it->path().filename().string().find(containing) != std::string::npos)
      out.push_back(it->path().filename().string());
  return out;
}

}  // namespace

TEST_CASE("a full disk answers 507, keeps the store as it was, and loses no audit record", "[hardening]") {
  TempDir tmp;
  Tmpfs disk(tmp / "manager", "24m");
  if (!disk.mounted()) {
    WARN("tmpfs cannot be mounted here (" << disk.why() << "): the full-disk case is not checked");
    return;
  }
  // Left-over chunks go after 4 s here (a day by default).
  ManagerProc m(tmp / "manager", {"--orphan-chunks-after", "4s"});
  const auto small = tmp / "small";
  write_file(small / "run.sh", "#!/bin/sh\ntrue\n", true);
  REQUIRE(m.ctl({"package", "create", small.string(), "--name", "small", "--version", "1",
                 "--install-command", "./run.sh"})
              .exit_code == 0);
  const auto chunks_of_small = files_under(m.state_dir() / "chunks", ".zst").size();
  REQUIRE(chunks_of_small > 0);

  // 6 MiB that do not compress, and a disk that has room for part of them only.
  const auto big = tmp / "big";
  write_file(big / "data.bin", random_bytes(6 << 20, 7));
  const auto filler = m.state_dir() / "filler";
  const auto filled = fill(filler);
  INFO("filled " << filled << " bytes");
  std::error_code ec;
  stdfs::resize_file(filler, filled - (2 << 20), ec);  // 2 MiB free: some chunks fit, not all
  REQUIRE(!ec);

  const auto upload = m.ctl({"package", "create", big.string(), "--name", "big", "--version", "1",
                             "--install-command", "true", "--chunk-size", "256KiB"});
  INFO(upload.out << upload.err << m.log());
  CHECK(upload.exit_code != 0);
  CHECK(upload.err.find("No space left on device") != std::string::npos);
  CHECK(upload.err.find("free space") != std::string::npos);
  // Nothing half-written stays behind, and the package is not there.
  CHECK(files_under(m.state_dir() / "chunks", ".tmp").empty());
  auto packages = ctl_json(m, {"package", "list"}).at("packages").as_array();
  CHECK(packages.size() == 1);
  const auto left_over = files_under(m.state_dir() / "chunks", ".zst").size();
  CHECK(left_over > chunks_of_small);  // the chunks that fitted

  // The database's own writes: a disk with no byte left refuses changes with 507 until it has room.
  stdfs::resize_file(filler, filled, ec);
  fill(tmp / "manager" / "filler2");
  const auto token = read_file(m.token_file()).substr(0, 64);
  int refused = 0, tries = 0;
  std::string answer;
  for (; tries < 2000 && refused == 0; ++tries) {
    answer = run({"curl", "-s", "-w", "\n%{http_code}", "--cacert", m.ca_file(), "-H",
                  "Authorization: Bearer " + token, "-H", "Content-Type: application/json", "--data-binary",
                  bj::serialize(bj::object{{"name", "g" + std::to_string(tries)},
                                           {"description", std::string(1000, 'd')}}),
                  m.url() + "/v1/groups"})
                 .out;
    if (answer.ends_with("507"))
      ++refused;
    else
      REQUIRE(answer.ends_with("201"));
  }
  INFO(answer << "\nafter " << tries << " group(s)");
  REQUIRE(refused == 1);
  CHECK(answer.find("no space left") != std::string::npos);
  const auto refused_group = "g" + std::to_string(tries - 1);
  CHECK(ctl_json(m, {"audit"}).at("audit").as_array().size() > 0);  // reads work on a full disk
  // Reads still work on a full disk, and the refused group does not exist.
  const auto groups = m.ctl({"group", "list"}, true);
  REQUIRE(groups.exit_code == 0);
  CHECK(groups.out.find("\"" + refused_group + "\"") == std::string::npos);

  // Room again: the audit trail catches up with what it could not write (retried every 5 s), and
  // the chunks of the failed upload that no package uses go.
  stdfs::remove(filler);
  stdfs::remove(tmp / "manager" / "filler2");
  auto refusal_recorded = [&] {
    const auto audit = ctl_json(m, {"audit", "--limit", "200"});
    for (const auto& rec : audit.at("audit").as_array())
      if (rec.at("action") == "POST /v1/groups" && rec.at("status") == 507 &&
          std::string(rec.at("result").as_string()).find("no space left") != std::string::npos)
        return true;
    return false;
  };
  CHECK(wait_until(refusal_recorded, 20s));
  // Whether the record had to wait depends on the room SQLite's journal still had.
  if (m.log().find("record(s) cannot be written yet") != std::string::npos)
    CHECK(m.log().find("audit trail: written again after") != std::string::npos);
  else
    WARN("the audit record of the refused change was written at once: the retry was not needed this time");
  CHECK(wait_until([&] { return files_under(m.state_dir() / "chunks", ".zst").size() == chunks_of_small; },
                   20s));
  CHECK(m.log().find("left-over file(s)") != std::string::npos);

  // And the upload goes through now.
  const auto again = m.ctl({"package", "create", big.string(), "--name", "big", "--version", "1",
                            "--install-command", "true", "--chunk-size", "256KiB"});
  INFO(again.err);
  CHECK(again.exit_code == 0);
  packages = ctl_json(m, {"package", "list"}).at("packages").as_array();
  CHECK(packages.size() == 2);
}

TEST_CASE("an install directory that is a mount point gets its contents replaced", "[hardening]") {
  TempDir tmp;
  const auto target = tmp / "volume";
  Tmpfs volume(target, "8m");
  if (!volume.mounted()) {
    WARN("tmpfs cannot be mounted here (" << volume.why() << "): the mount-point case is not checked");
    return;
  }
  write_file(target / "old.txt", "from before\n");
  ManagerProc m(tmp / "manager");
  AgentProc agent(tmp / "agent", m.url(), "vol", "127.0.0.45");
  REQUIRE(wait_until([&] { return host_count(m) == 1; }, 20s));
  for (const std::string version : {"1", "2"}) {
    const auto pkg = tmp / ("pkg" + version);
    write_file(pkg / "run.sh", "#!/bin/sh\necho installed " + version + " > marker\n", true);
    REQUIRE(m.ctl({"package", "create", pkg.string(), "--name", "vol", "--version", version,
                   "--install-command", "./run.sh", "--install-dir", target.string()})
                .exit_code == 0);
    const auto shown = wait_job(m, create_job(m, {"install", "vol", version, "vol"}), 60s);
    INFO(shown << agent.log());
    REQUIRE(all_succeeded(shown));
    CHECK(read_file(target / "marker") == "installed " + version + "\n");
    CHECK(!stdfs::exists(target / "old.txt"));
    std::vector<std::string> names;
    for (const auto& e : stdfs::directory_iterator(target)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    CHECK(names == std::vector<std::string>{"marker", "run.sh"});
  }
  // Still the same mount.
  CHECK(run({"mountpoint", "-q", target.string()}).exit_code == 0);
  CHECK(agent.log().find("is a mount point; replacing its contents in place") != std::string::npos);
}
