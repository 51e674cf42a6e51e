// distribctl: administrators' accounts (user add, list, remove, token).
#include "cli.h"

#include <sys/stat.h>
#include <filesystem>
#include <fstream>
#include <iostream>

namespace distribctl {

void write_text(const std::filesystem::path& file, const std::string& text, std::filesystem::perms mode) {
  std::filesystem::remove(file);
  {
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error("cannot write " + file.string());
    std::filesystem::permissions(file, mode);
    out << text;
    if (!out.flush()) throw std::runtime_error("cannot write " + file.string());
  }
}
std::string read_text_file(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw UsageError("cannot read " + file.string());
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_private(const std::filesystem::path& file, const std::string& text) {
  write_text(file, text, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
}
void write_public(const std::filesystem::path& file, const std::string& text) {
  using std::filesystem::perms;
  write_text(file, text, perms::owner_read | perms::owner_write | perms::group_read | perms::others_read);
}

int user_cmd(Cli& cli) {
  const char* usage =
      "user add NAME --role viewer|operator|administrator | user list | user remove NAME | user token NAME | "
      "user certificate NAME [--days 90] [--output DIR]";
  if (cli.args.size() < 2) throw UsageError(std::string("usage: distribctl ") + usage);
  const auto& sub = cli.args[1];
  auto c = cli.client();
  if (sub == "list") {
    cli.expect_args(2, usage);
    auto o = bj::parse(c.call("GET", "/v1/users")).as_object();
    if (cli.json) return print_json(o), kOk;
    Table t({"NAME", "ROLE", "CREATED", "CREATED BY", "CERTIFICATE"});
    for (const auto& v : o.at("users").as_array()) {
      const auto& u = v.as_object();
      t.add({str(u, "name"), str(u, "role"), format_time(num(u, "created_at")), str(u, "created_by"),
             flag(u, "certificate") ? "yes" : "-"});
    }
    t.print();
    std::cerr << "the admin token (STATE_DIR/admin.token) is "
              << (flag(o, "admin_token") ? "accepted too (distribd --admin-token false turns it off)"
                                         : "turned off")
              << "\n";
    return kOk;
  }
  if (sub == "add" || sub == "token") {
    cli.expect_args(3, usage);
    std::string answer;
    if (sub == "add") {
      const auto role = cli.opt("role");
      if (role.empty()) throw UsageError("user add needs --role viewer|operator|administrator");
      answer = c.call("POST", "/v1/users", bj::serialize(bj::object{{"name", cli.args[2]}, {"role", role}}));
    } else {
      answer = c.call("POST", "/v1/users/" + cli.args[2] + "/token", "{}");
    }
    auto o = bj::parse(answer).as_object();
    if (cli.json) return print_json(o), kOk;
    std::cout << str(o, "token") << "\n";
    std::cerr << "token of " << str(o, "name")
              << ": shown only now. Its holder passes it with --token-file FILE (or DISTRIB_TOKEN).\n";
    return kOk;
  }
  if (sub == "certificate") {
    cli.expect_args(3, usage);
    const auto& name = cli.args[2];
    const int days = cli.vm.count("days") ? cli.vm["days"].as<int>() : 90;
    const std::filesystem::path dir = cli.opt("output", ".");
    std::filesystem::create_directories(dir);
    auto uc = c.issue_user_certificate(name, days);
    const auto key = dir / (name + ".key"), cert = dir / (name + ".crt"), ca = dir / "ca.crt";
    write_private(key, uc.key_pem);
    write_public(cert, uc.certificate_pem);
    write_public(ca, uc.ca_pem);
    if (cli.json)
      return print_json(bj::object{{"name", uc.name},
                                   {"role", uc.role},
                                   {"serial", std::to_string(uc.serial)},
                                   {"not_after", uc.not_after},
                                   {"certificate_file", cert.string()},
                                   {"key_file", key.string()},
                                   {"ca_file", ca.string()}}),
             kOk;
    std::cout << "client certificate of " << uc.name << " (" << uc.role << "), valid until "
              << format_time(uc.not_after) << ":\n  " << cert.string() << "\n  " << key.string()
              << "   (the private key: keep it to its holder)\n  " << ca.string()
              << "   (the CA that verifies the manager)\n"
              << "it replaces any earlier certificate of " << uc.name
              << ". Use it with:\n  distribctl --cert " << cert.string() << " --key " << key.string()
              << " ...\n";
    return kOk;
  }
  if (sub == "remove") {
    cli.expect_args(3, usage);
    auto o = bj::parse(c.call("DELETE", "/v1/users/" + cli.args[2])).as_object();
    if (cli.json) return print_json(o), kOk;
    std::cout << "user " << cli.args[2] << " removed; its token and certificate no longer work\n";
    return kOk;
  }
  throw UsageError(std::string("usage: distribctl ") + usage);
}

}  // namespace distribctl
