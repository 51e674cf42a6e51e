// distribctl: publisher keys (keys create, trust, list, revoke) — docs/SECURITY.md, "Signed packages".
#include "cli.h"

#include <iostream>

namespace distribctl {

int keys_cmd(Cli& cli) {
  const char* usage =
      "keys create NAME [--output DIR] | keys trust FILE.pub [--name NAME] | keys list | keys revoke ID|NAME";
  if (cli.args.size() < 2) throw UsageError(std::string("usage: distribctl ") + usage);
  const auto& sub = cli.args[1];
  if (sub == "create") {
    // Made here, never sent: the manager only ever sees the public key.
    cli.expect_args(3, usage);
    const auto& name = cli.args[2];
    if (name.empty() || name.size() > 64 ||
        name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") !=
            std::string::npos)
      throw UsageError("a key's name is 1 to 64 letters, digits, '.', '_' or '-'");
    const std::filesystem::path dir = cli.opt("output", ".");
    std::filesystem::create_directories(dir);
    const auto key = dir / (name + ".key"), pub = dir / (name + ".pub");
    if (std::filesystem::exists(key))
      throw std::runtime_error(key.string() + " exists already; a key is never overwritten");
    const auto pair = make_publisher_key();
    write_private(key, pair.private_pem);
    write_public(pub, pair.public_pem);
    if (cli.json)
      return print_json(bj::object{{"id", pair.id}, {"key", key.string()}, {"public_key", pub.string()}}),
             kOk;
    std::cout << pair.id << "\n";
    std::cerr << "private key " << key.string() << " (signs packages: package create --sign " << key.string()
              << "; keep it off the manager), public key " << pub.string() << " (distribctl keys trust "
              << pub.string() << ")\n";
    return kOk;
  }
  auto c = cli.client();
  if (sub == "trust") {
    cli.expect_args(3, usage);
    const std::filesystem::path file = cli.args[2];
    std::error_code ec;
    if (std::filesystem::file_size(file, ec) > 4096 || ec)
      throw UsageError(file.string() + " is not a public key file (keys create makes NAME.pub)");
    const auto name = cli.opt("name", file.stem().string());
    const auto id = c.trust_publisher(name, read_text_file(file));
    if (cli.json) return print_json(bj::object{{"id", id}, {"name", name}}), kOk;
    std::cout << "publisher key " << id << " (" << name
              << ") trusted; agents take it at their next poll, and from then on refuse unsigned packages\n";
    return kOk;
  }
  if (sub == "revoke") {
    cli.expect_args(3, usage);
    const auto id = c.revoke_publisher(cli.args[2]);
    if (cli.json) return print_json(bj::object{{"revoked", id}}), kOk;
    std::cout << "publisher key " << id << " revoked: packages it signed no longer run on any agent\n";
    return kOk;
  }
  if (sub == "list") {
    cli.expect_args(2, usage);
    const auto list = c.publishers();
    if (cli.json) {
      bj::array keys, revoked;
      for (const auto& k : list.keys)
        keys.push_back(bj::object{{"id", k.id}, {"name", k.name}, {"added", k.added}});
      for (const auto& r : list.revoked) revoked.emplace_back(r);
      return print_json(bj::object{{"version", list.version}, {"keys", keys}, {"revoked", revoked}}), kOk;
    }
    Table t({"ID", "NAME", "TRUSTED SINCE"});
    for (const auto& k : list.keys) t.add({k.id, k.name, format_time(k.added)});
    for (const auto& r : list.revoked) t.add({r, "(revoked)", "-"});
    t.print();
    std::cerr << "trusted set version " << list.version << "; "
              << (list.keys.empty()
                      ? "no key trusted: agents run unsigned packages (unless they were started "
                        "with --require-signed-packages)"
                      : "agents run only packages signed by these keys")
              << "\n";
    return kOk;
  }
  throw UsageError(std::string("usage: distribctl ") + usage);
}

}  // namespace distribctl
