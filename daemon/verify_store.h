#pragma once
// distribd --verify-store: the offline scrub of a state directory's chunk store (and, for a
// manager or relay, of the manifests in its database), with progress on stderr.
#include <distrib/store/store.h>

#include <filesystem>

/// Checks every chunk under STATE_DIR/chunks (corrupt ones are moved to its quarantine) and, when
/// `store` is given, every package's manifest against the chunks held (`partial_cache`: a relay,
/// whose cache holds what was asked for; missing chunks are not a fault there). Prints the
/// findings; returns 0 when everything is whole, 1 otherwise.
int verify_store(const std::filesystem::path& state_dir, distrib::Store* store, bool partial_cache);
