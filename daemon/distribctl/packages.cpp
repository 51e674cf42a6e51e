// distribctl: Packages: package create (build, upload with progress, register), list, show.
#include "cli.h"

#include <unistd.h>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <set>
#include <thread>

namespace distribctl {

int package_create(Cli& cli) {
  cli.expect_args(3, "package create DIR --name N --version V [...]");
  PackageSpec spec;
  spec.source_dir = cli.args[2];
  spec.name = cli.opt("name");
  spec.version = cli.opt("version");
  if (spec.name.empty() || spec.version.empty())
    throw UsageError("package create needs --name and --version");
  spec.install.command = cli.opt("install-command");
  spec.install.directory = cli.opt("install-dir");
  spec.install.uninstall_command = cli.opt("uninstall-command");
  spec.install.check_command = cli.opt("check-command");
  if (const auto key = cli.opt("sign"); !key.empty()) spec.signing_key_pem = read_text_file(key);
  if (cli.vm.count("install-timeout")) {
    const int t = cli.vm["install-timeout"].as<int>();
    if (t <= 0) throw UsageError("--install-timeout must be a positive number of seconds");
    spec.install.timeout_seconds = static_cast<std::uint32_t>(t);
  }
  if (cli.vm.count("chunk-size")) {
    try {
      spec.chunk_size = parse_byte_size(cli.opt("chunk-size"));
    } catch (const Error& e) {
      throw UsageError(e.what());
    }
  }
  const bool tty = !cli.json && ::isatty(STDERR_FILENO);
  auto result = cli.client().upload_package(spec, [&](std::size_t done, std::size_t total) {
    if (!tty || total == 0) return;
    std::fprintf(stderr, "\ruploading chunks %zu/%zu", done, total);
    if (done == total) std::fprintf(stderr, "\n");
  });
  const auto& m = result.manifest;
  if (cli.json) {
    print_json(bj::object{{"name", m.name},
                          {"version", m.version},
                          {"payload_digest", m.payload_digest},
                          {"payload_size", m.payload_size},
                          {"files", m.files.size()},
                          {"chunks", result.chunks_total},
                          {"chunks_uploaded", result.chunks_uploaded},
                          {"bytes_uploaded", result.bytes_uploaded},
                          {"already_registered", result.already_registered},
                          {"signed_by", m.signed_by}});
    return kOk;
  }
  std::cout << fmt::format("package {} {} {}: {} file(s), {}, {} chunk(s) ({} uploaded, {})\n", m.name,
                           m.version, result.already_registered ? "already registered" : "registered",
                           m.files.size(), format_size(m.payload_size), result.chunks_total,
                           result.chunks_uploaded, format_size(result.bytes_uploaded));
  std::cout << "payload sha256 " << m.payload_digest << "\n";
  std::cout << (m.signed_by.empty() ? std::string("unsigned") : "signed by publisher key " + m.signed_by)
            << "\n";
  return kOk;
}

int package_list(Cli& cli) {
  cli.expect_args(2, "package list");
  auto pkgs = cli.client().list_packages();
  if (cli.json) {
    bj::array a;
    for (const auto& p : pkgs)
      a.push_back(bj::object{{"name", p.name},
                             {"version", p.version},
                             {"payload_digest", p.payload_digest},
                             {"payload_size", p.payload_size},
                             {"file_count", p.file_count},
                             {"created_at", p.created_at}});
    print_json(bj::object{{"packages", a}});
    return kOk;
  }
  Table t({"NAME", "VERSION", "SIZE", "FILES", "PAYLOAD", "CREATED"});
  for (const auto& p : pkgs)
    t.add({p.name, p.version, format_size(p.payload_size), std::to_string(p.file_count),
           p.payload_digest.substr(0, 12), format_time(p.created_at)});
  t.print();
  return kOk;
}

int package_show(Cli& cli) {
  cli.expect_args(4, "package show NAME VERSION");
  auto m = cli.client().show_package(cli.args[2], cli.args[3]);
  if (cli.json) {
    std::cout << manifest_to_json(m) << "\n";
    return kOk;
  }
  std::cout << fmt::format("package {} {}\npayload   {} ({}, {} chunk(s))\ncreated   {}\n", m.name, m.version,
                           m.payload_digest, format_size(m.payload_size), m.chunks.size(),
                           format_time(m.created_at));
  std::cout << "signed    " << (m.signed_by.empty() ? std::string("no") : "by publisher key " + m.signed_by)
            << "\n";
  std::cout << "install   dir: " << (m.install.directory.empty() ? "(agent default)" : m.install.directory)
            << "; command: " << (m.install.command.empty() ? "(none)" : m.install.command) << "; timeout "
            << m.install.timeout_seconds << " s\n\n";
  Table t({"PATH", "TYPE", "SIZE", "MODE", "SHA256"});
  for (const auto& f : m.files)
    t.add({f.type == "symlink" ? f.path + " -> " + f.link_target : f.path, f.type,
           f.type == "file" ? format_size(f.size) : "-", fmt::format("{:04o}", f.mode),
           f.sha256.empty() ? "-" : f.sha256.substr(0, 12)});
  t.print();
  return kOk;
}

}  // namespace distribctl
