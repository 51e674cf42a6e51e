#pragma once
// Package records (manifests); their chunks are in the content store, not here.
// Part of the Store interface (store.h), whose contract every call follows: blocking,
// thread-safe, one transaction per call, failures thrown as distrib::Error.
#include <distrib/model/package.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace distrib {

/// Registered packages, by name and version.
class PackageStore {
 public:
  virtual ~PackageStore() = default;

  /// Registers a package. Returns false when the same name and version with the same payload
  /// digest already exists (idempotent); throws Error(conflict) when it exists with other content.
  virtual bool insert_package(const Manifest& manifest) = 0;
  virtual std::optional<Manifest> find_package(const std::string& name, const std::string& version) = 0;
  virtual std::vector<PackageSummary> list_packages() = 0;
  /// Records that the package was used now (relay cache LRU).
  virtual void touch_package(const std::string& name, const std::string& version, std::int64_t when) = 0;
  /// Removes a package record. Returns false when it does not exist; throws Error(conflict) when
  /// an entry that is not final still needs it.
  virtual bool delete_package(const std::string& name, const std::string& version) = 0;
};

}  // namespace distrib
