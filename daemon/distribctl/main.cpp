// distribctl: the administrator's command-line tool. Every call goes through distrib::AdminClient;
// this file parses the command line and dispatches to the command groups (cli.h).
#include "cli.h"

#include <algorithm>
#include <cstdio>
#include <iostream>

using namespace distribctl;

namespace {

const char* kUsageText = R"(usage: distribctl [global options] COMMAND ...

Commands:
  hosts list                    every host this manager knows (with relays' subtrees)
  hosts tree                    the hierarchy: relays and what is below them, online or not
  hosts approve HOST...         approve hosts waiting for approval (auto-register off)
  hosts pending [--all]         hosts asking to enrol: id, name, address, relay path, key fingerprint
  hosts accept HOST [--fingerprint sha256:...]   issue its certificate (the fingerprint it showed)
  hosts reject HOST | hosts revoke HOST          refuse an enrolment / stop a certificate at once
  stats                         content counters: chunks served per requester, relay cache
  package create DIR --name N --version V [--install-command CMD] [--install-dir PATH]
                 [--install-timeout SECONDS] [--chunk-size SIZE]   SIZE: average chunk, e.g. 16KiB
                 [--uninstall-command CMD]   run by uninstall jobs before the directory is removed
                 [--check-command CMD]   detection: exit 0 on an agent means "already satisfied"
                                (the entry ends not_applicable, nothing is fetched)
                 [--sign KEYFILE]   sign it with a publisher key (keys create)
                 Again with the same package: uploads only what the manager lacks or holds corrupt
  package list
  package show NAME VERSION
  job create install NAME VERSION DESTINATION... [--force] [schedule and rollout options]
      an agent skips a package installed with intact files (--force: install again regardless);
      missing or changed files are installed again
  job create uninstall NAME VERSION DESTINATION...   run its uninstall command, remove its directory
  job create transfer-to-relay NAME VERSION RELAY...   pre-stage a package in relays' caches
  job create delete-package NAME VERSION RELAY...      remove a package from relays' caches
  job create get-system-info|get-software-info DESTINATION...   agents report that inventory now
  job create collect-files DESTINATION... --path GLOB [--path GLOB...] [--max-file SIZE] [--max-total SIZE]
      agents send matching files back (only under their own --collect-allow); --timing at-start
      collects at the agent's next start
      destinations: HOST (by the manager's key mode), group:NAME (host group),
      id:NAME (ID group: standing, later members receive it too), relay:RELAY (every host below)
      --start TIME --expires TIME      TIME: +10m, +2h, @UNIX, 2026-12-01T22:00:00Z, "2026-12-01 22:00"
      --timing immediate|at-start|at-stop|window   --window HH:MM-HH:MM (server's local time)
      --retries N [--retry-backoff SECONDS] [--retry-installs]   automatic retries with backoff
      --waves 5,25,100 [--success-threshold PCT] [--error-threshold PCT]   staged rollout
      --split SIZE/INTERVAL            split distribution, e.g. 1MiB/60s (segments of whole chunks)
  job list [--limit N]
  job show ID [--wait [--timeout SECONDS]]
  job cancel ID
  job retry ID                  failed entries get a new attempt
  job complete-now ID           end split distribution: the rest travels unsplit
  transfer suspend|resume --job ID | --relay RELAY   stop or continue transfers of a job or below a relay
  group create NAME [HOST...] [--description TEXT]   host groups: named sets of hosts
  group add|remove NAME HOST...
  group list | group show NAME | group delete NAME
  idgroup create NAME [--password P] [--match-name GLOB] [--match-ip CIDR] [--description TEXT]
  idgroup add|remove NAME HOST...   the administrator joins hosts or removes them
  group create NAME --query QUERY   dynamic group: the hosts whose inventory matches, re-evaluated at each use
  idgroup list | idgroup show NAME | idgroup delete NAME
      (hosts also join from their own machine: distribd --role agent ... --join-group NAME,
       or with id-group = NAME[:PASSWORD] in the agent configuration)

  inventory show HOST           a host's latest inventory (system, software, user fields)
  inventory history HOST [--limit N]   what changed in it, newest first
  inventory query [QUERY] [--fields F,F...] [--csv] [--output FILE]   hosts matching QUERY
      QUERY: FIELD OP VALUE [and ...]; OP: = != < <= > >= (numbers, sizes like 10GiB, versions),
      or FIELD exists|missing; '*' in FIELD or VALUE matches anything. Examples:
      'software.dpkg.openssl >= 3.0.11'   'system.disk.*.free_bytes < 10GiB'   'system.os.version = 12'
  inventory field add NAME [--type text|number|choice] [--values A,B] [--description TEXT]
  inventory field list | inventory field remove NAME   user inventory fields agents report
  collect list JOB              files a collect-files job brought back
  collect get JOB [--host HOST] [--output DIR]   download them (DIR/HOST/PATH; default ./collected-JOB)
  enrol-token create [--expires 24h] [--uses N|unlimited] [--group IDGROUP]
                                a token hosts enrol with (printed once; only its hash is kept)
  enrol-token list | enrol-token revoke ID
  enrol-bundle [--output FILE] [--parent URL...] [--new-token [--expires 24h] [--uses N] [--group G]]
                                what a new host needs: its parents, the CA, optionally a token
  user add NAME --role viewer|operator|administrator   an administrator's account (its token printed once)
  user list | user remove NAME | user token NAME       accounts; a new token for one (the old stops)
  user certificate NAME [--days 90] [--output DIR]     a client certificate for an account (key made
                                here; DIR/NAME.key, NAME.crt, ca.crt); it replaces the account's last one
  keys create NAME [--output DIR]   a publisher key pair made here: DIR/NAME.key (signs packages;
                                keep it off the manager) and DIR/NAME.pub
  keys trust FILE.pub [--name NAME] | keys list | keys revoke ID|NAME
                                the publisher keys agents trust (signed packages required once any is)
  cluster status                active node of an active/standby pair, lease, fencing token, takeovers
  events [--limit N] [--after ID] [--type job.*,entry.failed] [--severity warning]
                                the newest events (job, entry, host, package, inventory, cluster, database)
  events --follow [--after ID]  print events as they happen (server-sent events; resumes after a break)
  events sinks                  where events go: delivered, pending and failed per sink
  content verify [--repair] [--rate SIZE|unlimited] [--no-wait]   check every stored chunk and
                                manifest (paced; default 64MiB/s); --repair: a relay fetches bad
                                chunks again; a manager lists what must be uploaded again
  content verify --status       the last verification's result (--server a relay's URL for its cache)
  audit [--limit N]             administrative actions: who, from where, what, result (newest first)

Global options:
  --server URL        manager URL (env DISTRIB_SERVER; default https://127.0.0.1:8640)
  --token TOKEN       admin token (env DISTRIB_TOKEN)
  --token-file FILE   file holding the admin token (env DISTRIB_TOKEN_FILE)
  --cert FILE --key FILE   a user's client certificate and key instead of a token (env
                      DISTRIB_CERT_FILE, DISTRIB_KEY_FILE; made by distribctl user certificate)
  --ca-file FILE      CA certificate that verifies the manager (env DISTRIB_CA_FILE; default: the
                      pki/ca.crt or identity/ca.crt next to the --token-file, or ca.crt next to
                      the --cert, else the system's)
  --json              machine-readable output
  --version, --help

Exit codes: 0 ok, 1 refused or failed, 2 usage, 3 manager unreachable, 4 not found,
            5 job finished with entries that did not succeed, 6 --wait timed out
)";

int dispatch(Cli& cli) {
  if (cli.args.size() == 1 && cli.args[0] == "stats") return stats(cli);
  if (!cli.args.empty() && cli.args[0] == "events") return events_cmd(cli);
  if (cli.args.size() == 1 && cli.args[0] == "audit") return audit_cmd(cli);
  if (!cli.args.empty() && cli.args[0] == "enrol-bundle") return enrol_bundle_cmd(cli);
  if (cli.args.size() < 2) throw UsageError("missing command (see distribctl --help)");
  const auto& a = cli.args[0];
  const auto& b = cli.args[1];
  if (a == "hosts" && b == "list") return hosts_list(cli);
  if (a == "hosts" && b == "tree") return hosts_tree(cli);
  if (a == "hosts" && b == "approve") return hosts_approve(cli);
  if (a == "hosts" && (b == "pending" || b == "accept" || b == "reject" || b == "revoke"))
    return enrolment_cmd(cli);
  if (a == "package" && b == "create") return package_create(cli);
  if (a == "package" && b == "list") return package_list(cli);
  if (a == "package" && b == "show") return package_show(cli);
  if (a == "job" && b == "create") return job_create(cli);
  if (a == "job" && b == "list") return job_list(cli);
  if (a == "job" && b == "show") return job_show(cli);
  if (a == "job" && b == "cancel") return job_cancel(cli);
  if (a == "job" && b == "retry") return job_retry(cli);
  if (a == "job" && b == "complete-now") return job_complete_now(cli);
  if (a == "transfer") return transfer_cmd(cli);
  if (a == "group") return group_cmd(cli);
  if (a == "idgroup") return idgroup_cmd(cli);
  if (a == "inventory") return inventory_cmd(cli);
  if (a == "collect") return collect_cmd(cli);
  if (a == "enrol-token") return enrol_token_cmd(cli);
  if (a == "user") return user_cmd(cli);
  if (a == "keys") return keys_cmd(cli);
  if (a == "cluster") return cluster_cmd(cli);
  if (a == "content" && b == "verify") return content_verify(cli);
  throw UsageError("unknown command \"" + a + " " + b + "\" (see distribctl --help)");
}

int exit_code_for(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::unavailable:
      return kUnreachable;
    case ErrorKind::not_found:
      return kNotFound;
    default:
      return kFailed;
  }
}

}  // namespace

int main(int argc, char** argv) {
  po::options_description desc;
  desc.add_options()("help,h", "")("version", "")("json", "")("wait", "")("server", po::value<std::string>())(
      "token", po::value<std::string>())("token-file", po::value<std::string>())(
      "ca-file", po::value<std::string>())("cert", po::value<std::string>())("key", po::value<std::string>())(
      "days", po::value<int>())("name", po::value<std::string>())("version-string", po::value<std::string>())(
      "install-command", po::value<std::string>())("install-dir", po::value<std::string>())(
      "install-timeout", po::value<int>())("uninstall-command", po::value<std::string>())(
      "check-command", po::value<std::string>())("force", "")("repair", "")("rate", po::value<std::string>())(
      "status", "")("no-wait", "")("chunk-size", po::value<std::string>())("split", po::value<std::string>())(
      "job", po::value<std::string>())("relay", po::value<std::string>())("timeout", po::value<int>())(
      "limit", po::value<int>())("description", po::value<std::string>())(
      "password", po::value<std::string>())("match-name", po::value<std::string>())(
      "match-ip", po::value<std::string>())("start", po::value<std::string>())(
      "expires", po::value<std::string>())("timing", po::value<std::string>())(
      "window", po::value<std::string>())("retries", po::value<int>())(
      "retry-backoff", po::value<std::string>())("retry-installs", "")("waves", po::value<std::string>())(
      "success-threshold", po::value<int>())("error-threshold", po::value<int>())(
      "path", po::value<std::vector<std::string>>()->composing())("max-file", po::value<std::string>())(
      "max-total", po::value<std::string>())("query", po::value<std::string>())(
      "fields", po::value<std::string>())("csv", "")("output", po::value<std::string>())(
      "host", po::value<std::string>())("type", po::value<std::string>())("values", po::value<std::string>())(
      "follow", "")("uses", po::value<std::string>())("group", po::value<std::string>())(
      "after", po::value<std::string>())("severity", po::value<std::string>())("all", "")(
      "role", po::value<std::string>())("sign", po::value<std::string>())(
      "fingerprint", po::value<std::string>())("new-token", "")(
      "parent", po::value<std::vector<std::string>>()->composing())("args",
                                                                    po::value<std::vector<std::string>>());
  po::positional_options_description pos;
  pos.add("args", -1);

  // "--version V" is a package option after "package create"; alone it prints the tool's version.
  std::vector<std::string> argv_fixed(argv + 1, argv + argc);
  const bool creating =
      argv_fixed.size() >= 2 && std::find(argv_fixed.begin(), argv_fixed.end(), "create") != argv_fixed.end();
  for (std::size_t i = 0; i < argv_fixed.size(); ++i)
    if (creating && argv_fixed[i] == "--version" && i + 1 < argv_fixed.size())
      argv_fixed[i] = "--version-string";
    else if (creating && argv_fixed[i].starts_with("--version="))
      argv_fixed[i] = "--version-string=" + argv_fixed[i].substr(10);

  Cli cli;
  try {
    po::store(po::command_line_parser(argv_fixed).options(desc).positional(pos).run(), cli.vm);
    po::notify(cli.vm);
  } catch (const po::error& e) {
    std::fprintf(stderr, "distribctl: %s (see distribctl --help)\n", e.what());
    return kUsage;
  }
  if (cli.vm.count("help")) {
    std::cout << kUsageText;
    return kOk;
  }
  if (cli.vm.count("version") && !creating) {
    std::cout << "distribctl " << distrib::version() << "\n";
    return kOk;
  }
  if (cli.vm.count("version-string")) cli.vm.insert({"version", cli.vm["version-string"]});
  cli.json = cli.vm.count("json") > 0;
  if (cli.vm.count("args")) cli.args = cli.vm["args"].as<std::vector<std::string>>();
  try {
    return dispatch(cli);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "distribctl: %s\n", e.what());
    return kUsage;
  } catch (const Error& e) {
    std::fprintf(stderr, "distribctl: %s\n", e.what());
    if (e.kind() == ErrorKind::unavailable &&
        std::string_view(e.what()).find("TLS handshake") != std::string_view::npos)
      std::fprintf(stderr,
                   "hint: the manager's certificate is not trusted here: pass its CA with --ca-file (the "
                   "manager's STATE_DIR/pki/ca.crt) or --token-file STATE_DIR/admin.token on its machine\n");
    else if (e.kind() == ErrorKind::unavailable)
      std::fprintf(stderr, "hint: is the manager running? check --server or DISTRIB_SERVER\n");
    if (e.kind() == ErrorKind::unauthorized)
      std::fprintf(stderr, "hint: pass the manager's STATE_DIR/admin.token with --token-file\n");
    return exit_code_for(e.kind());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "distribctl: %s\n", e.what());
    return kFailed;
  }
}
