#pragma once
// Fetching a package: segments of whole chunks, one request per segment, each chunk verified on
// arrival; checks with the server and pauses between segments when the distribution is split.
#include "services/agent/link.h"

namespace distrib::agent {

/// One entry's transfer of a package, and how far it got.
struct Transfer {
  std::int64_t entry_id = 0;
  std::int32_t attempt = 1;
  SplitSpec offered;  // what the server offers for this hop
  TransferProgress progress;
  std::size_t fetched_chunks = 0;
};

class Fetcher {
 public:
  Fetcher(Context& ctx, Link& link) : ctx_(ctx), link_(link) {}

  /// Transfers the chunks of `m` this agent lacks, segment by segment, reporting each. Returns
  /// false when the agent is stopping (the chunks held so far stay: the next run fetches the rest
  /// only). Throws EntryWithdrawn when the server no longer wants the entry run.
  bool transfer(const Manifest& m, Transfer& t);

 private:
  bool pause(int seconds);
  void fetch_chunks(const Manifest& m, std::vector<ChunkRef> wanted, Transfer& t);
  void report_bad(std::vector<std::string>& digests);
  SplitSpec check_transfer(Transfer& t);
  bool pause_between_segments(Transfer& t, SplitSpec& split);

  Context& ctx_;
  Link& link_;
};

}  // namespace distrib::agent
