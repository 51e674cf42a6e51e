// Packages a directory with libdistrib, as an integrator's own tool would, and prints the
// manifest summary. Usage: distrib-consumer DIR CHUNK_DIR
#include <distrib/content/packager.h>
#include <distrib/error.h>
#include <distrib/version.h>

#include <iostream>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: distrib-consumer DIR CHUNK_DIR\n";
    return 2;
  }
  try {
    distrib::ChunkStore chunks(argv[2]);
    distrib::PackageSpec spec;
    spec.source_dir = argv[1];
    spec.name = "consumer-demo";
    spec.version = "1.0";
    const auto m = distrib::create_package(spec, chunks);
    std::cout << "libdistrib " << distrib::version() << ": " << m.name << " " << m.version << ", "
              << m.files.size() << " files, " << m.chunks.size() << " chunk(s), payload " << m.payload_digest
              << "\n";
    return 0;
  } catch (const distrib::Error& e) {
    std::cerr << "distrib-consumer: " << e.what() << "\n";
    return 1;
  }
}
