#pragma once
// The central manager: registration, package repository, job engine and admin API.
#include <distrib/model/host.h>
#include <distrib/store/store.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

namespace distrib {

struct ManagerSettings {
  std::filesystem::path state_dir;  ///< database, chunks, admin token; must be writable
  std::string listen_address = "127.0.0.1";
  std::uint16_t port = 8640;  ///< 0 picks a free port (written to state_dir/endpoint)
  int network_threads = 2;
  int store_threads = 4;
  std::string tls_cert_file;
  std::string tls_key_file;
  HostKeyMode key_mode = HostKeyMode::name;
  StoreSettings store;               ///< store.path defaults to state_dir/distrib.db
  int poll_timeout_seconds = 30;     ///< longest an agent's poll is held open
  int poll_interval_seconds = 5;     ///< agents wait this long between failed contacts
};

class Manager {
public:
  /// Validates settings, prepares the state directory (creating the admin token on first start),
  /// opens the store and applies migrations. Throws Error with a one-line reason on any problem.
  Manager(ManagerSettings settings, const StoreRegistry& stores);
  ~Manager();
  Manager(const Manager&) = delete;
  Manager& operator=(const Manager&) = delete;

  /// Starts serving; returns once the listener is bound.
  void start();
  /// Stops serving and waits for in-flight work. Idempotent.
  void stop();
  std::uint16_t port() const noexcept;
  /// "http(s)://address:port" as agents and distribctl reach it.
  std::string url() const;
  /// Path of the file holding the admin bearer token.
  std::filesystem::path admin_token_file() const;
  Store& store() noexcept;

private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace distrib
